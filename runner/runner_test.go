package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"golang.org/x/sys/unix"
)

// startRunner runs php-fpm under a Runner until the test ends. It returns
// the runner, a stop function, and a function that waits for Run's exit
// code.
func startRunner(t *testing.T, argv []string, events *event.Log) (*Runner, context.CancelFunc, func() (int, bool)) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "php-fpm.out"))
	if err != nil {
		t.Fatal(err)
	}
	rn, err := New(Config{Argv: argv, StopTimeout: 3 * time.Second, Stdout: out, Stderr: out}, events)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	go func() {
		code = rn.Run(ctx, nil)
		close(done)
	}()
	wait := func() (int, bool) {
		select {
		case <-done:
			return code, true
		case <-time.After(15 * time.Second):
			return 0, false
		}
	}
	t.Cleanup(func() {
		cancel()
		if _, ok := wait(); !ok {
			t.Error("runner did not stop")
		}
		out.Close()
	})
	return rn, cancel, wait
}

func ping(fpm *fpmtest.FPM) error {
	_, err := fastcgi.Client{Timeout: 500 * time.Millisecond}.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}, "/ping", "pong")
	return err
}

// TestRunRestartsAKilledMaster: SIGKILL to the master leaves its workers
// holding the sockets; the runner kills them and starts a new master that
// serves after the backoff, with no "Address already in use".
func TestRunRestartsAKilledMaster(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	events := event.NewLog(nil)
	rn, _, _ := startRunner(t, fpm.Argv(), events)
	first := fpmtest.Poll(t, 15*time.Second, func() (int, bool) { return rn.PID(), rn.PID() != 0 && ping(fpm) == nil })
	// One worker can answer the ping before the master has forked the
	// second, or before the second has renamed itself from the master's
	// title to its pool's: wait for both.
	orphans := fpmtest.Poll(t, 15*time.Second, func() ([]int, bool) {
		w := fpmtest.ChildrenTitled(first, "php-fpm: pool www")
		return w, len(w) == 2
	})

	killed := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := fpmtest.Poll(t, 15*time.Second, func() (int, bool) {
		pid := rn.PID()
		return pid, pid != 0 && pid != first && ping(fpm) == nil
	})
	t.Logf("new master %d serving %v after SIGKILL of %d", second, time.Since(killed).Round(time.Millisecond), first)
	for _, pid := range orphans {
		if err := syscall.Kill(pid, 0); err == nil {
			if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z") {
				t.Errorf("orphaned worker %d of the old master is alive", pid)
			}
		}
	}
	if log := fpm.Log(); strings.Contains(log, "Address already in use") {
		t.Errorf("php-fpm log:\n%s", log)
	}
	if rn.Restarts() != 1 {
		t.Errorf("restarts = %d, want 1", rn.Restarts())
	}
	var restartEvents []string
	for _, e := range events.Recent(0) {
		restartEvents = append(restartEvents, e.Message)
	}
	if !strings.Contains(strings.Join(restartEvents, "\n"), "exited unexpectedly (killed by signal 9 (killed))") {
		t.Errorf("events %q", restartEvents)
	}
}

// TestRunStopsGracefully: asked to stop, the runner sends SIGQUIT, php-fpm
// finishes and exits 0, and no process of its group is left.
func TestRunStopsGracefully(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	rn, cancel, wait := startRunner(t, fpm.Argv(), event.NewLog(nil))
	pid := fpmtest.Poll(t, 15*time.Second, func() (int, bool) { return rn.PID(), rn.PID() != 0 && ping(fpm) == nil })
	cancel()
	code, ok := wait()
	if !ok {
		t.Fatal("runner did not stop")
	}
	if code != 0 {
		t.Errorf("exit code %d, want php-fpm's 0", code)
	}
	if groupHasMembers(pid) {
		t.Errorf("processes of group %d are left", pid)
	}
	if !strings.Contains(fpm.Log(), "exiting, bye-bye") {
		t.Errorf("php-fpm did not finish gracefully:\n%s", fpm.Log())
	}
}

// TestRunBrokenConfigBacksOff: a config php-fpm rejects gives restarts
// spaced by a growing backoff, one line each, not a tight loop.
func TestRunBrokenConfigBacksOff(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{})
	if err := os.WriteFile(fpm.Conf, []byte("[global]\nerror_log = "+filepath.Join(fpm.Dir, "error.log")+"\n[www]\npm = sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	events := event.NewLog(nil)
	startRunner(t, fpm.Argv(), events)
	// Attempts start at 0s, 1s, 3s, 7s: three within a window of 3.5s,
	// where a tight loop would make hundreds.
	<-time.After(3500 * time.Millisecond)
	var attempts []string
	for _, e := range events.Recent(0) {
		if strings.Contains(e.Message, "exited unexpectedly") {
			attempts = append(attempts, e.Message)
		}
	}
	if len(attempts) < 2 || len(attempts) > 3 {
		t.Errorf("%d restarts in 3.5s, want 2 or 3 (backoff 1s, 2s): %q", len(attempts), attempts)
	}
	for _, a := range attempts {
		if strings.Contains(a, "\n") || !strings.Contains(a, "exit status 78") {
			t.Errorf("attempt line %q", a)
		}
	}
}

// TestMasterOutlivesTheThreadOfItsCaller: the parent-death signal comes
// when the thread that forked a process ends, not the process
// (golang/go#27505). A master started from a goroutine whose thread then
// ends must live on; a control forked on that thread itself is signalled.
func TestMasterOutlivesTheThreadOfItsCaller(t *testing.T) {
	reaper, err := NewReaper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reaper.Run(ctx)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	rn := &Runner{cfg: Config{Argv: []string{sleep, "600"}, Stdout: os.Stdout, Stderr: os.Stderr}, reaper: reaper}

	type started struct {
		pid    int
		exited <-chan syscall.WaitStatus
		err    error
	}
	var control, master started
	for {
		ok := make(chan bool)
		go func() {
			// Locked and never unlocked: Go ends the thread when this
			// goroutine returns. The main thread is never ended, so try
			// again on another.
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				runtime.UnlockOSThread()
				ok <- false
				return
			}
			ctl := exec.Command(sleep, "600")
			ctl.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
			control.exited, control.err = reaper.Start(ctl)
			if control.err == nil {
				control.pid = ctl.Process.Pid
			}
			master.pid, master.exited, master.err = rn.startMaster()
			ok <- true
		}()
		if <-ok {
			break
		}
	}
	for _, p := range []started{control, master} {
		if p.err != nil {
			t.Fatal(p.err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-p.pid, syscall.SIGKILL) })
	}

	select {
	case ws := <-control.exited:
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Fatalf("control: %s, want its parent-death signal SIGTERM", describeExit(ws))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the control forked on the ended thread got no parent-death signal")
	}
	// The control's signal and the master's, had it been forked on that
	// thread, were sent at the same moment.
	select {
	case ws := <-master.exited:
		t.Fatalf("master forked through the fork thread ended with its caller's thread: %s", describeExit(ws))
	case <-time.After(time.Second):
	}
}

// TestGroupMembers: a group is fpmguard's to kill only while a member is
// its child.
func TestGroupMembers(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	pgid := cmd.Process.Pid
	if members, ours := groupMembers(pgid, os.Getpid()); !members || !ours {
		t.Errorf("group of a child: members %v, ours %v", members, ours)
	}
	if members, ours := groupMembers(pgid, 1); !members || ours {
		t.Errorf("group checked for another parent: members %v, ours %v", members, ours)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if members, _ := groupMembers(pgid, os.Getpid()); members {
		t.Errorf("group %d has members after its only one was reaped", pgid)
	}
}
