package watch

// Reloading a wedged pool's master: the config test, then SIGUSR2, for a
// master fpmguard trusts (supervisor/trust.go) and with a php-fpm binary
// only root may change. Nothing the pool user can write is ever run, and
// nothing of another root: a master there is not reloaded.

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
	"golang.org/x/sys/unix"
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
		// Its config test would run that root's php-fpm, loader and
		// libraries (whoever is root in that container may change them) as
		// this host's root, and never php-fpm as it runs there.
		refuse(ResultRefused, "not reloading master %d of pool %s: it runs in another root (%s), whose php-fpm fpmguard does not run for the config test; run fpmguard in php-fpm's container to reload it", m.PID, t.Name, t.Root)
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
	if err := CheckConfig(ctx, a.output, a.cfg.PHPFPMBinary, m.PID, start, conf); err != nil {
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
// The binary is bin, or with bin "" the one master runs (see PHPFPMBinary),
// run through the descriptor it was checked by, so the file checked is
// the file run. The config, which php-fpm opens by name, must be a file
// whose path only root may change.
func CheckConfig(ctx context.Context, output func(context.Context, string, ...string) ([]byte, error), bin string, masterPID int, start uint64, conf string) error {
	f, err := openBinary(bin, masterPID, start)
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

// binaryRules are what php-fpm's binary must be for the config test: a
// regular file owned by root that no one else may write.
var binaryRules = safefile.Rules{MaxBytes: maxBinary, Owners: []uint32{0}, NoOtherWrite: true}

// PHPFPMBinary opens php-fpm's binary for the config test, checked: bin,
// or with bin "" the binary that master masterPID runs, which must be
// named php-fpm…. Either must be a regular file owned by root that no one
// else may write. The master must be one the caller verified
// (supervisor.Trust).
func PHPFPMBinary(bin string, masterPID int) (*os.File, error) {
	return openBinary(bin, masterPID, 0)
}

// openBinary is PHPFPMBinary for a master verified with start time start
// (0: not checked). The master's binary is opened through /proc/PID/exe,
// the kernel's own reference to the file the process runs, and its start
// time checked once the file is open: the descriptor is that master's
// binary, not a process's that took its pid. Its path would not do: from
// another mount namespace, even one of the same root, the kernel names it
// by a path that need not exist here, or names another file. One case
// takes the path: a binary replaced since the master started (an upgrade),
// since a reload runs the file now at that path. That path is looked up
// here only when the master shares fpmguard's mount namespace.
func openBinary(bin string, masterPID int, start uint64) (*os.File, error) {
	untrusted := func(err error) error {
		return fmt.Errorf("not running php-fpm's binary for the config test: %w (%w)", err, ErrUntrustedFile)
	}
	if bin != "" {
		rules := binaryRules
		rules.FollowLinks = true // the operator's path may be a link (alternatives)
		f, _, err := safefile.Open("", bin, rules)
		if err != nil {
			return nil, untrusted(err)
		}
		return f, nil
	}
	proc := "/proc/" + strconv.Itoa(masterPID)
	link, err := os.Readlink(proc + "/exe")
	if err != nil {
		return nil, fmt.Errorf("finding php-fpm's binary: %w", err)
	}
	name := strings.TrimSuffix(link, " (deleted)")
	if !strings.HasPrefix(filepath.Base(name), "php-fpm") {
		return nil, fmt.Errorf("the master runs %s, not a binary named php-fpm: name php-fpm's binary for the config test (%w)", name, ErrUntrustedFile)
	}
	fd, err := unix.Open(proc+"/exe", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening php-fpm's binary %s: %w", proc+"/exe", err)
	}
	f := os.NewFile(uintptr(fd), name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("looking at php-fpm's binary: %w", err)
	}
	if start != 0 {
		if now, err := supervisor.SystemProcs.ReadProcess(context.Background(), masterPID); err != nil || now.StartTicks != start {
			f.Close()
			return nil, fmt.Errorf("not running php-fpm's binary for the config test: pid %d is no longer the master that was verified (%w)", masterPID, ErrUntrustedFile)
		}
	}
	if st.Nlink > 0 {
		if err := safefile.Check(fd, binaryRules); err != nil {
			f.Close()
			return nil, untrusted(&os.PathError{Op: "open", Path: name, Err: err})
		}
		return f, nil
	}
	// Replaced since the master started: the reload runs what is at its
	// path now.
	f.Close()
	same, err := sameMountNamespace(masterPID)
	if err != nil || !same {
		return nil, fmt.Errorf("php-fpm's binary was replaced since master %d started, and the new one cannot be found from fpmguard's mount namespace: name it for the config test (%w)", masterPID, ErrUntrustedFile)
	}
	nf, _, err := safefile.Open("", name, binaryRules)
	if err != nil {
		return nil, untrusted(err)
	}
	return nf, nil
}

// sameMountNamespace reports whether process pid sees fpmguard's mounts.
func sameMountNamespace(pid int) (bool, error) {
	var theirs, ours unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/mnt", &theirs); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/self/ns/mnt", &ours); err != nil {
		return false, err
	}
	return theirs.Dev == ours.Dev && theirs.Ino == ours.Ino, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
