package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// statusPool is a pool of /status as these tests read it.
type statusPool struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Health  string `json:"health"`
	Master  *struct {
		PID    int    `json:"pid"`
		Alive  bool   `json:"alive"`
		Config string `json:"config"`
	} `json:"master"`
}

// poolsOf reads /status and returns the pools of the master running conf
// (as php-fpm names it), by name: other masters of the machine are left
// out.
func poolsOf(t *testing.T, base, conf string) map[string]statusPool {
	t.Helper()
	_, body := httpGet(base + "/status")
	var rep struct{ Pools []statusPool }
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		return nil
	}
	out := map[string]statusPool{}
	for _, p := range rep.Pools {
		if p.Master != nil && p.Master.Config == conf {
			out[p.Name] = p
		}
	}
	return out
}

// eventsOf reads /events.
func eventsOf(base string) []event.Event {
	_, body := httpGet(base + "/events?n=1000")
	var evs struct{ Events []event.Event }
	_ = json.Unmarshal([]byte(body), &evs)
	return evs.Events
}

// seriesOf says whether /metrics has a series of pool name.
func seriesOf(base, name string) bool {
	_, body := httpGet(base + "/metrics")
	return strings.Contains(body, `phpfpm_up{`) && strings.Contains(body, `pool="`+name+`"`)
}

// advisedOf says whether /advice has pool name.
func advisedOf(base, name string) bool {
	_, body := httpGet(base + "/advice")
	var a struct{ Pools []struct{ Pool string } }
	_ = json.Unmarshal([]byte(body), &a)
	return slices.ContainsFunc(a.Pools, func(p struct{ Pool string }) bool { return p.Pool == name })
}

// snapshotOf says whether /snapshot has pool name.
func snapshotOf(base, name string) bool {
	_, body := httpGet(base + "/snapshot")
	var s struct {
		Pools []struct{ Report struct{ Name string } }
	}
	_ = json.Unmarshal([]byte(body), &s)
	return slices.ContainsFunc(s.Pools, func(p struct{ Report struct{ Name string } }) bool { return p.Report.Name == name })
}

// TestServeFollowsConfig: under serve --fpm-config, php-fpm of each
// version reloaded with a pool added, then removed, then with a pool's
// listen moved, then restarted. serve follows each: the new pool in
// /status, /metrics and /advice; the removed one gone from all three and
// from /snapshot; the moved pool's new socket; the new master's pid. Each
// change of the pools is one event. The time from SIGUSR2 to the pool in
// /status is logged (the issue asks for 2 intervals).
func TestServeFollowsConfig(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		sl := fpmtest.HasStatusListen(v)
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "www", StatusListen: sl}}})
		g := newGuard(t, f)
		addr := freePort(t)
		base := "http://" + addr
		interval := 500 * time.Millisecond
		g.start(t, "serve", "--fpm-config", g.path(f.Conf), "--web.listen-address", addr, "--interval", interval.String(), "--no-opcache")
		conf := f.InRoot(f.Conf)
		wait := func(what string, ok func(map[string]statusPool) bool) time.Duration {
			t.Helper()
			start := time.Now()
			got := fpmtest.Poll(t, 60*time.Second, func() (map[string]statusPool, bool) {
				p := poolsOf(t, base, conf)
				return p, ok(p)
			})
			d := time.Since(start)
			t.Logf("PHP %s, %s: %v after the change (interval %v): %v", f.PHPVersion, what, d.Round(time.Millisecond), interval, got)
			return d
		}
		reload := func(pools ...fpmtest.Pool) {
			t.Helper()
			f.Reconfigure(t, pools)
			if err := f.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
		}
		wait("watching www", func(p map[string]statusPool) bool { return p["www"].Health == "ok" })
		// The history has the pools' samples for /advice.
		reload(fpmtest.Pool{Name: "www", StatusListen: sl}, fpmtest.Pool{Name: "api"})
		wait("api added", func(p map[string]statusPool) bool { return p["api"].Health == "ok" })
		fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			m, a, s := seriesOf(base, "api"), advisedOf(base, "api"), snapshotOf(base, "api")
			return fmt.Sprintf("api in /metrics %v, /advice %v, /snapshot %v", m, a, s), m && a && s
		})

		reload(fpmtest.Pool{Name: "www", StatusListen: sl})
		wait("api removed", func(p map[string]statusPool) bool { _, ok := p["api"]; return !ok && len(p) == 1 })
		if m, a, s := seriesOf(base, "api"), advisedOf(base, "api"), snapshotOf(base, "api"); m || a || s {
			t.Errorf("api removed, still in /metrics %v, /advice %v, /snapshot %v", m, a, s)
		}

		reload(fpmtest.Pool{Name: "www", StatusListen: sl, Socket: "moved.sock"})
		moved := "unix://" + g.path(f.Pools["www"].Listen)
		wait("www moved", func(p map[string]statusPool) bool { return p["www"].Address == moved && p["www"].Health == "ok" })

		old := f.MasterPID()
		f.Restart(t)
		wait("restarted", func(p map[string]statusPool) bool {
			m := p["www"].Master
			return m != nil && m.PID == f.MasterPID() && m.PID != old && p["www"].Health == "ok"
		})

		var changes []string
		for _, e := range eventsOf(base) {
			if e.Kind == event.KindPools {
				changes = append(changes, e.Message)
			}
		}
		want := []string{"pools watched changed: added api", "pools watched changed: removed api", "pools watched changed: changed www (listen "}
		if len(changes) != len(want) {
			t.Fatalf("pool change events %q, want %q", changes, want)
		}
		for i := range want {
			if !strings.HasPrefix(changes[i], want[i]) {
				t.Errorf("event %d: %q, want %q...", i, changes[i], want[i])
			}
		}
	})
}

// TestReloadsAreNoIncident: ten reloads (SIGUSR2) of php-fpm of each
// version, with requests going through its socket all along, and
// --kill-hung-after and --reload-unhealthy on. php-fpm ends its workers at
// each reload, cutting what they serve, fpmguard's probes included. Not
// one verdict is unhealthy or down, not one action is taken, and /healthz
// answers 200 throughout.
func TestReloadsAreNoIncident(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "www", MaxChildren: 3, StatusListen: fpmtest.HasStatusListen(v)}},
			Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		g := newGuard(t, f)
		addr := freePort(t)
		base := "http://" + addr
		g.start(t, "serve", "--fpm-config", g.path(f.Conf), "--web.listen-address", addr, "--interval", "200ms", "--timeout", "1s",
			"--unhealthy-after", "2", "--kill-hung-after", "2s", "--reload-unhealthy", "--no-opcache")
		conf := f.InRoot(f.Conf)
		fpmtest.Poll(t, 60*time.Second, func() (map[string]statusPool, bool) {
			p := poolsOf(t, base, conf)
			return p, p["www"].Health == "ok"
		})

		// Load: requests of 20 ms one after the other, from two clients.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var served, cut atomic.Int64
		for range 2 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := f.Request(ctx, "sleep.php", "ms=20"); err != nil {
						cut.Add(1)
					} else {
						served.Add(1)
					}
				}
			})
		}
		// /healthz, asked all along.
		var unhealthy []string
		var mu sync.Mutex
		wg.Go(func() {
			for ctx.Err() == nil {
				if code, body := httpGet(base + "/healthz"); code != 200 {
					mu.Lock()
					unhealthy = append(unhealthy, fmt.Sprintf("%d %s", code, strings.TrimSpace(body)))
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		t.Cleanup(func() { cancel(); wg.Wait() })

		for i := range 10 {
			before := f.WorkerPIDs("www")
			if err := f.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			// Reloaded: every worker new, and the pool answers.
			fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
				now := f.WorkerPIDs("www")
				if len(now) < 3 || slices.ContainsFunc(now, func(pid int) bool { return slices.Contains(before, pid) }) {
					return fmt.Sprintf("workers %v, were %v", now, before), false
				}
				_, err := fastcgi.Client{Timeout: 5 * time.Second}.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen}, "/ping", "pong")
				return fmt.Sprint(err), err == nil
			})
			// Some probes after it, to judge the pool with.
			time.Sleep(time.Second)
			t.Logf("reload %d done: %d requests served, %d cut so far", i+1, served.Load(), cut.Load())
		}
		cancel()
		wg.Wait()

		var bad []string
		for _, e := range eventsOf(base) {
			switch {
			case e.Kind == event.KindHealth && (strings.Contains(e.Message, " is unhealthy") || strings.Contains(e.Message, " is down")),
				e.Kind == event.KindHeartbeat, e.Kind == event.KindAction, e.Kind == event.KindActionRefused, e.Kind == event.KindBudget:
				bad = append(bad, string(e.Kind)+": "+e.Message)
			}
		}
		if len(bad) > 0 || len(unhealthy) > 0 {
			t.Errorf("PHP %s, 10 reloads under load: verdicts and actions %q; /healthz %q", f.PHPVersion, bad, unhealthy)
		}
		if _, body := httpGet(base + "/metrics"); strings.Contains(body, "phpfpm_actions_total{") {
			t.Errorf("actions counted:\n%s", grepLines(body, "phpfpm_actions_total"))
		}
		_, body := httpGet(base + "/metrics")
		t.Logf("PHP %s: 10 reloads, %d requests served, %d cut by php-fpm; heartbeats that proved nothing:\n%s", f.PHPVersion, served.Load(), cut.Load(),
			grepLines(body, "phpfpm_heartbeat_inconclusive_total{"))
	})
}

// grepLines returns the lines of text that hold s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestServeDiscoveryFollowsMasters: serve with no pool named, started
// before php-fpm of each version (7.4 and 8.4 in their own root, seen
// through /proc/PID/root): the master is found once it runs, its restart
// (a new pid, and a new /proc/PID/root) is followed, not left down as
// the packaged unit's `systemctl restart` left it, and once stopped for
// good its pool is reported down, not dropped. --discover-config names
// this test's master before it runs: the machine's other masters (other
// tests') are left alone.
func TestServeDiscoveryFollowsMasters(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.New(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "discovered", StatusListen: fpmtest.HasStatusListen(v)}}})
		conf := f.InRoot(f.Conf)
		addr := freePort(t)
		base := "http://" + addr
		startBinary(t, "serve", "--web.listen-address", addr, "--interval", "500ms", "--no-opcache", "--discover-config", f.MasterName())
		// serve runs before php-fpm does.
		fpmtest.Poll(t, 60*time.Second, func() (int, bool) { code, _ := httpGet(base + "/healthz"); return code, code != 0 })
		wait := func(what string, ok func(p statusPool) bool) {
			t.Helper()
			start := time.Now()
			got := fpmtest.Poll(t, 90*time.Second, func() (statusPool, bool) {
				p, found := poolsOf(t, base, conf)["discovered"]
				return p, found && ok(p)
			})
			t.Logf("PHP %s, %s: after %v: %s, master %+v", f.PHPVersion, what, time.Since(start).Round(time.Millisecond), got.Health, *got.Master)
		}
		f.Start(t)
		started := time.Now()
		wait("started after serve", func(p statusPool) bool { return p.Health == "ok" && p.Master.PID == f.MasterPID() })
		for _, e := range eventsOf(base) {
			if e.Kind == event.KindPools && strings.Contains(e.Message, "added discovered") {
				t.Logf("found %v after php-fpm started: %s", e.Time.Sub(started).Round(time.Millisecond), e.Message)
			}
		}
		old := f.MasterPID()
		f.Restart(t)
		wait("restarted", func(p statusPool) bool {
			return p.Health == "ok" && p.Master.PID == f.MasterPID() && p.Master.PID != old
		})
		f.Stop(t)
		wait("stopped for good", func(p statusPool) bool { return p.Health == "down" && !p.Master.Alive })
	})
}

// TestRunFollowsReload: under `run`, php-fpm of each version reloaded
// through fpmguard (SIGUSR2 to run, which forwards it) with a pool added:
// the pool is watched, with no restart of fpmguard.
func TestRunFollowsReload(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		sl := fpmtest.HasStatusListen(v)
		f := fpmtest.New(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "www", StatusListen: sl}}})
		g := newGuard(t, f)
		addr := freePort(t)
		base := "http://" + addr
		cmd, _ := g.start(t, append([]string{"run", "--web.listen-address", addr, "--interval", "500ms", "--no-opcache", "--"}, f.InRootArgv()...)...)
		conf := f.InRoot(f.Conf)
		fpmtest.Poll(t, 60*time.Second, func() (map[string]statusPool, bool) {
			p := poolsOf(t, base, conf)
			return p, p["www"].Health == "ok"
		})
		f.Reconfigure(t, []fpmtest.Pool{{Name: "www", StatusListen: sl}, {Name: "api"}})
		if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fpmtest.Poll(t, 60*time.Second, func() (map[string]statusPool, bool) {
			p := poolsOf(t, base, conf)
			return p, p["api"].Health == "ok" && p["www"].Health == "ok"
		})
		t.Logf("PHP %s under run: pool api watched %v after SIGUSR2 to run", f.PHPVersion, time.Since(start).Round(time.Millisecond))
	})
}
