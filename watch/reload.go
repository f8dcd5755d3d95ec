package watch

// Reloading a wedged pool's master: the config test, then SIGUSR2, for a
// master fpmguard trusts (supervisor/trust.go) and with a php-fpm binary
// only root may change. Nothing the pool user can write is ever run.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/safefile"
	"github.com/fpmguard/fpmguard/supervisor"
)

// reloadCooldown keeps reloads apart while a reloaded master settles.
const reloadCooldown = 30 * time.Second

// maybeReload reloads the master when the heartbeat keeps failing and no
// hung worker was killed this interval, nor just before.
func (a *Actor) maybeReload(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, heartbeatFailing bool, killed int) {
	if !a.cfg.ReloadUnhealthy || !heartbeatFailing || killed > 0 {
		return
	}
	a.mu.Lock()
	quiet := time.Since(a.lastKill[t.ID()]) > a.cfg.KillGrace+time.Second && time.Since(a.lastReload[t.ID()]) > reloadCooldown
	a.mu.Unlock()
	if quiet {
		a.reload(ctx, t, r)
	}
}

// reload tests the master's config with php-fpm -t, then sends SIGUSR2 for
// a graceful reload. A config that fails the test is reported, never
// loaded. The master is verified again first, and once more right before
// the signal: the probe's word is some time old.
func (a *Actor) reload(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport) {
	m := r.Master
	if m == nil || !m.Alive {
		return // nothing to reload; the verdict already says the master is gone
	}
	a.mu.Lock()
	a.lastReload[t.ID()] = time.Now()
	a.mu.Unlock()
	refuse := func(result Result, format string, args ...any) {
		a.count(t.ID(), ActionReload, result)
		a.event(t, r, event.KindActionRefused, 0, nil, format, args...)
	}
	if t.Root != "" {
		refuse(ResultRefused, "not reloading master %d of pool %s: it runs in another container, whose config fpmguard cannot test", m.PID, t.Name)
		return
	}
	conf := m.Config
	if conf == "" {
		refuse(ResultRefused, "not reloading master %d of pool %s: its config path is unknown", m.PID, t.Name)
		return
	}
	start, err := a.verifyMaster(ctx, t, m.PID, 0)
	if err != nil {
		refuse(ResultRefused, "not reloading pid %d of pool %s: %v", m.PID, t.Name, err)
		return
	}
	if !a.takeBudget(t.ID()) {
		a.count(t.ID(), ActionReload, ResultBudget)
		a.event(t, r, event.KindBudget, 0, nil, "action budget of pool %s spent (%d per %s): reporting only, not reloading master %d", t.Name, a.cfg.Budget, a.cfg.BudgetWindow, m.PID)
		return
	}
	if err := CheckConfig(ctx, a.output, a.cfg.PHPFPMBinary, m.PID, conf); err != nil {
		result := ResultConfigInvalid
		if errors.Is(err, ErrUntrustedFile) {
			result = ResultRefused
		}
		refuse(result, "not reloading master %d of pool %s: %v", m.PID, t.Name, err)
		return
	}
	if a.cfg.DryRun {
		a.count(t.ID(), ActionReload, ResultDryRun)
		a.event(t, r, event.KindAction, 0, nil, "dry run: would SIGUSR2 master %d of pool %s (heartbeat failing, config test passed)", m.PID, t.Name)
		return
	}
	if _, err := a.verifyMaster(ctx, t, m.PID, start); err != nil {
		refuse(ResultRefused, "not reloading pid %d: %v", m.PID, err)
		return
	}
	if err := a.signal(m.PID, syscall.SIGUSR2); err != nil {
		a.count(t.ID(), ActionReload, ResultError)
		a.event(t, r, event.KindAction, 0, nil, "SIGUSR2 to master %d failed: %v", m.PID, err)
		return
	}
	a.count(t.ID(), ActionReload, ResultOK)
	a.event(t, r, event.KindAction, 0, nil, "SIGUSR2 master %d of pool %s: graceful reload, since the heartbeat kept failing and no hung worker was left to kill (config test passed)", m.PID, t.Name)
}

// verifyMaster reads pid afresh and checks that it is a master fpmguard
// trusts, of t's config, and (when start is not 0) the same process as
// before. It returns the process's start time.
func (a *Actor) verifyMaster(ctx context.Context, t supervisor.Target, pid int, start uint64) (uint64, error) {
	osp, err := a.prober.Procs.ReadProcess(ctx, pid)
	switch {
	case err != nil:
		return 0, fmt.Errorf("it is no longer a php-fpm master: %w", err)
	case !supervisor.IsMasterTitle(osp.Title) || osp.State == supervisor.OSZombie:
		return 0, errors.New("it is no longer a php-fpm master")
	case start != 0 && osp.StartTicks != start:
		return 0, errors.New("its pid now belongs to another process")
	}
	if _, err := a.prober.Trust.Verify(pid, osp.Title, t.MasterConfig); err != nil {
		return 0, err
	}
	return osp.StartTicks, nil
}

// ErrUntrustedFile marks a config test refused because a file it would
// run or read is not one only root may change.
var ErrUntrustedFile = errors.New("only root must be able to change it")

// maxBinary bounds the size of a php-fpm binary checked for the config
// test (php-fpm 8 is a few tens of MB).
const maxBinary = 1 << 30

// CheckConfig runs `php-fpm -t -y conf` through output, without a shell.
// The binary is bin, or with bin "" the one master runs, found on this
// host: a file named php-fpm… that only root may change. It is run through
// the descriptor it was checked by, so the file checked is the file run.
// Never the master's /proc/PID/exe as such: a process the pool user started
// may pass for a master until it is verified, and what it runs is its own.
// The config, which php-fpm opens by name, must be a file whose path only
// root may change.
func CheckConfig(ctx context.Context, output func(context.Context, string, ...string) ([]byte, error), bin string, masterPID int, conf string) error {
	f, err := PHPFPMBinary(bin, masterPID)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := safefile.OnlyRootMayChange(conf); err != nil {
		return fmt.Errorf("not testing config %s: %w (%w)", conf, err, ErrUntrustedFile)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"-t", "-y", conf}
	if os.Geteuid() == 0 {
		args = append(args, "-R") // the master may run pools as root itself
	}
	out, err := output(ctx, safefile.FDPath(int(f.Fd())), args...)
	if err != nil {
		return fmt.Errorf("config test `php-fpm -t -y %s` failed: %s", conf, lastLine(out))
	}
	return nil
}

// PHPFPMBinary opens php-fpm's binary for the config test, checked: bin,
// or with bin "" the binary the master masterPID runs, by its path on this
// host, which must be named php-fpm…. Either must be a regular file owned
// by root that no one else may write.
func PHPFPMBinary(bin string, masterPID int) (*os.File, error) {
	follow := bin != "" // the operator's path may be a link (alternatives)
	if bin == "" {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(masterPID) + "/exe")
		if err != nil {
			return nil, fmt.Errorf("finding php-fpm's binary: %w", err)
		}
		// An upgrade replaced it: the new php-fpm is what a reload runs.
		bin = strings.TrimSuffix(exe, " (deleted)")
		if !strings.HasPrefix(filepath.Base(bin), "php-fpm") {
			return nil, fmt.Errorf("the master runs %s, not a binary named php-fpm: name php-fpm's binary for the config test (%w)", bin, ErrUntrustedFile)
		}
	}
	f, _, err := safefile.Open("", bin, safefile.Rules{MaxBytes: maxBinary, FollowLinks: follow, Owners: []uint32{0}, NoOtherWrite: true})
	if err != nil {
		return nil, fmt.Errorf("not running php-fpm's binary for the config test: %w (%w)", err, ErrUntrustedFile)
	}
	return f, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
