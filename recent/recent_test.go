package recent

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// snap is a snapshot of pools probed at probe, each with the heartbeat
// given, and fpmguard's lag so far.
func snap(at time.Time, lagSeconds float64, pools ...watch.PoolView) *watch.Snapshot {
	return &watch.Snapshot{Time: at, Pools: pools, Self: watch.Self{LagSeconds: lagSeconds}}
}

func pool(name string, probe time.Time, hb supervisor.Heartbeat) watch.PoolView {
	return watch.PoolView{Report: &supervisor.PoolReport{Name: name, Heartbeat: hb}, LastProbe: probe}
}

func ok(ms float64) supervisor.Heartbeat {
	return supervisor.Heartbeat{OK: true, LatencySeconds: ms / 1000}
}

var failed = supervisor.Heartbeat{Error: "timeout", LatencySeconds: 1}

func TestObserve(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := New()

	// Not probed yet: nothing fresh, no beat.
	if fresh := h.Observe(snap(at(0), 0, pool("www", time.Time{}, supervisor.Heartbeat{}))); len(fresh) != 0 || len(h.Beats(supervisor.PoolID{Pool: "www"})) != 0 {
		t.Fatalf("a pool not probed yet: fresh %d, beats %v", len(fresh), h.Beats(supervisor.PoolID{Pool: "www"}))
	}
	fresh := h.Observe(snap(at(1), 0, pool("www", at(1), ok(0.3)), pool("api", at(1), supervisor.Heartbeat{Skipped: true})))
	if len(fresh) != 2 || fresh[0].Report.Name != "www" || fresh[1].Report.Name != "api" {
		t.Fatalf("first probe: fresh %v", fresh)
	}
	// The same probe seen again (a second viewer, a redraw) adds nothing.
	if fresh := h.Observe(snap(at(1), 0, pool("www", at(1), ok(0.3)), pool("api", at(1), supervisor.Heartbeat{Skipped: true}))); len(fresh) != 0 {
		t.Errorf("the same probe again: fresh %v", fresh)
	}
	h.Observe(snap(at(2), 0.5, pool("www", at(2), failed), pool("api", at(2), supervisor.Heartbeat{Skipped: true})))
	if got, want := fmt.Sprint(h.Beats(supervisor.PoolID{Pool: "www"})), fmt.Sprint([]Beat{{0.0003, false}, {1, true}}); got != want {
		t.Errorf("beats %s, want %s", got, want)
	}
	if len(h.Beats(supervisor.PoolID{Pool: "api"})) != 0 {
		t.Errorf("a pool without ping.path has beats: %v", h.Beats(supervisor.PoolID{Pool: "api"}))
	}
	if got := h.LagShare(); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("lag share %g, want 0.5 (0.5 s late over 1 s)", got)
	}
	for i := range 2 * Beats {
		h.Observe(snap(at(3+i), 0.5, pool("www", at(3+i), ok(float64(i+1)))))
	}
	if b := h.Beats(supervisor.PoolID{Pool: "www"}); len(b) != Beats || b[Beats-1].Seconds != float64(2*Beats)/1000 {
		t.Errorf("kept %d beats, the last %v; want the last %d", len(b), b[len(b)-1], Beats)
	}
	if h.LagShare() != 0 {
		t.Errorf("lag share %g with no new lag", h.LagShare())
	}
	// api left the snapshots (a reload): forgotten.
	if _, ok := h.lastProbe[supervisor.PoolID{Pool: "api"}]; ok {
		t.Errorf("pool api still remembered after it left")
	}
}

func TestScale(t *testing.T) {
	for _, tt := range []struct {
		name  string
		beats []Beat
		want  []float64
	}{
		{"empty", nil, []float64{}},
		{"flat", []Beat{{0.001, false}, {0.001, false}}, []float64{0, 0}},
		{"log scale", []Beat{{0.001, false}, {0.01, false}, {0.1, false}}, []float64{0, 0.5, 1}},
		{"failed and unmeasured at 0", []Beat{{0.001, false}, {5, true}, {0, false}, {0.1, false}}, []float64{0, 0, 0, 1}},
		{"all failed", []Beat{{1, true}, {1, true}}, []float64{0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Scale(tt.beats)
			if len(got) != len(tt.want) {
				t.Fatalf("Scale = %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-9 {
					t.Fatalf("Scale = %v, want %v", got, tt.want)
				}
			}
		})
	}
	if lo, hi, ok := Range([]Beat{{5, true}, {0.002, false}, {0.001, false}}); !ok || lo != 0.001 || hi != 0.002 {
		t.Errorf("Range = %g %g %v", lo, hi, ok)
	}
	if _, _, ok := Range([]Beat{{5, true}}); ok {
		t.Errorf("Range of failed beats only is ok")
	}
}

// TestObserveKeepsMastersApart: www under two masters has two series of
// heartbeats.
func TestObserveKeepsMastersApart(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	www := func(master string, hb supervisor.Heartbeat) watch.PoolView {
		return watch.PoolView{Report: &supervisor.PoolReport{Name: "www", MasterName: master, Heartbeat: hb}, LastProbe: t0}
	}
	h := New()
	h.Observe(snap(t0, 0, www("/etc/php/7.4/fpm/php-fpm.conf", ok(0.3)), www("/etc/php/8.2/fpm/php-fpm.conf", failed)))
	a, b := h.Beats(supervisor.PoolID{Pool: "www", Master: "/etc/php/7.4/fpm/php-fpm.conf"}), h.Beats(supervisor.PoolID{Pool: "www", Master: "/etc/php/8.2/fpm/php-fpm.conf"})
	if len(a) != 1 || a[0].Failed || len(b) != 1 || !b[0].Failed {
		t.Errorf("beats of www under two masters: %v and %v", a, b)
	}
}
