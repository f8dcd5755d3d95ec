package watch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// waitPHP runs until the file ?f= exists (a minute at most): a request
// whose end the test decides.
const waitPHP = `<?php $end = microtime(true) + 60; while (!file_exists($_GET['f']) && microtime(true) < $end) { usleep(5000); } echo "released";`

// held is a request of waitPHP in pool www, released when the test says.
type held struct {
	flag string
}

func hold(t *testing.T, fpm *fpmtest.FPM) held {
	t.Helper()
	h := held{flag: filepath.Join(fpm.Dir, "release-"+strings.ReplaceAll(t.Name(), "/", "-")+time.Now().Format("150405.000000000"))}
	fpm.Background(t, 1, "wait.php", "f="+h.flag)
	t.Cleanup(h.release)
	return h
}

func (h held) release() { _ = os.WriteFile(h.flag, nil, 0o644) }

// running waits until the watcher's latest view of pool www shows a worker
// running uri, and returns it.
func viewRunning(t *testing.T, w *Watcher, uri string) (supervisor.ProcessState, *PoolView) {
	t.Helper()
	return fpmtest.Poll(t, 30*time.Second, func() (supervisor.ProcessState, bool) {
		v := w.pools[0].view.Load()
		if v == nil {
			return supervisor.ProcessState{}, false
		}
		for _, p := range v.Report.Processes {
			if !p.Idle() && p.RequestURI == uri {
				return p, true
			}
		}
		return supervisor.ProcessState{}, false
	}), w.pools[0].view.Load()
}

// signals records the signals the actor sends, and sends them.
type signals struct {
	mu   sync.Mutex
	sent []sent
}

type sent struct {
	pid int
	sig syscall.Signal
	at  time.Time
}

func (s *signals) hook(w *Watcher) {
	w.actions.signal = func(pid int, sig syscall.Signal) error {
		s.mu.Lock()
		s.sent = append(s.sent, sent{pid, sig, time.Now()})
		s.mu.Unlock()
		return syscall.Kill(pid, sig)
	}
}

func (s *signals) list() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// probeNow has the running watcher probe pool www at once, as at a
// deadline: the tests' interval is an hour.
func probeNow(t *testing.T, w *Watcher) {
	t.Helper()
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) {
		s := &w.sched
		s.mu.Lock()
		free := !s.busy[0]
		if free {
			s.due[0], s.exact[0] = time.Now(), true
		}
		s.mu.Unlock()
		if free {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
		return free, free
	})
}

// TestDeadlines: a pool is probed again when a request in flight grows
// older than --hung-after, and its kill timer is armed for when it grows
// older than --kill-hung-after; fpmguard's own request and idle workers
// arm nothing, nor does a threshold passed before the page was read.
func TestDeadlines(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 3}},
		Files: map[string]string{"wait.php": waitPHP},
	})
	hold(t, fpm)
	fpm.WaitWorker(t, "www", fpmtest.Running)
	tg := fpmTargets(t, fpm)["www"]
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 10 * time.Second}, Procs: supervisor.SystemProcs}
	r := pr.Observe(context.Background(), tg) // through the pool's socket: one worker serves the read
	var held supervisor.ProcessState
	for _, p := range r.Processes {
		if p.RequestURI == "/wait.php" {
			held = p
		}
	}
	start, ok := r.RequestStart(held)
	if !ok {
		t.Fatalf("no start for the held request: %+v", r.Processes)
	}
	for _, tc := range []struct {
		hung, kill         time.Duration
		wantHung, wantKill time.Duration // after the request's start; 0: none
	}{
		{2 * time.Hour, 0, 2 * time.Hour, 0},
		{2 * time.Hour, time.Hour, 2 * time.Hour, time.Hour},
		{time.Nanosecond, time.Hour, 0, time.Hour},
	} {
		w := New(pr, []supervisor.Target{tg}, Config{Actions: ActionConfig{KillHungAfter: tc.kill}}, event.NewLog(nil))
		w.runCtx = context.Background() // as Run does: kill timers are armed
		w.th.HungAfter = tc.hung
		pw := w.pools[0]
		wantHung := time.Time{}
		if tc.wantHung > 0 {
			wantHung = start.Add(tc.wantHung + time.Millisecond)
		}
		if got := w.nextDeadline(&r); !got.Equal(wantHung) {
			t.Errorf("hung after %v: probe due %v, want %v", tc.hung, got, wantHung)
		}
		w.armKills(pw, &r, nil)
		var armed []int
		for pid, a := range pw.kills.armed {
			armed = append(armed, pid)
			if want := start.Add(tc.wantKill + time.Millisecond); pid != held.PID || !a.at.Equal(want) || a.waiting {
				t.Errorf("kill after %v: armed %d at %v (waiting %v), want %d at %v", tc.kill, pid, a.at, a.waiting, held.PID, want)
			}
		}
		if (len(armed) == 1) != (tc.wantKill > 0) {
			t.Errorf("kill after %v: armed %v", tc.kill, armed)
		}
		w.stopKillTimers()
	}
}

// killAtDeadline starts a pool of maxChildren workers with a status
// listener and wait.php, and a running watcher of it that probes once an
// hour and kills after --kill-hung-after after, its signals recorded; it
// returns once the first probe is in.
func killAtDeadline(t *testing.T, maxChildren int, after time.Duration) (*fpmtest.FPM, *Watcher, *signals) {
	t.Helper()
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: maxChildren, StatusListen: true}},
		Files: map[string]string{"wait.php": waitPHP},
	})
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: after}})
	sig := &signals{}
	sig.hook(w)
	run(t, w)
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) { return true, w.pools[0].view.Load() != nil })
	return fpm, w, sig
}

// TestKillAtDeadline: with --interval 1h, a request seen in flight is
// killed when it grows older than --kill-hung-after: the probe comes at
// its deadline, not on the interval.
func TestKillAtDeadline(t *testing.T) {
	fpm, w, sig := killAtDeadline(t, 2, 2*time.Second)
	hold(t, fpm)
	pid := fpm.WaitWorker(t, "www", fpmtest.Running)
	probeNow(t, w) // a probe now, to see the request: the interval is an hour
	ev := fpmtest.Poll(t, time.Minute, func() ([]event.Event, bool) {
		ev := eventsOf(w, event.KindAction)
		return ev, len(ev) > 0
	})
	if ev[0].PID != pid || ev[0].Worker == nil || ev[0].Worker.URI != "/wait.php" || ev[0].Worker.AgeSeconds <= 2 {
		t.Errorf("kill %+v (%+v), want worker %d's request of /wait.php older than 2s", ev[0], ev[0].Worker, pid)
	}
	if got := sig.list(); len(got) == 0 || got[0].pid != pid || got[0].sig != syscall.SIGTERM {
		t.Errorf("signals %v, want SIGTERM to %d first", got, pid)
	}
}

// TestEndedRequestIsNotKilled: a request that ends before its deadline is
// not killed at the deadline, nor is the worker that served it.
func TestEndedRequestIsNotKilled(t *testing.T) {
	const after = 5 * time.Second
	fpm, w, sig := killAtDeadline(t, 2, after)
	h := hold(t, fpm)
	fpm.WaitWorker(t, "www", fpmtest.Running)
	probeNow(t, w)
	p, v := viewRunning(t, w, "/wait.php")
	start, _ := v.Report.RequestStart(p)
	if p.RequestDurationSeconds >= after.Seconds() {
		t.Fatalf("the first probe saw the request %v old, past --kill-hung-after %v already", p.Age(), after)
	}
	h.release()
	// The probe at the deadline, which only the deadline arms.
	fpmtest.Poll(t, time.Minute, func() (time.Time, bool) {
		last := w.pools[0].view.Load().LastProbe
		return last, last.After(start.Add(after))
	})
	if got := sig.list(); len(got) > 0 || len(eventsOf(w, event.KindAction)) > 0 {
		t.Errorf("signals %v, events %v: a request that ended was killed", got, eventsOf(w, event.KindAction))
	}
	if !slices.Contains(fpm.WorkerPIDs("www"), p.PID) {
		t.Errorf("worker %d is gone", p.PID)
	}
}

// TestReplacedWorkerIsNotKilled: when the worker running a request is
// replaced by a new process before the deadline, the new one, running a
// request of its own, is not killed at the old request's deadline.
func TestReplacedWorkerIsNotKilled(t *testing.T) {
	const after = 5 * time.Second
	fpm, w, sig := killAtDeadline(t, 1, after)
	hold(t, fpm)
	old := fpm.WaitWorker(t, "www", fpmtest.Running)
	probeNow(t, w)
	p, v := viewRunning(t, w, "/wait.php")
	start, _ := v.Report.RequestStart(p)
	if p.PID != old || p.RequestDurationSeconds >= after.Seconds() {
		t.Fatalf("the first probe saw worker %d's request %v old; want worker %d, younger than %v", p.PID, p.Age(), old, after)
	}
	// The worker dies (as an OOM kill would end it); the master starts
	// another, which takes a request of its own.
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	fresh := fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := fpm.WorkerPIDs("www")
		return now, len(now) == 1 && now[0] != old
	})[0]
	hold(t, fpm)
	if pid := fpm.WaitWorker(t, "www", fpmtest.Running); pid != fresh {
		t.Fatalf("worker %d runs the second request, want %d", pid, fresh)
	}
	// The probe at the old request's deadline, which only that deadline
	// arms, sees the new worker's request.
	v = fpmtest.Poll(t, time.Minute, func() (*PoolView, bool) {
		v := w.pools[0].view.Load()
		return v, v.LastProbe.After(start.Add(after))
	})
	var freshStart time.Time
	for _, q := range v.Report.Processes {
		if q.PID == fresh && q.RequestURI == "/wait.php" {
			freshStart, _ = v.Report.RequestStart(q)
		}
	}
	if freshStart.IsZero() {
		t.Fatalf("the probe at the deadline did not see worker %d's request: %+v", fresh, v.Report.Processes)
	}
	// Worker fresh's own request may be killed at its own deadline, not
	// before.
	for _, s := range sig.list() {
		if s.at.Before(freshStart.Add(after)) {
			t.Errorf("signal %v to %d at the deadline of worker %d's request, which was replaced by %d", s.sig, s.pid, old, fresh)
		}
	}
}

// TestKillCapCountsStoppedWorkers: workers that do not act on SIGTERM for
// now (stopped: the signal waits for SIGCONT) stay on their way out, and
// count against --max-kill-ratio until their SIGKILL ends them: neither
// the watchdog nor a person kills more of the pool meanwhile.
func TestKillCapCountsStoppedWorkers(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 4, StatusListen: true}},
		Files: map[string]string{"wait.php": waitPHP},
	})
	for range 4 {
		hold(t, fpm)
	}
	tg := fpmTargets(t, fpm)["www"]
	pids := fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		st, err := fastcgi.Client{Timeout: 10 * time.Second}.Status(context.Background(), tg.StatusAddress, tg.StatusPath)
		var busy []int
		if err == nil {
			for _, p := range st.Processes {
				if !p.Idle() {
					busy = append(busy, p.PID)
				}
			}
		}
		return busy, len(busy) == 4
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	}
	const grace = 2 * time.Second
	w := watcherFor(t, fpm, Config{Interval: time.Hour, Actions: ActionConfig{KillHungAfter: 500 * time.Millisecond, KillGrace: grace}})
	var sig signals
	sig.hook(w)
	run(t, w)
	count := func(list []sent, s syscall.Signal) int {
		n := 0
		for _, x := range list {
			if x.sig == s {
				n++
			}
		}
		return n
	}
	// Two SIGTERMs: half the pool on its way out.
	first := fpmtest.Poll(t, time.Minute, func() ([]sent, bool) { l := sig.list(); return l, count(l, syscall.SIGTERM) >= 2 })
	// A person asks for a third while the first two wait for their SIGKILL,
	// from the view the probe that sent them published.
	v := fpmtest.Poll(t, time.Minute, func() (*PoolView, bool) {
		v := w.pools[0].view.Load()
		return v, v != nil && v.LastProbe.After(first[1].at)
	})
	var third supervisor.ProcessState
	for _, p := range v.Report.Processes {
		if !p.Idle() && !slices.ContainsFunc(first, func(s sent) bool { return s.pid == p.PID }) {
			third = p
		}
	}
	res, err := w.KillWorker(context.Background(), "www", third.PID, "a test")
	if got := sig.list(); count(got, syscall.SIGKILL) == 0 && (err != nil || res.Result != ResultCapped) {
		t.Errorf("kill by hand of worker %d with two on their way out: %+v %v, want capped", third.PID, res, err)
	}
	// Then all four go, two at a time.
	all := fpmtest.Poll(t, time.Minute, func() ([]sent, bool) { l := sig.list(); return l, count(l, syscall.SIGKILL) == 4 })
	out := map[int]bool{}
	for i, s := range all {
		switch s.sig {
		case syscall.SIGTERM:
			out[s.pid] = true
		case syscall.SIGKILL:
			delete(out, s.pid)
		}
		if len(out) > 2 {
			t.Fatalf("signal %d of %v: %d workers on their way out at once, want at most 2 (--max-kill-ratio 0.5 of 4)", i, all, len(out))
		}
	}
	if n := count(all, syscall.SIGTERM); n != 4 {
		t.Errorf("%d SIGTERMs, want 4: %v", n, all)
	}
	for _, pid := range pids {
		fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) { now := fpm.WorkerPIDs("www"); return now, !slices.Contains(now, pid) })
	}
}
