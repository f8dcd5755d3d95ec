package top

import (
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// nginxWindow is the window of the nginx 5xx count.
const nginxWindow = time.Minute

// workerKey names one worker.
type workerKey struct {
	pool supervisor.PoolID
	pid  int
}

// history is what top remembers across snapshots: each pool's recent
// heartbeats and fpmguard's lag (package recent, shared with the status
// page), nginx's counts over the last minute, and each worker's CPU time
// at the last probe. A snapshot holds one moment; the view needs rates
// and trends.
type history struct {
	recent   *recent.History
	nginx    []nginxSample
	cpu      map[workerKey]cpuSample
	cpuPct   map[workerKey]float64
	lagShare float64 // share of the last refresh fpmguard's timers ran late
}

type nginxSample struct {
	at     time.Time
	byPool map[supervisor.PoolID]uint64
}

type cpuSample struct {
	seconds float64
	at      time.Time
}

func newHistory() *history {
	return &history{recent: recent.New(), cpu: map[workerKey]cpuSample{}, cpuPct: map[workerKey]float64{}}
}

// observe takes in a snapshot. A pool probed again adds a heartbeat and
// new CPU rates; the rest stays.
func (h *history) observe(s *watch.Snapshot) {
	live := make(map[workerKey]bool, len(h.cpu))
	for _, p := range s.Pools {
		for _, w := range p.Report.Processes {
			live[workerKey{p.Report.ID(), w.PID}] = true
		}
	}
	for _, p := range h.recent.Observe(s) {
		r := p.Report
		for _, w := range r.Processes {
			k := workerKey{r.ID(), w.PID}
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
	h.lagShare = h.recent.LagShare()
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

// sparkline draws the pool's recent heartbeats, on recent's log scale
// between the fastest and the slowest of them: one "!" per failed
// heartbeat.
func (h *history) sparkline(pool supervisor.PoolID) string {
	beats := h.recent.Beats(pool)
	var sb strings.Builder
	for i, f := range recent.Scale(beats) {
		if beats[i].Failed {
			sb.WriteByte('!')
			continue
		}
		sb.WriteRune(sparkBars[min(len(sparkBars)-1, int(f*float64(len(sparkBars))))])
	}
	return sb.String()
}
