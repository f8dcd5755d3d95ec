package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// startRunner runs php-fpm under a Runner until the test ends. It returns
// the runner, a stop function, and a function that waits for Run's exit
// code.
func startRunner(t *testing.T, argv []string, events *EventLog) (*Runner, context.CancelFunc, func() (int, bool)) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "php-fpm.out"))
	if err != nil {
		t.Fatal(err)
	}
	rn, err := NewRunner(RunConfig{Argv: argv, StopTimeout: 3 * time.Second, Stdout: out, Stderr: out}, events)
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
// serves within the backoff + 2s, with no "Address already in use".
func TestRunRestartsAKilledMaster(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	events := NewEventLog(nil)
	rn, _, _ := startRunner(t, fpm.Argv(), events)
	first := poll(t, 5*time.Second, func() (int, bool) { return rn.PID(), rn.PID() != 0 && ping(fpm) == nil })
	orphans := fpmtest.ChildrenTitled(first, "php-fpm: pool www")
	if len(orphans) != 2 {
		t.Fatalf("workers of master %d: %v", first, orphans)
	}

	killed := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := poll(t, DefaultBackoffStart+2*time.Second, func() (int, bool) {
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
	rn, cancel, wait := startRunner(t, fpm.Argv(), NewEventLog(nil))
	pid := poll(t, 5*time.Second, func() (int, bool) { return rn.PID(), rn.PID() != 0 && ping(fpm) == nil })
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
	events := NewEventLog(nil)
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
