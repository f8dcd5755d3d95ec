package supervisor

// The pool's master: found, verified (trust.go) and read.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/safefile"
)

// master finds and reads the pool's master. The candidates are the pid
// discovery or `run` gave, else the pid file's, then the parent of the
// status page's workers; the first one the kernel shows as a master
// fpmguard trusts, of the pool's config, is the master. A pid file is a
// hint: the pool user may write it.
func (pr *Prober) master(ctx context.Context, t Target, procs []ProcessState) *MasterReport {
	var cands []int
	var fileErr error
	switch {
	case t.MasterPID > 0:
		cands = append(cands, t.MasterPID)
	case t.MasterPIDFile != "":
		n, err := ReadPIDFile(t.Root, t.MasterPIDFile, pr.Trust)
		if err != nil {
			fileErr = err
		} else {
			cands = append(cands, n)
		}
	}
	for _, p := range procs {
		// A worker of this pool (by its title) names its master.
		if p.parent > 0 && p.ParentOK {
			if !slices.Contains(cands, p.parent) {
				cands = append(cands, p.parent)
			}
			break
		}
	}
	var first *MasterReport
	for _, pid := range cands {
		m := pr.readMaster(ctx, t, pid)
		if m.Alive {
			// Found, though not where it should have been: say why.
			switch {
			case fileErr != nil:
				m.Error = fileErr.Error()
			case first != nil && first.Unknown != "":
				m.Error = first.Unknown
			}
			return m
		}
		if first == nil {
			first = m
		}
	}
	if fileErr == nil {
		return first
	}
	m := &MasterReport{Config: t.MasterConfig, Error: fileErr.Error()}
	switch {
	case !errors.Is(fileErr, os.ErrNotExist):
		// No pid file means no master; an unreadable one proves nothing.
		m.Unknown = "cannot tell whether the master is alive: " + fileErr.Error()
	case first != nil:
		// The workers' parent is no master fpmguard trusts, or is gone.
		m.Unknown = first.Unknown
	}
	return m
}

// readMaster reads the process pid as the pool's master.
func (pr *Prober) readMaster(ctx context.Context, t Target, pid int) *MasterReport {
	m := &MasterReport{PID: pid, Config: t.MasterConfig}
	osp, err := pr.Procs.ReadProcess(ctx, pid)
	m.OSState, m.ExecID = osp.State, osp.ExecID
	switch {
	case err == nil && osp.State != OSZombie && IsMasterTitle(osp.Title):
		if err := pr.trusted(pid, osp, t.MasterConfig); err != nil {
			m.Unknown = err.Error()
			break
		}
		if cfg, ok := MasterConfigFromTitle(osp.Title); ok && m.Config == "" {
			m.Config = cfg
		}
		m.Alive = true
		m.PHPVersion = MasterPHPVersion(pid)
		if pr.ReadPSS {
			m.PSSBytes = pr.pssOf(pid, osp.StartTicks, osp.RSSBytes)
		}
	case osp.State == OSZombie:
		// It exited; only its parent has not collected it yet.
	case osp.State == OSGone:
		// /proc says no such process; the kernel must say so too.
		if kerr := syscall.Kill(pid, 0); !errors.Is(kerr, syscall.ESRCH) {
			m.Unknown = fmt.Sprintf("cannot tell whether master %d is alive: /proc has no such process, but kill(%d, 0) answered %v", pid, pid, kerr)
		}
	case err != nil:
		m.Unknown = fmt.Sprintf("cannot tell whether master %d is alive: %v", pid, err)
	default:
		m.Unknown = pr.foreignMaster(ctx, pid, osp)
	}
	return m
}

// trustEvery is how long a master's verification holds for the probes: a
// process keeps its user and binary until it execs, and only a trusted
// master can exec into another trusted one. Actions verify again, at once.
const trustEvery = 10 * time.Second

type trustSample struct {
	err error
	at  time.Time
}

// trusted verifies a process with a master's title as the master of conf,
// at most every trustEvery for one process.
func (pr *Prober) trusted(pid int, osp OSProcess, conf string) error {
	key := titleKey{pid, osp.StartTicks}
	pr.trustMu.Lock()
	s, ok := pr.trust[key]
	pr.trustMu.Unlock()
	if ok && time.Since(s.at) < trustEvery {
		return s.err
	}
	_, err := pr.Trust.Verify(pid, osp.Title, conf)
	pr.trustMu.Lock()
	if pr.trust == nil || len(pr.trust) >= maxTitles {
		pr.trust = map[titleKey]trustSample{}
	}
	pr.trust[key] = trustSample{err: err, at: time.Now()}
	pr.trustMu.Unlock()
	return err
}

// secondLook is the pause before the second read that confirms a pid now
// belongs to something other than a php-fpm master.
const secondLook = 100 * time.Millisecond

// foreignMaster looks twice at a master's pid that shows a title that is
// not a master's. It returns "" when the pid now surely belongs to another
// program (the master is gone), else why fpmguard cannot tell.
func (pr *Prober) foreignMaster(ctx context.Context, pid int, first OSProcess) string {
	unknown := func(title string) string {
		switch {
		case title == "":
			return fmt.Sprintf("cannot tell whether master %d is alive: its title could not be read", pid)
		case strings.Contains(title, "php-fpm"):
			// A master shows its command line until it has set its title.
			return fmt.Sprintf("master %d is starting: its title is still %q", pid, truncate(title, 80))
		}
		return ""
	}
	if why := unknown(first.Title); why != "" {
		return why
	}
	select {
	case <-ctx.Done():
		return fmt.Sprintf("cannot tell whether master %d is alive: its pid shows %q, and there was no time to look again", pid, truncate(first.Title, 80))
	case <-time.After(secondLook):
	}
	again, err := pr.Procs.ReadProcess(ctx, pid)
	switch {
	case again.State == OSGone:
		return ""
	case err != nil:
		return fmt.Sprintf("cannot tell whether master %d is alive: %v", pid, err)
	case IsMasterTitle(again.Title):
		return fmt.Sprintf("cannot tell whether master %d is alive: it showed %q, then a master's title", pid, truncate(first.Title, 80))
	}
	return unknown(again.Title)
}

// maxPIDFile bounds a pid file: a pid and a newline.
const maxPIDFile = 32

// ReadPIDFile reads a php-fpm pid file at path inside root ("" for this
// host's). It must be a regular file, not a link, owned by a user whose
// masters tr trusts and writable by no one else: the pool user may own
// the directory it is in. Its pid is a hint to verify, never proof.
func ReadPIDFile(root, path string, tr Trust) (int, error) {
	b, err := safefile.ReadFile(root, path, safefile.Rules{MaxBytes: maxPIDFile, Owners: tr.FileOwners(), NoOtherWrite: true})
	if err != nil {
		return 0, fmt.Errorf("reading php-fpm pid file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		// What it holds is not said: it may be anything.
		return 0, fmt.Errorf("php-fpm pid file %s does not hold a pid", path)
	}
	return n, nil
}
