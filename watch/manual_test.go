package watch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// busyWorkers waits until the watcher's snapshot shows n workers of pool
// www running a request, and returns them.
func busyWorkers(t *testing.T, w *Watcher, n int) []supervisor.ProcessState {
	t.Helper()
	return fpmtest.Poll(t, 30*time.Second, func() ([]supervisor.ProcessState, bool) {
		w.tick(context.Background(), w.pools[0])
		var busy []supervisor.ProcessState
		for _, p := range w.Snapshot().Pools[0].Report.Processes {
			if p.State == "Running" && !p.ProbeRequest() {
				busy = append(busy, p)
			}
		}
		return busy, len(busy) == n
	})
}

// TestKillWorkerByHand: a kill a person asks for goes through the
// watchdog's rules: an idle worker is refused, an unknown pool is an
// error, a busy worker is SIGTERMed and respawned, and the cap counts the
// workers already on their way out.
func TestKillWorkerByHand(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillGrace: time.Second}})
	t.Cleanup(w.actions.wait)
	ctx := context.Background()

	if _, err := w.KillWorker(ctx, "nope", 1, "a test"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("unknown pool: %v", err)
	}
	w.tick(ctx, w.pools[0])
	idle := w.Snapshot().Pools[0].Report.Processes[0]
	if !idle.Idle() {
		t.Fatalf("worker %d is not idle: %+v", idle.PID, idle)
	}
	res, err := w.KillWorker(ctx, "www", idle.PID, "a test")
	if err != nil || res.Result != ResultRefused || !strings.Contains(res.Message, "idle") {
		t.Errorf("idle worker: %+v %v", res, err)
	}

	fpm.Background(t, 2, "sleep.php", "ms=60000")
	busy := busyWorkers(t, w, 2)

	// Worker 0 on its way out: the cap (one of two at once) refuses a
	// second, and the same worker is not signalled twice.
	w.actions.mu.Lock()
	w.actions.pending[busy[0].PID] = busy[0].StartTicks()
	w.actions.mu.Unlock()
	if res, _ := w.KillWorker(ctx, "www", busy[1].PID, "a test"); res.Result != ResultCapped || !strings.Contains(res.Message, "at most 1 are at once") {
		t.Errorf("over the cap: %+v", res)
	}
	if res, _ := w.KillWorker(ctx, "www", busy[0].PID, "a test"); res.Result != ResultRefused || !strings.Contains(res.Message, "already") {
		t.Errorf("twice: %+v", res)
	}
	w.actions.mu.Lock()
	delete(w.actions.pending, busy[0].PID)
	w.actions.mu.Unlock()

	res, err = w.KillWorker(ctx, "www", busy[1].PID, "fpmguard top")
	if err != nil || !res.Done() || !strings.Contains(res.Message, "on request of fpmguard top") {
		t.Fatalf("busy worker: %+v %v", res, err)
	}
	fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := fpm.WorkerPIDs("www")
		return now, len(now) == 2 && !slices.Contains(now, busy[1].PID)
	})
	counts := w.actions.Counts()
	if counts[ActionKey{w.pools[0].id, ActionKill, ResultOK}] != 1 || counts[ActionKey{w.pools[0].id, ActionKill, ResultCapped}] != 1 || counts[ActionKey{w.pools[0].id, ActionKill, ResultRefused}] != 2 {
		t.Errorf("counts: %v", counts)
	}
	var acts []event.Event
	for _, e := range w.Events().Recent(0) {
		if e.Kind == event.KindAction {
			acts = append(acts, e)
		}
	}
	if len(acts) != 1 || acts[0].PID != busy[1].PID || acts[0].Worker == nil {
		t.Errorf("action events: %+v", acts)
	}
}

// TestKillWorkerDryRun: under --dry-run a kill by hand is reported and
// nothing is signalled.
func TestKillWorkerDryRun(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{DryRun: true}})
	fpm.Background(t, 1, "sleep.php", "ms=60000")
	busy := busyWorkers(t, w, 1)
	before := fpm.WorkerPIDs("www")
	res, err := w.KillWorker(context.Background(), "www", busy[0].PID, "a test")
	if err != nil || res.Result != ResultDryRun || !strings.HasPrefix(res.Message, "dry run: would SIGTERM") {
		t.Errorf("%+v %v", res, err)
	}
	if after := fpm.WorkerPIDs("www"); !slices.Equal(before, after) {
		t.Errorf("workers changed: %v -> %v", before, after)
	}
}

// TestKillWorkerAcrossMasters: two masters each with a pool www. A person
// who names www alone is asked which; a pid is looked for in the pool
// named, never in the other www; and the kill is counted and recorded for
// that pool only.
func TestKillWorkerAcrossMasters(t *testing.T) {
	opts := fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}}
	a, b := fpmtest.Start(t, opts), fpmtest.Start(t, opts)
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 30 * time.Second}}
	ta, tb := fpmTargets(t, a)["www"], fpmTargets(t, b)["www"]
	w := New(pr, []supervisor.Target{ta, tb}, Config{Interval: time.Hour, Actions: ActionConfig{KillGrace: time.Second}}, event.NewLog(nil))
	t.Cleanup(w.actions.wait)
	ctx := context.Background()
	wwwA, wwwB := "www@"+a.Conf, "www@"+b.Conf

	b.Background(t, 1, "sleep.php", "ms=60000")
	busy := fpmtest.Poll(t, 30*time.Second, func() (supervisor.ProcessState, bool) {
		w.tick(ctx, w.pools[1])
		for _, p := range w.Snapshot().Pools[1].Report.Processes {
			if p.State == "Running" && !p.ProbeRequest() {
				return p, true
			}
		}
		return supervisor.ProcessState{}, false
	})
	w.tick(ctx, w.pools[0])

	_, err := w.KillWorker(ctx, "www", busy.PID, "a test")
	if !errors.Is(err, ErrAmbiguousPool) || !strings.Contains(err.Error(), wwwA) || !strings.Contains(err.Error(), wwwB) {
		t.Errorf("www alone: %v", err)
	}
	if _, err := w.Slowlog(ctx, "www", busy.PID); !errors.Is(err, ErrAmbiguousPool) {
		t.Errorf("slowlog of www alone: %v", err)
	}
	if res, err := w.KillWorker(ctx, wwwA, busy.PID, "a test"); err != nil || res.Result != ResultRefused || !strings.Contains(res.Message, "does not name it") {
		t.Errorf("a worker of the other www: %+v %v", res, err)
	}
	res, err := w.KillWorker(ctx, wwwB, busy.PID, "a test")
	if err != nil || !res.Done() {
		t.Fatalf("kill in %s: %+v %v", wwwB, res, err)
	}
	fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := b.WorkerPIDs("www")
		return now, !slices.Contains(now, busy.PID)
	})
	counts := w.actions.Counts()
	if counts[ActionKey{tb.ID(), ActionKill, ResultOK}] != 1 || counts[ActionKey{ta.ID(), ActionKill, ResultOK}] != 0 {
		t.Errorf("counts: %v", counts)
	}
	for _, e := range w.Events().Recent(0) {
		if e.Kind == event.KindAction && (e.Pool != "www" || e.MasterName != b.Conf) {
			t.Errorf("event of the kill: %+v", e)
		}
	}
}
