package top

import (
	"math"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// sparkLen is how many heartbeats the sparkline shows.
const sparkLen = 16

// nginxWindow is the window of the nginx 5xx count.
const nginxWindow = time.Minute

// workerKey names one worker.
type workerKey struct {
	pool supervisor.PoolID
	pid  int
}

// beat is one heartbeat as the sparkline draws it.
type beat struct {
	seconds float64
	failed  bool
}

// history is what top remembers across snapshots: each pool's recent
// heartbeats, nginx's counts over the last minute, each worker's CPU time
// at the last probe, and fpmguard's lag. A snapshot holds one moment; the
// view needs rates and trends.
type history struct {
	beats     map[supervisor.PoolID][]beat
	lastProbe map[supervisor.PoolID]time.Time
	nginx     []nginxSample
	cpu       map[workerKey]cpuSample
	cpuPct    map[workerKey]float64
	lag       lagSample
	lagShare  float64 // share of the last refresh fpmguard's timers ran late
}

type nginxSample struct {
	at     time.Time
	byPool map[supervisor.PoolID]uint64
}

type cpuSample struct {
	seconds float64
	at      time.Time
}

type lagSample struct {
	seconds float64
	at      time.Time
}

func newHistory() *history {
	return &history{beats: map[supervisor.PoolID][]beat{}, lastProbe: map[supervisor.PoolID]time.Time{}, cpu: map[workerKey]cpuSample{}, cpuPct: map[workerKey]float64{}}
}

// observe takes in a snapshot. A pool probed again adds a heartbeat and
// new CPU rates; the rest stays.
func (h *history) observe(s *watch.Snapshot) {
	live := make(map[workerKey]bool, len(h.cpu))
	for _, p := range s.Pools {
		r, id := p.Report, p.Report.ID()
		for _, w := range r.Processes {
			live[workerKey{id, w.PID}] = true
		}
		if !p.Probed() || !p.LastProbe.After(h.lastProbe[id]) {
			continue
		}
		h.lastProbe[id] = p.LastProbe
		if !r.Heartbeat.Skipped {
			b := append(h.beats[id], beat{seconds: r.Heartbeat.LatencySeconds, failed: r.Heartbeat.Failed()})
			if len(b) > sparkLen {
				b = b[len(b)-sparkLen:]
			}
			h.beats[id] = b
		}
		for _, w := range r.Processes {
			k := workerKey{id, w.PID}
			if prev, ok := h.cpu[k]; ok && p.LastProbe.After(prev.at) && w.CPUSeconds >= prev.seconds {
				h.cpuPct[k] = 100 * (w.CPUSeconds - prev.seconds) / p.LastProbe.Sub(prev.at).Seconds()
			}
			h.cpu[k] = cpuSample{seconds: w.CPUSeconds, at: p.LastProbe}
		}
	}
	for k := range h.cpu {
		if !live[k] {
			delete(h.cpu, k)
			delete(h.cpuPct, k)
		}
	}

	if s.Nginx != nil {
		by := map[supervisor.PoolID]uint64{}
		for k, n := range s.Nginx {
			by[k.Pool] += n
		}
		h.nginx = append(h.nginx, nginxSample{at: s.Time, byPool: by})
		// Keep the newest sample at least a window old, and all after it.
		cut := 0
		for i, n := range h.nginx {
			if s.Time.Sub(n.at) >= nginxWindow {
				cut = i
			}
		}
		h.nginx = h.nginx[cut:]
	}

	if h.lag.at.IsZero() || s.Time.After(h.lag.at) {
		if !h.lag.at.IsZero() {
			h.lagShare = max(0, s.Self.LagSeconds-h.lag.seconds) / s.Time.Sub(h.lag.at).Seconds()
		}
		h.lag = lagSample{seconds: s.Self.LagSeconds, at: s.Time}
	}
}

// nginx5xx is the pool's 5xx nginx logged over the last minute (or since
// top started, when that is shorter), and whether nginx is followed.
func (h *history) nginx5xx(pool supervisor.PoolID) (uint64, bool) {
	if len(h.nginx) == 0 {
		return 0, false
	}
	first, last := h.nginx[0].byPool[pool], h.nginx[len(h.nginx)-1].byPool[pool]
	if last < first {
		return last, true // the watcher was replaced (SIGHUP): counts began again
	}
	return last - first, true
}

// cpuPercent is the worker's CPU use over the last probe interval, and
// whether it is known yet.
func (h *history) cpuPercent(k workerKey) (float64, bool) {
	v, ok := h.cpuPct[k]
	return v, ok
}

var sparkBars = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the pool's recent heartbeats, on a log scale between the
// fastest and the slowest of them: one "!" per failed heartbeat.
func (h *history) sparkline(pool supervisor.PoolID) string {
	beats := h.beats[pool]
	if len(beats) == 0 {
		return ""
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range beats {
		if !b.failed && b.seconds > 0 {
			lo, hi = min(lo, b.seconds), max(hi, b.seconds)
		}
	}
	var sb strings.Builder
	for _, b := range beats {
		switch {
		case b.failed:
			sb.WriteByte('!')
		case b.seconds <= 0 || hi <= lo*1.0001:
			sb.WriteRune(sparkBars[0])
		default:
			f := math.Log(b.seconds/lo) / math.Log(hi/lo)
			sb.WriteRune(sparkBars[min(len(sparkBars)-1, int(f*float64(len(sparkBars))))])
		}
	}
	return sb.String()
}
