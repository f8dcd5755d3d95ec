// Package runner runs php-fpm as fpmguard's child for `fpmguard run`: it
// starts it, restarts it when it dies, stops it gracefully, and reaps every
// process that ends up in its care. It imports event for what it reports
// and supervisor to find a master of its config left running; it must not
// import watch or web.
package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/supervisor"
	"golang.org/x/sys/unix"
)

// Config describes the php-fpm that `fpmguard run` owns.
type Config struct {
	Argv        []string      // php-fpm -F -y CONF ...
	StopTimeout time.Duration // after SIGQUIT, before SIGTERM; 10s if 0
	// Backoff between restarts: starts at BackoffStart, doubles up to
	// BackoffMax, and starts over after HealthyReset of uptime.
	BackoffStart, BackoffMax, HealthyReset time.Duration
	// Stdout and Stderr receive php-fpm's output; os.Stdout and os.Stderr
	// if nil. Files, so that no goroutine copies them, unless StderrLines
	// asks for php-fpm's stderr line by line.
	Stdout, Stderr *os.File
	// StderrLines, when set, gets each line php-fpm writes to its stderr,
	// which still goes on to Stderr (stderr.go): its error log, when
	// error_log names stderr. php-fpm writes its log to a terminal rather
	// than to error_log: leave it unset when Stderr is a terminal, so
	// that php-fpm's choice stays the same.
	StderrLines func(line string)
}

// Defaults of Config.
const (
	DefaultStopTimeout  = 10 * time.Second
	DefaultBackoffStart = time.Second
	DefaultBackoffMax   = 30 * time.Second
	DefaultHealthyReset = time.Minute
	// orphanWait bounds the wait for the old master's workers to die.
	orphanWait = 5 * time.Second
)

// StopSignals are the signals on which `fpmguard run` stops php-fpm the
// graceful way (SIGQUIT to the master, then Run's stop sequence) and then
// exits: every signal whose default action ends a process and that can be
// caught, so that fpmguard never ends on a signal and leaves php-fpm
// behind. Left out on purpose:
//   - SIGHUP reloads fpmguard's config; SIGUSR1 and SIGUSR2 go to the
//     master.
//   - SIGPIPE and SIGXFSZ come from fpmguard's own writes (a pipe nobody
//     reads, a file over RLIMIT_FSIZE): the write fails instead and the
//     log line is dropped and counted (LogWriter).
//   - SIGPROF drives Go's CPU profiler, SIGURG (ignored anyway) its
//     preemption, signals 32 and 33 belong to glibc and the runtime, and
//     the other real-time signals, which have no agreed meaning, Go
//     ignores: fpmguard does too.
//   - SIGKILL and SIGSTOP cannot be caught: for SIGKILL the master has a
//     parent-death signal (see startMaster).
//
// SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV and SIGSYS are caught only when
// sent with kill: raised by a fault in fpmguard itself, they still crash it,
// and the parent-death signal stops php-fpm. Go would ignore SIGALRM,
// SIGVTALRM, SIGXCPU, SIGIO and SIGPWR; they stop php-fpm here because
// their default is to end the process and senders mean that: SIGXCPU is
// the kernel's warning before RLIMIT_CPU's SIGKILL, SIGPWR is how LXC
// halts a container's init. SIGSTKFLT does not exist on every
// architecture, hence the names.
var StopSignals = signalsNamed("SIGTERM", "SIGINT", "SIGQUIT", "SIGABRT", "SIGALRM", "SIGVTALRM", "SIGXCPU", "SIGIO", "SIGPWR",
	"SIGSTKFLT", "SIGILL", "SIGTRAP", "SIGBUS", "SIGFPE", "SIGSEGV", "SIGSYS")

// signalsNamed returns the signals of this architecture among names.
func signalsNamed(names ...string) []os.Signal {
	var out []os.Signal
	for _, n := range names {
		if s := unix.SignalNum(n); s != 0 {
			out = append(out, s)
		}
	}
	return out
}

// Runner starts php-fpm as its child, restarts it when it dies, and stops
// it gracefully when asked.
type Runner struct {
	cfg    Config
	reaper *Reaper
	events *event.Log

	pid      atomic.Int64
	restarts atomic.Uint64
	mu       sync.Mutex
	onStart  func(pid int)
}

// New checks the command line and makes this process a subreaper.
func New(cfg Config, events *event.Log) (*Runner, error) {
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

	if others := rn.otherMasters(0); len(others) > 0 {
		rn.events.Add(event.Event{Master: others[0], Kind: event.KindMasterRestart, Message: fmt.Sprintf("%s: php-fpm cannot listen on the same sockets until it ends; fpmguard leaves it alone", rn.describeOthers(others))})
	}
	if ctx.Err() != nil {
		return 0 // asked to stop before php-fpm ever ran
	}
	backoff := rn.cfg.BackoffStart
	for attempt := 1; ; attempt++ {
		pid, exited, err := rn.startMaster()
		if err != nil {
			rn.events.Add(event.Event{Kind: event.KindMasterRestart, Message: fmt.Sprintf("cannot start %s: %v", rn.cfg.Argv[0], err)})
			return 127
		}
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
			rn.events.Add(event.Event{Master: pid, Kind: event.KindMasterRestart, Message: fmt.Sprintf("php-fpm master %d stopped (%s)", pid, describeExit(ws))})
			return exitCode(ws)
		}
		up := time.Since(started)
		if up >= rn.cfg.HealthyReset {
			backoff = rn.cfg.BackoffStart
		}
		msg := fmt.Sprintf("php-fpm master %d exited unexpectedly (%s) after %s; restarting in %s (attempt %d)",
			pid, describeExit(ws), up.Round(time.Millisecond), backoff, attempt)
		if others := rn.otherMasters(pid); len(others) > 0 {
			msg += "; " + rn.describeOthers(others) + " and may hold its sockets"
		}
		rn.events.Add(event.Event{Master: pid, Kind: event.KindMasterRestart, Message: msg})
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

// startMaster starts a php-fpm master through the reaper, on the fork
// thread, and returns its pid and the channel of its exit status.
func (rn *Runner) startMaster() (int, <-chan syscall.WaitStatus, error) {
	cmd := exec.Command(rn.cfg.Argv[0], rn.cfg.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = rn.cfg.Stdout, rn.cfg.Stderr
	if rn.cfg.StderrLines != nil {
		w, err := rn.stderrPipe()
		if err != nil {
			return 0, nil, fmt.Errorf("making php-fpm's stderr pipe: %w", err)
		}
		// php-fpm holds its own copy once started.
		defer w.Close()
		cmd.Stderr = w
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A group of its own: the group is the master and all its
		// workers, so orphans of a killed master can be found and stopped.
		Setpgid: true,
		// When fpmguard dies without stopping php-fpm (SIGKILL, the OOM
		// killer, a panic), the kernel sends the master SIGQUIT: it
		// finishes the requests in flight and exits, escalating by itself
		// after its process_control_timeout. php-fpm is never left
		// running unsupervised.
		Pdeathsig: syscall.SIGQUIT,
	}
	var exited <-chan syscall.WaitStatus
	var err error
	onForkThread(func() { exited, err = rn.reaper.Start(cmd) })
	if err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, exited, nil
}

// forkThread is the one OS thread that forks every php-fpm master. Linux
// sends the parent-death signal when the *thread* that forked the child
// ends, not the process (golang/go#27505), and Go ends a thread whenever a
// goroutine locked to it exits, so a master forked from an arbitrary
// goroutine could get SIGQUIT while fpmguard runs on. This thread is
// locked by a goroutine that never unlocks it and never exits: it ends
// only with the process.
var forkThread struct {
	once  sync.Once
	calls chan func()
}

// onForkThread runs fn on the fork thread and waits for it.
func onForkThread(fn func()) {
	forkThread.once.Do(func() {
		forkThread.calls = make(chan func())
		go func() {
			runtime.LockOSThread() // for good: see forkThread
			for call := range forkThread.calls {
				call()
			}
		}()
	})
	done := make(chan struct{})
	forkThread.calls <- func() {
		defer close(done)
		fn()
	}
	<-done
}

// otherMasters lists the php-fpm masters that run with this runner's
// config, other than its own master ours (0 for none): left by an earlier
// fpmguard run that could not stop them, or started by hand. They hold the
// listen sockets, so a new master fails to start ("Another FPM instance
// seems to already listen"). fpmguard never signals them: it cannot tell
// that they are its own. It scans the process table, so it is called at
// start and after an unexpected exit only.
func (rn *Runner) otherMasters(ours int) []int {
	conf := ConfigPath(rn.cfg.Argv)
	if conf == "" {
		return nil
	}
	conf, err := filepath.Abs(conf)
	if err != nil {
		return nil
	}
	masters, err := supervisor.FindMasters(context.Background())
	if err != nil {
		return nil
	}
	var out []int
	for _, m := range masters {
		if m.PID != ours && m.Root == "" && m.Config == conf {
			out = append(out, m.PID)
		}
	}
	return out
}

// describeOthers names masters found by otherMasters.
func (rn *Runner) describeOthers(pids []int) string {
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("php-fpm master %s, not started by this fpmguard, already runs with %s", strings.Join(list, ", "), ConfigPath(rn.cfg.Argv))
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
	rn.events.Add(event.Event{Master: pid, Kind: event.KindMasterRestart, Message: fmt.Sprintf("stopping php-fpm master %d: SIGQUIT, SIGTERM after %s", pid, rn.cfg.StopTimeout)})
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
// would fail with "Address already in use". It is called after the master
// was reaped, so its pid, the group's id, may be another process's by now
// if the whole group was gone: the group is signalled only while one of
// its members is a child of fpmguard. Every process left of ours is: the
// master is reaped, and fpmguard is the subreaper of its orphans.
func (rn *Runner) killGroup(pgid int) {
	deadline := time.Now().Add(orphanWait)
	for {
		members, ours := groupMembers(pgid, os.Getpid())
		if !members {
			return
		}
		if !ours {
			rn.events.Add(event.Event{Master: pgid, Kind: event.KindMasterRestart, Message: fmt.Sprintf("process group %d is no longer php-fpm's: left alone", pgid)})
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			rn.events.Add(event.Event{Master: pgid, Kind: event.KindMasterRestart, Message: fmt.Sprintf("processes of the old php-fpm group %d are still there after SIGKILL", pgid)})
			return
		}
		rn.reaper.reap()
		time.Sleep(10 * time.Millisecond)
	}
}

// groupMembers scans /proc for group pgid: whether it has members, zombies
// included, and whether one of them is a child of parent.
func groupMembers(pgid, parent int) (members, ours bool) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The fields after the command name, which may hold ") ": state,
		// ppid, pgrp.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		members = true
		if f[1] == strconv.Itoa(parent) {
			ours = true
		}
	}
	return members, ours
}

// groupHasMembers reports whether a process of the group is alive.
// kill(-pgid, 0) also counts zombies; the reaper collects ours.
func groupHasMembers(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

func setChildSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
