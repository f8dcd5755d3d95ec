package watch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// TestSlowlogEntryOnlyReadsFiles: a slowlog that is not a regular file (a
// container's /proc/self/fd/2, a pipe) is never read: the read would not
// end.
func TestSlowlogEntryOnlyReadsFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "slow.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() { done <- slowlogEntry(supervisor.Target{Slowlog: fifo}, 42, supervisor.Trust{}) }()
	select {
	case got := <-done:
		if got != "" {
			t.Errorf("got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("reading a FIFO slowlog blocked")
	}
	file := filepath.Join(t.TempDir(), "slow.log")
	entry := "[26-Nov-2026 09:00:00]  [pool www] pid 42\nscript_filename = /var/www/a.php\n[0x1] sleep() /var/www/a.php:2"
	if err := os.WriteFile(file, []byte("[26-Nov-2026 08:59:00]  [pool www] pid 7\nscript_filename = /x.php\n\n"+entry+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := slowlogEntry(supervisor.Target{Slowlog: file}, 42, supervisor.Trust{}); got != entry {
		t.Errorf("entry %q, want %q", got, entry)
	}
}

// TestKillHungBlockedWorker: with --kill-hung-after 2s the sleeping worker
// is killed within the threshold + one interval + grace, the master
// respawns it, other requests run throughout, and the event names the URI
// and says blocked.
func TestKillHungBlockedWorker(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true, Slowlog: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP, "ok.php": "<?php echo 'ok';"},
	})
	interval, grace, after := 500*time.Millisecond, 2*time.Second, 2*time.Second
	w := watcherFor(t, fpm, Config{Interval: interval, Actions: ActionConfig{KillHungAfter: after, KillGrace: grace}})
	run(t, w)
	before := fpm.WorkerPIDs("www")

	start := time.Now()
	hungErr := make(chan error, 1)
	go func() { hungErr <- fpm.Request(context.Background(), "sleep.php", "ms=30000&token=secret") }()

	// Normal requests keep working on the other workers meanwhile.
	var okErrs []error
	deadline := start.Add(after + 30*time.Second)
	var killed event.Event
	for time.Now().Before(deadline) {
		if err := fpm.Request(context.Background(), "ok.php", ""); err != nil {
			okErrs = append(okErrs, err)
		}
		if ev := eventsOf(w, event.KindAction); len(ev) > 0 {
			killed = ev[0]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if killed.PID == 0 {
		t.Fatalf("no kill within %v; events %+v", after+30*time.Second, w.Events().Recent(0))
	}
	if len(okErrs) > 0 {
		t.Errorf("normal requests failed meanwhile: %v", okErrs)
	}
	select {
	case err := <-hungErr:
		if fastcgi.ClassOf(err) != fastcgi.ClassReset {
			t.Errorf("the hung request ended with %v, want a reset (nginx: 502)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hung request did not end after the kill")
	}
	if !strings.Contains(killed.Message, "SIGTERM worker") || !strings.Contains(killed.Message, "(blocked)") || !strings.Contains(killed.Message, "/sleep.php") {
		t.Errorf("kill event %q", killed.Message)
	}
	if strings.Contains(killed.Message, "secret") || killed.Worker == nil || killed.Worker.URI != "/sleep.php" || killed.Worker.HungKind != "blocked" {
		t.Errorf("kill record %+v", killed.Worker)
	}
	if !strings.Contains(killed.Worker.Slowlog, fmt.Sprintf("pid %d", killed.PID)) || !strings.Contains(killed.Worker.Slowlog, "sleep.php") {
		t.Errorf("slowlog entry %q", killed.Worker.Slowlog)
	}
	if !slices.Contains(before, killed.PID) {
		t.Errorf("killed pid %d was not a worker (%v)", killed.PID, before)
	}
	// The master respawns: three workers again, the killed one not among them.
	fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := fpm.WorkerPIDs("www")
		return now, len(now) == 3 && !slices.Contains(now, killed.PID)
	})
}

func TestKillHungSpinningWorker(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"spin.php": fpmtest.SpinPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: 500 * time.Millisecond, Actions: ActionConfig{KillHungAfter: 3 * time.Second}})
	w.th.HungAfter = time.Second // judged hung first, then killed
	run(t, w)
	fpm.Background(t, 1, "spin.php", "s=30")
	ev := fpmtest.Poll(t, 30*time.Second, func() ([]event.Event, bool) {
		ev := eventsOf(w, event.KindAction)
		return ev, len(ev) > 0
	})
	if !strings.Contains(ev[0].Message, "(spinning)") || ev[0].Worker.HungKind != "spinning" {
		t.Errorf("kill event %q, want spinning", ev[0].Message)
	}
	hung := fpmtest.Poll(t, 30*time.Second, func() ([]event.Event, bool) {
		ev := eventsOf(w, event.KindHung)
		return ev, len(ev) > 0
	})
	if !strings.Contains(hung[0].Message, "hung (spinning)") {
		t.Errorf("hung events %+v", hung)
	}
}

// TestKillCap: with four workers hung and --max-kill-ratio 0.5, one
// interval kills two.
func TestKillCap(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 4, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: 500 * time.Millisecond}})
	fpm.Background(t, 4, "sleep.php", "ms=30000")
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		r := (&supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs}).Probe(context.Background(), fpmTargets(t, fpm)["www"], nil)
		n := 0
		for _, p := range r.Processes {
			if p.State == "Running" && p.RequestDurationSeconds > 0.6 {
				n++
			}
		}
		return n, n == 4
	})
	w.tick(context.Background(), w.pools[0])
	counts := w.actions.Counts()
	if got := counts[ActionKey{w.pools[0].id, ActionKill, ResultOK}]; got != 2 {
		t.Errorf("one interval killed %d workers, want 2; counts %v", got, counts)
	}
	if counts[ActionKey{w.pools[0].id, ActionKill, ResultCapped}] != 1 {
		t.Errorf("the cap was not reported: %v", counts)
	}
}

// TestEscalationToSIGKILL: php-fpm workers die on SIGTERM at once, so a
// stopped worker stands in for one that cannot act on it.
func TestEscalationToSIGKILL(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: 300 * time.Millisecond, Actions: ActionConfig{KillHungAfter: time.Second, KillGrace: time.Second}})
	fpm.Background(t, 1, "sleep.php", "ms=30000")
	pid := fpm.WaitWorker(t, "www", fpmtest.Running)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	ev := fpmtest.Poll(t, 30*time.Second, func() ([]event.Event, bool) {
		for _, e := range eventsOf(w, event.KindAction) {
			if strings.HasPrefix(e.Message, "SIGKILL worker") {
				return []event.Event{e}, true
			}
		}
		return nil, false
	})
	if ev[0].PID != pid || !strings.Contains(ev[0].Message, "os state stopped") {
		t.Errorf("SIGKILL event %+v for pid %d", ev[0], pid)
	}
	fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) { now := fpm.WorkerPIDs("www"); return now, !slices.Contains(now, pid) })
}

// TestIdleWorkersAreNeverTouched: a threshold shorter than any request
// still leaves idle workers alone, dry run or not.
func TestIdleWorkersAreNeverTouched(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	// Give the workers a last request that took a while: idle workers
	// report its duration.
	for range 2 {
		if err := fpm.Request(context.Background(), "sleep.php", "ms=50"); err != nil {
			t.Fatal(err)
		}
	}
	// php-fpm calls a worker "Finishing" for a moment after its request:
	// start once both are idle, as the test means.
	tg := fpmTargets(t, fpm)["www"]
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		st, err := fastcgi.Client{Timeout: 10 * time.Second}.Status(context.Background(), tg.StatusVia(), tg.StatusPath)
		idle := 0
		if err == nil {
			for _, p := range st.Processes {
				if p.Idle() {
					idle++
				}
			}
		}
		return idle, idle == 2
	})
	before := fpm.WorkerPIDs("www")
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: time.Millisecond}})
	var signalled []int
	w.actions.signal = func(pid int, _ syscall.Signal) error { signalled = append(signalled, pid); return nil }
	for range 3 {
		w.tick(context.Background(), w.pools[0])
	}
	if len(signalled) > 0 || len(eventsOf(w, event.KindAction)) > 0 {
		t.Errorf("idle workers signalled: %v", signalled)
	}
	if after := fpm.WorkerPIDs("www"); !slices.Equal(before, after) {
		t.Errorf("workers changed: %v -> %v", before, after)
	}
}

func TestDryRunSignalsNothing(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: 300 * time.Millisecond, DryRun: true}})
	var signalled []int
	w.actions.signal = func(pid int, _ syscall.Signal) error { signalled = append(signalled, pid); return nil }
	fpm.Background(t, 1, "sleep.php", "ms=30000")
	fpmtest.Poll(t, 30*time.Second, func() (uint64, bool) {
		w.tick(context.Background(), w.pools[0])
		n := w.actions.Counts()[ActionKey{w.pools[0].id, ActionKill, ResultDryRun}]
		return n, n > 0
	})
	if len(signalled) > 0 {
		t.Errorf("dry run signalled %v", signalled)
	}
	ev := eventsOf(w, event.KindAction)
	if len(ev) == 0 || !strings.HasPrefix(ev[0].Message, "dry run: would SIGTERM worker") {
		t.Errorf("events %+v", ev)
	}
}

// TestForgedStatusPageNeverSignalsAStranger: a status page that names a
// process which is not a worker of the master (here a sleep of the test's
// own) gets it refused, never signalled.
func TestForgedStatusPageNeverSignalsAStranger(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}}})
	stranger := exec.Command("sleep", "60")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stranger.Process.Kill()
		_ = stranger.Wait()
	})
	forged := forgeStatus(t, stranger.Process.Pid, "Running")
	tg := fpmTargets(t, fpm)["www"]
	tg.StatusAddress = forged
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs}
	w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: time.Second}}, event.NewLog(nil))
	var signalled []int
	w.actions.signal = func(pid int, sig syscall.Signal) error {
		signalled = append(signalled, pid)
		return syscall.Kill(pid, sig)
	}
	w.tick(context.Background(), w.pools[0])
	if len(signalled) > 0 {
		t.Fatalf("signalled %v", signalled)
	}
	refused := eventsOf(w, event.KindActionRefused)
	want := fmt.Sprintf("not killing pid %d named by the status page of pool www: its parent is", stranger.Process.Pid)
	if len(refused) != 1 || !strings.Contains(refused[0].Message, want) {
		t.Errorf("refusals %+v, want %q", refused, want)
	}
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the stranger is gone: %v", err)
	}
}

// TestReloadUnhealthy: a failing heartbeat with nothing to kill leads to a
// config test and SIGUSR2; a config that fails the test is never loaded.
func TestReloadUnhealthy(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("config broken %v", broken), func(t *testing.T) {
			fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
			w := watcherFor(t, fpm, Config{Interval: time.Hour, UnhealthyAfter: 2, Actions: ActionConfig{KillHungAfter: time.Second, ReloadUnhealthy: true}})
			w.prober.Client.Timeout = 300 * time.Millisecond
			var signalled []syscall.Signal
			w.actions.signal = func(pid int, sig syscall.Signal) error {
				if pid != fpm.MasterPID() {
					t.Errorf("signal %v to %d, not the master", sig, pid)
				}
				signalled = append(signalled, sig)
				return nil
			}
			if broken {
				if err := os.WriteFile(fpm.Conf, []byte("[www]\npm = sometimes\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			stopAllWorkers(t, fpm)
			for range 2 {
				w.tick(context.Background(), w.pools[0])
			}
			counts := w.actions.Counts()
			if broken {
				if len(signalled) != 0 || counts[ActionKey{w.pools[0].id, ActionReload, ResultConfigInvalid}] != 1 {
					t.Errorf("signals %v counts %v, want a refused reload", signalled, counts)
				}
				ev := eventsOf(w, event.KindActionRefused)
				if len(ev) != 1 || !strings.Contains(ev[0].Message, "config test `php-fpm -t -y "+fpm.Conf+"` failed") {
					t.Errorf("refusal events %+v", ev)
				}
				return
			}
			if !slices.Equal(signalled, []syscall.Signal{syscall.SIGUSR2}) || counts[ActionKey{w.pools[0].id, ActionReload, ResultOK}] != 1 {
				t.Errorf("signals %v counts %v, want one SIGUSR2", signalled, counts)
			}
		})
	}
}

// TestSameRequest: a kill goes to the request judged, and to no other:
// the worker must show, on the page read again, the same request by
// php-fpm's count, the same URI and the same start.
func TestSameRequest(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"wait.php": waitPHP},
	})
	hold(t, fpm)
	fpm.WaitWorker(t, "www", fpmtest.Running)
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 10 * time.Second}, Procs: supervisor.SystemProcs}
	r := pr.Observe(context.Background(), fpmTargets(t, fpm)["www"])
	i := slices.IndexFunc(r.Processes, func(p supervisor.ProcessState) bool { return p.RequestURI == "/wait.php" })
	if i < 0 {
		t.Fatalf("no worker runs /wait.php: %+v", r.Processes)
	}
	p := r.Processes[i]
	start, _ := r.RequestStart(p)
	at := start.Add(5 * time.Second) // read again 5 s after the request began
	seen := fastcgi.Process{PID: p.PID, State: "Running", Requests: p.Requests, RequestURI: "/wait.php?f=x", RequestDuration: 5 * time.Second}
	for _, tc := range []struct {
		name string
		edit func(*fastcgi.Process)
		want bool
	}{
		{"the same request", func(*fastcgi.Process) {}, true},
		{"the same request, finishing", func(q *fastcgi.Process) { q.State = "Finishing" }, true},
		{"idle since", func(q *fastcgi.Process) { q.State = "Idle" }, false},
		{"the worker's next request", func(q *fastcgi.Process) { q.Requests++; q.RequestDuration = time.Second }, false},
		{"the next request, same start by chance", func(q *fastcgi.Process) { q.Requests++ }, false},
		{"another URI", func(q *fastcgi.Process) { q.RequestURI = "/index.php" }, false},
		{"another start", func(q *fastcgi.Process) { q.RequestDuration = 2 * time.Second }, false},
		{"a fresh worker on the pid", func(q *fastcgi.Process) { q.State = "(null)" }, false},
	} {
		q := seen
		tc.edit(&q)
		now := running{procs: map[int]fastcgi.Process{q.PID: q}, at: at}
		if got := now.same(&r, p); got != tc.want {
			t.Errorf("%s: same = %v, want %v", tc.name, got, tc.want)
		}
	}
	if (running{procs: map[int]fastcgi.Process{}, at: at}).same(&r, p) {
		t.Error("a worker gone from the page: same")
	}
}

// TestFreshWorkerIsNotHung: a worker fresh from fork shows no stage on the
// status page ("(null)"), with a duration php-fpm counts from the clock's
// zero: the time since boot. It runs no request: it is neither hung nor
// killed, though it is the pool's own worker.
func TestFreshWorkerIsNotHung(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}}})
	pid := fpm.WorkerPIDs("www")[0]
	tg := fpmTargets(t, fpm)["www"]
	tg.StatusAddress = forgeStatus(t, pid, "(null)")
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs}
	w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: time.Second}}, event.NewLog(nil))
	var sig signals
	sig.hook(w)
	w.tick(context.Background(), w.pools[0])
	r := w.pools[0].view.Load().Report
	if len(r.Processes) != 1 || r.Processes[0].Hung || r.Processes[0].RequestDurationSeconds != 0 || !r.Processes[0].ParentOK {
		t.Errorf("fresh worker %+v, want the pool's, not hung, with no request age", r.Processes)
	}
	if got := sig.list(); len(got) > 0 || len(eventsOf(w, event.KindActionRefused)) > 0 {
		t.Errorf("signals %v, refusals %v: a fresh worker was a kill candidate", got, eventsOf(w, event.KindActionRefused))
	}
	if !w.pools[0].deadline.IsZero() {
		t.Errorf("deadline %v armed for a worker with no request", w.pools[0].deadline)
	}
}
