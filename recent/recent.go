// Package recent is what a live view remembers across snapshots: each
// pool's last heartbeats, scaled for a sparkline, and the share of the
// last refresh that fpmguard's own timers ran late. A snapshot holds one
// moment; a view that draws trends needs the ones before it. `top` draws
// the sparkline with block characters, the status page (web) as an SVG:
// both from the same heartbeats and the same scale.
//
// It imports watch and supervisor; top and web read it. It must not
// import either.
// Its History is not safe for concurrent use: a view that several
// goroutines draw guards it with a lock of its own.
package recent

import (
	"math"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// Beats is how many heartbeats of each pool a History keeps.
const Beats = 16

// Beat is one heartbeat as a sparkline draws it.
type Beat struct {
	Seconds float64 // its latency; 0 when none was measured
	Failed  bool
}

// History is what a view has seen of the snapshots shown to it.
type History struct {
	// By pool ID: www under two masters is two pools.
	beats     map[supervisor.PoolID][]Beat
	lastProbe map[supervisor.PoolID]time.Time
	lag       lagSample
	lagShare  float64
}

type lagSample struct {
	seconds float64
	at      time.Time
}

// New returns an empty history.
func New() *History {
	return &History{beats: map[supervisor.PoolID][]Beat{}, lastProbe: map[supervisor.PoolID]time.Time{}}
}

// Observe takes in a snapshot and returns the pools probed since the
// last snapshot it saw: each adds its heartbeat, unless it has none
// (no ping.path). Pools no longer in the snapshot are forgotten.
func (h *History) Observe(s *watch.Snapshot) []*watch.PoolView {
	var fresh []*watch.PoolView
	seen := make(map[supervisor.PoolID]bool, len(s.Pools))
	for i := range s.Pools {
		p := &s.Pools[i]
		r, id := p.Report, p.Report.ID()
		seen[id] = true
		if !p.Probed() || !p.LastProbe.After(h.lastProbe[id]) {
			continue
		}
		h.lastProbe[id] = p.LastProbe
		fresh = append(fresh, p)
		if r.Heartbeat.Skipped {
			continue
		}
		b := append(h.beats[id], Beat{Seconds: r.Heartbeat.LatencySeconds, Failed: r.Heartbeat.Failed()})
		if len(b) > Beats {
			b = b[len(b)-Beats:]
		}
		h.beats[id] = b
	}
	for id := range h.lastProbe {
		if !seen[id] {
			delete(h.lastProbe, id)
			delete(h.beats, id)
		}
	}

	if h.lag.at.IsZero() || s.Time.After(h.lag.at) {
		if !h.lag.at.IsZero() {
			h.lagShare = max(0, s.Self.LagSeconds-h.lag.seconds) / s.Time.Sub(h.lag.at).Seconds()
		}
		h.lag = lagSample{seconds: s.Self.LagSeconds, at: s.Time}
	}
	return fresh
}

// Beats returns the pool's last heartbeats, oldest first. The slice is
// the history's own: read it before the next Observe.
func (h *History) Beats(pool supervisor.PoolID) []Beat { return h.beats[pool] }

// LagShare is the share of the time between the last two snapshots that
// fpmguard's timers fired late: 0 when fpmguard ran on time.
func (h *History) LagShare() float64 { return h.lagShare }

// Scale places each heartbeat between 0, the fastest of them, and 1, the
// slowest, on a log scale: latencies spread over orders of magnitude, and
// a ping that took ten times longer should stand out as much at 0.1 ms as
// at 100 ms. Failed heartbeats, heartbeats without a latency and a flat
// series are at 0; the caller draws a failed one its own way.
func Scale(beats []Beat) []float64 {
	lo, hi, _ := Range(beats)
	out := make([]float64, len(beats))
	for i, b := range beats {
		if b.Failed || b.Seconds <= 0 || hi <= lo*1.0001 {
			continue
		}
		out[i] = math.Log(b.Seconds/lo) / math.Log(hi/lo)
	}
	return out
}

// Range is the fastest and the slowest heartbeat that did not fail, and
// whether there is one.
func Range(beats []Beat) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, b := range beats {
		if !b.Failed && b.Seconds > 0 {
			lo, hi, ok = min(lo, b.Seconds), max(hi, b.Seconds), true
		}
	}
	return lo, hi, ok
}
