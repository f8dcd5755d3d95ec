package watch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
	"golang.org/x/sys/unix"
)

// watcherFor builds a watcher of the test master's pools.
func watcherFor(t *testing.T, fpm *fpmtest.FPM, cfg Config) *Watcher {
	t.Helper()
	var targets []supervisor.Target
	for _, tg := range fpmTargets(t, fpm) {
		targets = append(targets, tg)
	}
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 30 * time.Second}}
	return New(pr, targets, cfg, event.NewLog(nil))
}

// run runs the watcher until the test ends.
func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func eventsOf(w *Watcher, kind event.Kind) []event.Event {
	var out []event.Event
	for _, e := range w.Events().Recent(0) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// forgeStatus serves a status page over FastCGI that names pid as a worker
// in state for 100 s. This is a hostile peer, not php-fpm.
func forgeStatus(t *testing.T, pid int, state string) fastcgi.Address {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "forged.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf(`{"pool":"www","process manager":"static","start time":1,"start since":100,"accepted conn":1,"listen queue":0,"max listen queue":0,"listen queue len":0,"idle processes":0,"active processes":1,"total processes":1,"max active processes":1,"max children reached":0,"slow requests":0, "processes":[{"pid":%d,"state":"%s","start time":1,"start since":100,"requests":1,"request duration":100000000,"request method":"GET","request uri":"\/x.php","content length":0,"user":"-","script":"\/x.php","last request cpu":0.00,"last request memory":0}]}`, pid, state)
	go func() {
		_ = fcgi.Serve(l, http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			fmt.Fprint(rw, page)
		}))
	}()
	t.Cleanup(func() { l.Close() })
	return fastcgi.Address{Network: "unix", Addr: sock}
}

// stopAllWorkers SIGSTOPs every worker: the heartbeat fails, yet php-fpm
// calls them idle, so no hung worker is left to kill.
func stopAllWorkers(t *testing.T, fpm *fpmtest.FPM) {
	t.Helper()
	for _, pid := range fpm.WorkerPIDs("www") {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	}
}

// fpmTargets reads the test master's own config, as --fpm-config would.
func fpmTargets(t testing.TB, fpm *fpmtest.FPM) map[string]supervisor.Target {
	t.Helper()
	ts, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]supervisor.Target{}
	for _, tg := range ts {
		out[tg.Name] = tg
	}
	return out
}

// TestOndemandStaysAsleep: an idle ondemand pool is watched without waking
// it: its workers idle out and none is started by fpmguard, while a worker
// that hangs in it is still reported.
func TestOndemandStaysAsleep(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		// No pm.status_listen: its hidden pool keeps a worker 10 s after
		// a read, whatever the pool's own idle timeout.
		Pools: []fpmtest.Pool{{PM: "ondemand", MaxChildren: 2, Extra: []string{"pm.process_idle_timeout = 3s"}}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	if err := fpm.Request(context.Background(), "sleep.php", "ms=10"); err != nil {
		t.Fatal(err)
	}
	tg := fpmTargets(t, fpm)["www"]
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 10 * time.Second}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 2 * time.Second}}
	w := New(pr, []supervisor.Target{tg}, Config{Interval: 200 * time.Millisecond}, event.NewLog(nil))
	run(t, w)
	children := func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", fpm.MasterPID(), fpm.MasterPID()))
		return len(strings.Fields(string(b)))
	}
	start := time.Now()
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { n := children(); return n, n == 0 })
	t.Logf("no worker left %v after the last request", time.Since(start).Round(time.Millisecond))
	// Any probe would start a worker that lives 3 s: sampling for twice
	// that catches one surely.
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if n := children(); n != 0 {
			t.Fatalf("%d workers while the pool is idle and only fpmguard talks to it", n)
		}
	}
	v := w.Snapshot().Pools[0]
	if !v.Report.Heartbeat.Idle || v.Report.Health != supervisor.HealthOK {
		t.Errorf("idle pool: health %s heartbeat %+v reasons %q", v.Report.Health, v.Report.Heartbeat, v.Report.Reasons)
	}
	if ok, why := w.Live(); !ok {
		t.Errorf("not live: %q", why)
	}
	// Ready once no heartbeat is outstanding. A probe that came while
	// php-fpm was ending the pool's last idle worker waits in the socket's
	// queue until the next connection makes the master fork (php-fpm's
	// ondemand race, seen on a loaded runner), then its timeout ends it.
	fpmtest.Poll(t, 30*time.Second, func() ([]string, bool) {
		ok, why := w.Ready()
		return why, ok
	})

	fpm.Background(t, 1, "sleep.php", "ms=600000")
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		n := w.Snapshot().Pools[0].Report.HungCount()
		return n, n == 1
	})
}

// TestStatusStandsInForPing: a pool's status page, read through its own
// socket, stands in for the ping, which is sent every pingEvery ticks; so
// for a pool with pm.status_listen, read through its own socket while a
// worker is free, and through its listener, with a ping, every
// listenEvery. After a ping that answers wrong, every tick pings.
func TestStatusStandsInForPing(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "main"}, {Name: "listen", StatusListen: true}}})
	w := watcherFor(t, fpm, Config{Interval: time.Hour})
	// Read through its own socket only once the kernel's queue of it can
	// be read (throughOwnSocket).
	waitInQueueDump(t, fpmTargets(t, fpm)["listen"])
	ctx := context.Background()
	type read struct{ beat, status string }
	reads := map[string][]read{}
	for range 2 * pingEvery {
		for _, pw := range w.pools {
			w.tick(ctx, pw)
			r := pw.view.Load().Report
			if !r.Heartbeat.OK {
				t.Fatalf("pool %s: heartbeat %+v", r.Name, r.Heartbeat)
			}
			reads[r.Name] = append(reads[r.Name], read{r.Heartbeat.Via, r.Status.Via})
		}
	}
	// A read that answered late (10 ms or more, on a loaded machine) is
	// followed by a ping: the stand-ins are counted, not placed.
	for name, rs := range reads {
		standIns, inARow := 0, 0
		for i, got := range rs {
			switch {
			case got == read{"status page", "main"}:
				standIns++
				inARow++
			case got.beat == "" && (got.status == "main" || name == "listen"):
				inARow = 0 // a ping; the listen pool's page through its listener
			default:
				t.Errorf("pool %s, tick %d: heartbeat via %q, status via %q", name, i, got.beat, got.status)
			}
			if i == 0 && got.beat != "" || inARow >= pingEvery {
				t.Errorf("pool %s, tick %d: %d stand-ins in a row, want a ping first and every %d ticks (%q)", name, i, inARow, pingEvery, rs)
			}
		}
		if standIns == 0 {
			t.Errorf("pool %s: no status read stood in for a ping in %d ticks (%q)", name, len(rs), rs)
		}
	}

	// A ping that answers something else than ping.response is
	// misconfigured: seen at the next real ping at the latest, then sent
	// again at every tick.
	for _, pw := range w.pools {
		pw.target.PingResponse = "not-pong"
	}
	for i := range pingEvery + 3 {
		for _, pw := range w.pools {
			w.tick(ctx, pw)
			if r := pw.view.Load().Report; i >= pingEvery && (r.Heartbeat.Via != "" || !r.Heartbeat.Misconfigured()) {
				t.Errorf("pool %s: heartbeat %+v, want a ping that answered wrong", r.Name, r.Heartbeat)
			}
		}
	}
}

// waitInQueueDump waits until the kernel's queue of t's socket can be read:
// it is read from a dump a fraction of a second old, which a socket just
// bound may not be in yet.
func waitInQueueDump(t *testing.T, tg supervisor.Target) {
	t.Helper()
	fpmtest.Poll(t, 30*time.Second, func() (error, bool) {
		_, err := supervisor.ReadSocketQueue(tg.Address)
		return err, err == nil
	})
}

// TestThroughOwnSocket: a pool with pm.status_listen is read through its
// own socket only while a worker is free, the last heartbeat was clean and
// the listener was read within listenEvery, and never at a deadline.
func TestThroughOwnSocket(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "listen", StatusListen: true}, {Name: "plain"}}})
	tgs := fpmTargets(t, fpm)
	w := watcherFor(t, fpm, Config{Interval: time.Hour})
	waitInQueueDump(t, tgs["listen"])
	idle := supervisor.ProcessState{PID: 1, State: "Idle"}
	busy := supervisor.ProcessState{PID: 2, State: "Running", RequestDurationSeconds: 5}
	clean := func(procs ...supervisor.ProcessState) *supervisor.PoolReport {
		return &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{OK: true}, Status: supervisor.StatusRead{OK: true}, Processes: procs}
	}
	failed := clean(idle, busy)
	failed.Heartbeat = supervisor.Heartbeat{Error: "timeout"}
	queued := clean(idle, busy)
	queued.SocketQueue = &supervisor.SocketQueue{Length: 1}
	noPing := tgs["listen"]
	noPing.PingPath = ""
	now, long := time.Now(), time.Now().Add(-listenEvery)
	for _, tc := range []struct {
		name       string
		target     supervisor.Target
		prev       *supervisor.PoolReport
		atDeadline bool
		listened   time.Time
		want       bool
	}{
		{"a worker free", tgs["listen"], clean(idle, busy), false, now, true},
		{"without pm.status_listen", tgs["plain"], nil, false, time.Time{}, true},
		{"first tick", tgs["listen"], nil, false, time.Time{}, false},
		{"the listener not read for long", tgs["listen"], clean(idle, busy), false, long, false},
		{"every worker busy", tgs["listen"], clean(busy, busy), false, now, false},
		{"last heartbeat failed", tgs["listen"], failed, false, now, false},
		{"requests waited", tgs["listen"], queued, false, now, false},
		{"at a deadline", tgs["listen"], clean(idle, busy), true, now, false},
		{"no ping.path to stand in for", noPing, clean(idle, busy), false, now, false},
	} {
		if got := w.throughOwnSocket(tc.target, tc.prev, tc.atDeadline, tc.listened); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEveryWorkerBusySinceTheLastLook: every worker became busy since the
// last probe, which saw them idle. A pool with pm.status_listen, read
// through its own socket, is read again through its listener at once,
// and pinged; a pool without it waits out the read through its socket,
// which then stands in for the ping, failed: a ping would only have waited
// as long.
func TestEveryWorkerBusySinceTheLastLook(t *testing.T) {
	for _, listen := range []bool{true, false} {
		t.Run(fmt.Sprintf("status_listen %v", listen), func(t *testing.T) {
			fpm := fpmtest.Start(t, fpmtest.Options{
				Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: listen}},
				Files: map[string]string{"wait.php": waitPHP},
			})
			tg := fpmTargets(t, fpm)["www"]
			pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs}
			w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour}, event.NewLog(nil))
			ctx := context.Background()
			// Until a tick reads through the pool's own socket, answered at
			// once: the second does, unless a loaded machine kept the answer
			// longer than ownSocketWait.
			fpmtest.Poll(t, 30*time.Second, func() (supervisor.StatusRead, bool) {
				w.tick(ctx, w.pools[0])
				r := w.pools[0].view.Load().Report
				return r.Status, r.Heartbeat.OK && r.Status.Via == "main"
			})
			hold(t, fpm)
			hold(t, fpm)
			// Both workers out of accept(): each has taken a request.
			fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
				n := 0
				for _, pid := range fpm.WorkerPIDs("www") {
					b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
					nr, _, _ := strings.Cut(string(b), " ")
					if err == nil && nr != strconv.Itoa(unix.SYS_ACCEPT) && nr != strconv.Itoa(unix.SYS_ACCEPT4) {
						n++
					}
				}
				return n, n == 2
			})
			w.tick(ctx, w.pools[0])
			r := w.pools[0].view.Load().Report
			hb := r.Heartbeat
			if !hb.Failed() || hb.Failure.Reason != fastcgi.ReasonTimeout {
				t.Errorf("heartbeat %+v, want failed, timed out", hb)
			}
			if listen {
				if !r.Status.OK || r.Status.Via != "status_listen" || hb.Via != "" {
					t.Errorf("status %+v, heartbeat via %q: want the page through the listener, and a ping", r.Status, hb.Via)
				}
				if busy, total := r.Busy(); busy != 2 || total != 2 {
					t.Errorf("%d of %d workers busy, want 2 of 2", busy, total)
				}
			} else if r.Status.OK || hb.Via != "status page" {
				t.Errorf("status %+v, heartbeat via %q: want the timed-out read standing in for the ping", r.Status, hb.Via)
			}
		})
	}
}

// TestAllHungIsNotPinged: when the status page shows every worker a pool
// may have hung, the heartbeat fails without a ping that could only wait
// behind them. The client's timeout is ten minutes: a tick that sent one
// would not end within the poll's deadline.
func TestAllHungIsNotPinged(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{PM: "static", MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	tg := fpmTargets(t, fpm)["www"]
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 10 * time.Minute}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: time.Second}}
	w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour}, event.NewLog(nil))
	fpm.Background(t, 3, "sleep.php", "ms=600000")
	// Both workers past HungAfter before the first tick: a tick that saw
	// one not hung yet would ping.
	statusAt := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}
	fpmtest.Poll(t, time.Minute, func() (int, bool) {
		st, err := fastcgi.Client{Timeout: 10 * time.Second}.Status(context.Background(), statusAt, fpm.Pools["www"].StatusPath)
		if err != nil {
			return 0, false
		}
		n := 0
		for _, p := range st.Processes {
			if p.State == "Running" && p.RequestDuration > 1500*time.Millisecond {
				n++
			}
		}
		return n, n == 2
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2 {
			w.tick(context.Background(), w.pools[0])
		}
	}()
	fpmtest.Poll(t, time.Minute, func() (bool, bool) {
		select {
		case <-done:
			return true, true
		default:
			return false, false
		}
	})
	r := w.pools[0].view.Load().Report
	if hb := r.Heartbeat; hb.WaitsBehindHung != 2 || !hb.Failed() || hb.Failure.Reason != fastcgi.ReasonTimeout {
		t.Errorf("heartbeat %+v, want failed unsent behind 2 hung workers", hb)
	}
	if v := w.pools[0].view.Load(); v.Failures < 1 || v.Stats.Heartbeats != 0 {
		t.Errorf("%d failures in a row and %d heartbeats measured, want at least 1 and none", v.Failures, v.Stats.Heartbeats)
	}
	if r.Health != supervisor.HealthUnhealthy {
		t.Errorf("health %s (%q), want unhealthy", r.Health, r.Reasons)
	}
}

// TestHungPoolDelaysNoOther: a pool whose reads never end holds the probe
// loop for stallAfter at most; the pool after it is probed every interval
// as if alone. The hung pool's client waits an hour: a loop held by its
// probe would never probe the other pool again within the test.
func TestHungPoolDelaysNoOther(t *testing.T) {
	silent := fpmtest.StartHostile(t, "unix", fpmtest.Silent)
	hung, err := supervisor.ParsePoolSpec("unix://" + silent.Addr + ",name=hung")
	if err != nil {
		t.Fatal(err)
	}
	fpm := fpmtest.Start(t, fpmtest.Options{})
	targets := []supervisor.Target{hung, fpmTargets(t, fpm)["www"]}
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Hour}, Procs: supervisor.SystemProcs}
	w := New(pr, targets, Config{Interval: 100 * time.Millisecond}, event.NewLog(nil))
	run(t, w)
	// The hung pool's first probe begins within the first interval, and
	// never ends; the other pool is probed again and again meanwhile.
	fpmtest.Poll(t, 30*time.Second, func() (int64, bool) { s := w.pools[0].probeStart.Load(); return s, s != 0 })
	const probes = 10
	fpmtest.Poll(t, time.Minute, func() (uint64, bool) {
		v := w.pools[1].view.Load()
		if v == nil {
			return 0, false
		}
		return v.Stats.Heartbeats, v.Stats.Heartbeats >= probes && v.Report.Heartbeat.OK
	})
	if v := w.pools[0].view.Load(); v != nil {
		t.Errorf("the hung pool finished a probe: %+v", v.Report)
	}
}

// TestListenerDue: a healthy pool's status listener is read on the last
// tick before listenEvery would pass, so with the interval stretched (a
// starved fpmguard probes every 2 s or 4 s) it is read sooner, never after
// its hidden pool's worker idled out; an interval longer than listenEvery
// keeps no worker, and reads it once listenEvery has passed.
func TestListenerDue(t *testing.T) {
	for _, tc := range []struct {
		interval, since time.Duration
		want            bool
	}{
		{time.Second, 6 * time.Second, false},
		{time.Second, 7500 * time.Millisecond, true},
		{time.Second, listenEvery, true},
		{4 * time.Second, 3 * time.Second, false},
		{4 * time.Second, 5 * time.Second, true},
		{time.Hour, 5 * time.Second, false},
		{time.Hour, listenEvery, true},
	} {
		w := New(&supervisor.Prober{}, nil, Config{Interval: tc.interval}, event.NewLog(nil))
		if got := w.listenerDue(time.Now().Add(-tc.since)); got != tc.want {
			t.Errorf("interval %v, listener read %v ago: due %v, want %v", tc.interval, tc.since, got, tc.want)
		}
	}
}
