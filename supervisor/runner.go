package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunConfig describes the php-fpm that `fpmguard run` owns.
type RunConfig struct {
	Argv        []string      // php-fpm -F -y CONF ...
	StopTimeout time.Duration // after SIGQUIT, before SIGTERM; 10s if 0
	// Backoff between restarts: starts at BackoffStart, doubles up to
	// BackoffMax, and starts over after HealthyReset of uptime.
	BackoffStart, BackoffMax, HealthyReset time.Duration
	// Stdout and Stderr receive php-fpm's output; os.Stdout and os.Stderr
	// if nil. Files, so that no goroutine copies them.
	Stdout, Stderr *os.File
}

// Defaults of RunConfig.
const (
	DefaultStopTimeout  = 10 * time.Second
	DefaultBackoffStart = time.Second
	DefaultBackoffMax   = 30 * time.Second
	DefaultHealthyReset = time.Minute
	// orphanWait bounds the wait for the old master's workers to die.
	orphanWait = 5 * time.Second
)

// Runner starts php-fpm as its child, restarts it when it dies, and stops
// it gracefully when asked.
type Runner struct {
	cfg    RunConfig
	reaper *Reaper
	events *EventLog

	pid      atomic.Int64
	restarts atomic.Uint64
	mu       sync.Mutex
	onStart  func(pid int)
}

// NewRunner checks the command line and makes this process a subreaper.
func NewRunner(cfg RunConfig, events *EventLog) (*Runner, error) {
	if len(cfg.Argv) == 0 {
		return nil, errors.New("run needs the php-fpm command after --, e.g. fpmguard run -- php-fpm -F -y /etc/php/8.2/fpm/php-fpm.conf")
	}
	if !slicesContain(cfg.Argv[1:], "-F", "--nodaemonize") {
		return nil, fmt.Errorf("run needs php-fpm in the foreground: add -F to %q", strings.Join(cfg.Argv, " "))
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.BackoffStart <= 0 {
		cfg.BackoffStart = DefaultBackoffStart
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.HealthyReset <= 0 {
		cfg.HealthyReset = DefaultHealthyReset
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	reaper, err := NewReaper()
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, reaper: reaper, events: events}, nil
}

func slicesContain(list []string, any ...string) bool {
	for _, v := range list {
		for _, a := range any {
			if v == a {
				return true
			}
		}
	}
	return false
}

// ConfigPath returns the php-fpm config the command line names with -y or
// --fpm-config, or "".
func ConfigPath(argv []string) string {
	for i, a := range argv {
		switch {
		case (a == "-y" || a == "--fpm-config") && i+1 < len(argv):
			return argv[i+1]
		case strings.HasPrefix(a, "--fpm-config="):
			return strings.TrimPrefix(a, "--fpm-config=")
		case strings.HasPrefix(a, "-y") && len(a) > 2:
			return a[2:]
		}
	}
	return ""
}

// Reaper is the runner's reaper, for commands fpmguard runs meanwhile.
func (rn *Runner) Reaper() *Reaper { return rn.reaper }

// PID is the current master's pid, 0 while none runs.
func (rn *Runner) PID() int { return int(rn.pid.Load()) }

// Restarts counts unexpected exits that were followed by a restart.
func (rn *Runner) Restarts() uint64 { return rn.restarts.Load() }

// OnStart sets fn to be called with each new master's pid, replacing the
// one set before.
func (rn *Runner) OnStart(fn func(pid int)) {
	rn.mu.Lock()
	rn.onStart = fn
	rn.mu.Unlock()
}

// Run keeps php-fpm running until ctx ends, then stops it: SIGQUIT (finish
// what is in flight), SIGTERM after StopTimeout, SIGKILL to the group last.
// It returns php-fpm's exit code. Signals on forward are passed to the
// master.
func (rn *Runner) Run(ctx context.Context, forward <-chan os.Signal) int {
	reapCtx, stopReaper := context.WithCancel(context.Background())
	defer stopReaper()
	go rn.reaper.Run(reapCtx)

	backoff := rn.cfg.BackoffStart
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(rn.cfg.Argv[0], rn.cfg.Argv[1:]...)
		cmd.Stdout, cmd.Stderr = rn.cfg.Stdout, rn.cfg.Stderr
		// A group of its own: the group is the master and all its workers,
		// so orphans of a killed master can be found and stopped.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		exited, err := rn.reaper.Start(cmd)
		if err != nil {
			rn.events.Add(Event{Kind: EventMasterRestart, Message: fmt.Sprintf("cannot start %s: %v", rn.cfg.Argv[0], err)})
			return 127
		}
		pid := cmd.Process.Pid
		rn.pid.Store(int64(pid))
		started := time.Now()
		rn.mu.Lock()
		hook := rn.onStart
		rn.mu.Unlock()
		if hook != nil {
			hook(pid)
		}

		ws, stopped := rn.wait(ctx, pid, exited, forward)
		rn.pid.Store(0)
		if stopped {
			rn.killGroup(pid)
			rn.events.Add(Event{Master: pid, Kind: EventMasterRestart, Message: fmt.Sprintf("php-fpm master %d stopped (%s)", pid, describeExit(ws))})
			return exitCode(ws)
		}
		up := time.Since(started)
		if up >= rn.cfg.HealthyReset {
			backoff = rn.cfg.BackoffStart
		}
		rn.events.Add(Event{Master: pid, Kind: EventMasterRestart, Message: fmt.Sprintf("php-fpm master %d exited unexpectedly (%s) after %s; restarting in %s (attempt %d)",
			pid, describeExit(ws), up.Round(time.Millisecond), backoff, attempt)})
		// The old master's workers may still serve meanwhile: they go only
		// right before the new master needs their sockets.
		select {
		case <-ctx.Done():
			rn.killGroup(pid)
			return exitCode(ws)
		case <-time.After(backoff):
		}
		rn.killGroup(pid)
		backoff = min(2*backoff, rn.cfg.BackoffMax)
		rn.restarts.Add(1)
	}
}

// wait waits for the master to exit, forwarding signals, and stops it when
// ctx ends. stopped is true when the exit was asked for.
func (rn *Runner) wait(ctx context.Context, pid int, exited <-chan syscall.WaitStatus, forward <-chan os.Signal) (syscall.WaitStatus, bool) {
	for {
		select {
		case ws := <-exited:
			return ws, false
		case sig := <-forward:
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(pid, s)
			}
		case <-ctx.Done():
			return rn.stop(pid, exited), true
		}
	}
}

// stop ends the master gracefully, then by force.
func (rn *Runner) stop(pid int, exited <-chan syscall.WaitStatus) syscall.WaitStatus {
	steps := []struct {
		sig   syscall.Signal
		group bool
		wait  time.Duration
	}{
		{syscall.SIGQUIT, false, rn.cfg.StopTimeout},
		{syscall.SIGTERM, false, orphanWait},
		{syscall.SIGKILL, true, orphanWait},
	}
	rn.events.Add(Event{Master: pid, Kind: EventMasterRestart, Message: fmt.Sprintf("stopping php-fpm master %d: SIGQUIT, SIGTERM after %s", pid, rn.cfg.StopTimeout)})
	for _, s := range steps {
		target := pid
		if s.group {
			target = -pid
		}
		_ = syscall.Kill(target, s.sig)
		select {
		case ws := <-exited:
			return ws
		case <-time.After(s.wait):
		}
	}
	return <-exited
}

// killGroup SIGKILLs what is left of the master's process group: workers
// of a master that died keep the listen sockets open, and a new master
// would fail with "Address already in use". The group is ours: php-fpm was
// started in it, so every member descends from that master.
func (rn *Runner) killGroup(pgid int) {
	deadline := time.Now().Add(orphanWait)
	for groupHasMembers(pgid) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			rn.events.Add(Event{Master: pgid, Kind: EventMasterRestart, Message: fmt.Sprintf("processes of the old php-fpm group %d are still there after SIGKILL", pgid)})
			return
		}
		rn.reaper.reap()
		time.Sleep(10 * time.Millisecond)
	}
}

// groupHasMembers reports whether a process of the group is alive.
// kill(-pgid, 0) also counts zombies; the reaper collects ours.
func groupHasMembers(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

func setChildSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
