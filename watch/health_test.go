package watch

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestReadyWhenEveryWorkerHangs: readiness fails soon after every worker
// hangs, and comes back once they are killed. Liveness holds throughout:
// hung workers are readiness's business, and liveness fails on failed
// heartbeats only after UnhealthyAfter of them in a row (here more than
// the test can see). It is sampled at every step of every wait.
func TestReadyWhenEveryWorkerHangs(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	interval := 500 * time.Millisecond
	w := watcherFor(t, fpm, Config{Interval: interval, UnhealthyAfter: 1000, Actions: ActionConfig{KillHungAfter: 3 * time.Second}})
	run(t, w)
	var notLive []string
	live := func() {
		if ok, reasons := w.Live(); !ok {
			notLive = append(notLive, reasons...)
		}
	}
	ready := func() (bool, bool) { live(); ok, _ := w.Ready(); return ok, ok }
	notReady := func() (bool, bool) { live(); ok, _ := w.Ready(); return ok, !ok }
	fpmtest.Poll(t, 30*time.Second, ready)

	fpm.Background(t, 2, "sleep.php", "ms=30000")
	hung := time.Now()
	fpmtest.Poll(t, 30*time.Second, notReady)
	t.Logf("readiness failed %v after every worker hung", time.Since(hung).Round(time.Millisecond))
	fpmtest.Poll(t, 60*time.Second, ready)
	// --max-kill-ratio 0.5 of two workers: one on its way out at a time.
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		live()
		n := len(eventsOf(w, event.KindAction))
		return n, n == 2
	})
	if len(notLive) > 0 {
		t.Errorf("liveness failed while workers hung and were killed: %q", notLive)
	}
}

// TestHealthzWhenMasterGone: liveness fails when the master dies.
func TestHealthzWhenMasterGone(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}}})
	w := watcherFor(t, fpm, Config{Interval: 200 * time.Millisecond})
	run(t, w)
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) { ok, _ := w.Live(); return ok, ok })
	if err := fpm.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reasons := fpmtest.Poll(t, 30*time.Second, func() ([]string, bool) { ok, r := w.Live(); return r, !ok })
	if !strings.Contains(strings.Join(reasons, "\n"), "pool www: master is gone") {
		t.Errorf("liveness reasons %q", reasons)
	}
	if len(eventsOf(w, event.KindMaster)) == 0 {
		t.Error("no master event")
	}
}
