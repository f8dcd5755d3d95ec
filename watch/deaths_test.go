package watch

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestDeathOfAKilledWorker: a worker SIGKILLed by another process in the
// middle of a request is an event naming the cause and the request, and
// is counted.
func TestDeathOfAKilledWorker(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: 200 * time.Millisecond})
	www := w.pools[0].id
	run(t, w)
	fpm.Background(t, 1, "sleep.php", "ms=600000")
	pid := fpm.WaitWorker(t, "www", func(p fastcgi.Process) bool { return fpmtest.Running(p) && strings.HasSuffix(p.Script, "/sleep.php") })
	// Once the watcher saw it in its request.
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) {
		r := w.latest(www)
		if r == nil {
			return false, false
		}
		for _, p := range r.Processes {
			if p.PID == pid && !p.Idle() {
				return true, true
			}
		}
		return false, false
	})
	time.Sleep(2 * scanEvery)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := fpmtest.Poll(t, 30*time.Second, func() (event.Event, bool) {
		es := eventsOf(w, event.KindWorkerExit)
		if len(es) == 0 {
			return event.Event{}, false
		}
		return es[0], true
	})
	want := "was killed by SIGKILL from another process while running GET /sleep.php"
	if e.PID != pid || !strings.Contains(e.Message, want) {
		t.Errorf("event %+v, want %q", e, want)
	}
	if n := w.Snapshot().Exits[ExitKey{Pool: www, Cause: "killed"}]; n != 1 {
		t.Errorf("%d killed exits counted", n)
	}
	_ = context.Background
}
