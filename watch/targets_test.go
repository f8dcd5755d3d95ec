package watch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/supervisor"
)

// TestSetTargets replaces the pools of a running watcher while every
// output reads it (under -race): a pool added is probed, a removed one
// leaves the snapshot, the history and the action counts, the pool that
// stayed keeps its counts, a moved one is said to have changed, and each
// change is one event; the same set again changes nothing.
func TestSetTargets(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "a"}, {Name: "b"}, {Name: "c"}}})
	all := fpmTargets(t, fpm)
	h := history.New()
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 30 * time.Second}}
	w := New(pr, []supervisor.Target{all["a"], all["b"]}, Config{Interval: 100 * time.Millisecond, History: h}, event.NewLog(nil))
	run(t, w)

	// Every output reads the watcher all along.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			w.Snapshot()
			w.Live()
			w.Ready()
			time.Sleep(time.Millisecond)
		}
	})
	defer func() { cancel(); wg.Wait() }()

	beats := func(name string) uint64 {
		for _, p := range w.Snapshot().Pools {
			if p.Report.Name == name && p.Probed() {
				return p.Stats.Heartbeats
			}
		}
		return 0
	}
	names := func() []string {
		var out []string
		for _, p := range w.Snapshot().Pools {
			out = append(out, p.Report.Name)
		}
		return out
	}
	historyOf := func() []string {
		var out []string
		for _, p := range h.Summary().Pools {
			out = append(out, p.Pool)
		}
		return out
	}
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		return fmt.Sprint(historyOf()), beats("a") >= 3 && beats("b") >= 3 && slices.Equal(historyOf(), []string{"a", "b"})
	})
	w.actions.count(all["b"].ID(), ActionKill, ResultOK)
	before := beats("a")

	if ch := w.SetTargets([]supervisor.Target{all["a"], all["c"]}); ch.String() != "added c; removed b" {
		t.Errorf("change %q, want added c, removed b", ch)
	}
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		return fmt.Sprint(names()), beats("c") >= 1 && slices.Equal(names(), []string{"a", "c"})
	})
	if got := beats("a"); got < before {
		t.Errorf("pool a: %d heartbeats after the change, %d before: its counts started again", got, before)
	}
	if slices.Contains(historyOf(), "b") {
		t.Errorf("history still has b: %v", historyOf())
	}
	for k := range w.Snapshot().Actions {
		if k.Pool.Pool == "b" {
			t.Errorf("action counts of b kept: %+v", k)
		}
	}

	moved := all["a"]
	moved.Address = all["c"].Address
	if ch := w.SetTargets([]supervisor.Target{moved, all["c"]}); len(ch.Changed) != 1 || !strings.HasPrefix(ch.Changed[0], "a (listen unix://") {
		t.Errorf("change %q, want a changed", ch)
	}
	if ch := w.SetTargets([]supervisor.Target{moved, all["c"]}); !ch.Empty() {
		t.Errorf("the same pools again: change %q", ch)
	}
	var msgs []string
	for _, e := range eventsOf(w, event.KindPools) {
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 2 || msgs[0] != "pools watched changed: added c; removed b" || !strings.HasPrefix(msgs[1], "pools watched changed: changed a (listen ") {
		t.Errorf("events %q", msgs)
	}
}

// TestSetTargetsOnNoPools: a watcher started with no pool (discovery
// found none readable yet) probes the pools it is given later.
func TestSetTargetsOnNoPools(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs}
	w := New(pr, nil, Config{Interval: 100 * time.Millisecond}, event.NewLog(nil))
	run(t, w)
	w.SetTargets([]supervisor.Target{fpmTargets(t, fpm)["www"]})
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		s := w.Snapshot()
		return fmt.Sprint(len(s.Pools)), len(s.Pools) == 1 && s.Pools[0].Probed() && s.Pools[0].Report.Health == supervisor.HealthOK
	})
}

// TestFollowMaster: a reload of the master (SIGUSR2) is seen at the next
// tick and told (Changed); a failure a reload causes is inconclusive in
// its grace, or when a second look finds the master running its program
// anew; past the grace, and with the master unchanged, it counts.
func TestFollowMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	w := watcherFor(t, fpm, Config{Interval: time.Hour})
	pw := w.pools[0]
	ctx := context.Background()
	w.tick(ctx, pw)
	first := pw.view.Load().Report.Master
	if first == nil || !first.Alive || first.ExecID == 0 {
		t.Fatalf("master %+v: want it alive, with an ExecID", first)
	}
	select {
	case <-w.Changed():
		t.Fatal("told of a change before any")
	default:
	}

	reset := func(m supervisor.MasterReport) *supervisor.PoolReport {
		return &supervisor.PoolReport{Name: "www", Master: &m, Heartbeat: supervisor.Heartbeat{Error: "heartbeat of pool www: reset",
			Failure: &supervisor.Failure{Error: "reset", Reason: fastcgi.ReasonReset}}}
	}
	// Long after any change, with the master as it was: it counts, after
	// the second look.
	pw.reloadedAt = time.Time{}
	start := time.Now()
	r := reset(*first)
	w.followMaster(ctx, pw, r, time.Time{})
	if !r.Heartbeat.Failed() {
		t.Errorf("a reset with the master unchanged: heartbeat %+v, want it failed", r.Heartbeat)
	}
	t.Logf("the second look took %v", time.Since(start).Round(time.Millisecond))

	if err := fpm.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	// The second look finds the master running its program anew.
	r = reset(*first)
	w.followMaster(ctx, pw, r, time.Time{})
	if r.Heartbeat.Failed() || !strings.Contains(r.Heartbeat.Inconclusive, fmt.Sprintf("master %d reloaded", fpm.MasterPID())) {
		t.Errorf("a reset while the master reloads: heartbeat %+v, want it inconclusive", r.Heartbeat)
	}
	<-w.Changed()

	// In the grace of a change seen, without a second look.
	r = reset(*first)
	r.Master.ExecID = 0
	w.followMaster(ctx, pw, r, time.Time{})
	if r.Heartbeat.Failed() {
		t.Errorf("a reset in the grace: heartbeat %+v, want it inconclusive", r.Heartbeat)
	}
	// A master gone is never excused.
	r = reset(supervisor.MasterReport{PID: first.PID})
	w.followMaster(ctx, pw, r, time.Time{})
	if !r.Heartbeat.Failed() {
		t.Errorf("master gone: heartbeat %+v, want it failed", r.Heartbeat)
	}

	// The next tick sees the reload by itself.
	pw.reloadedAt = time.Time{}
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		w.tick(ctx, pw)
		return pw.reloadWhy, !pw.reloadedAt.IsZero()
	})
	<-w.Changed()
}

// BenchmarkFollow measures what following php-fpm adds: followMaster, run
// in every tick (its baseline is a tick of a quiet 5-worker pool,
// BenchmarkTick), and SetTargets with the pools unchanged, which a
// discovery rescan or a reload of php-fpm costs, for 1,000 pools.
func BenchmarkFollow(b *testing.B) {
	fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 5, StatusListen: true}}})
	tg := fpmTargets(b, fpm)["www"]
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 2 * time.Second}, Procs: supervisor.SystemProcs}
	w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour}, event.NewLog(nil))
	ctx := context.Background()
	pw := w.pools[0]
	w.tick(ctx, pw)
	r := *pw.view.Load().Report
	cpu := func(b *testing.B, fn func()) {
		start := fpmtest.CPUTime()
		for b.Loop() {
			fn()
		}
		b.ReportMetric(float64(fpmtest.CPUTime()-start)/float64(b.N), "cpu-ns/op")
	}
	b.Run("tick", func(b *testing.B) { cpu(b, func() { w.tick(ctx, pw) }) })
	b.Run("followMaster", func(b *testing.B) { cpu(b, func() { w.followMaster(ctx, pw, &r, time.Time{}) }) })
	b.Run("SetTargets-1000-unchanged", func(b *testing.B) {
		ts := make([]supervisor.Target, 1000)
		for i := range ts {
			ts[i] = tg
			ts[i].Name = fmt.Sprintf("pool%d", i)
		}
		w := New(pr, ts, Config{Interval: time.Hour}, event.NewLog(nil))
		cpu(b, func() { w.SetTargets(ts) })
	})
}
