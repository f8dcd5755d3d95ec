package watch

import (
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
)

// PoolStats are a pool's counts since fpmguard started.
type PoolStats struct {
	Heartbeats          uint64
	HeartbeatSumSeconds float64
	Buckets             []uint64 // cumulative counts at HeartbeatBuckets
	Failures            map[fastcgi.Reason]uint64
	ScrapeFailures      uint64
	Inconclusive        uint64 // heartbeats that proved nothing: fpmguard was starved
}

// HeartbeatBuckets are the upper bounds of the heartbeat histogram, from a
// fast unix-socket ping to the default timeout.
var HeartbeatBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func (s *PoolStats) add(r *supervisor.PoolReport) {
	if s.Failures == nil {
		s.Failures = map[fastcgi.Reason]uint64{}
		s.Buckets = make([]uint64, len(HeartbeatBuckets))
	}
	if r.Status.Failed() {
		s.ScrapeFailures++
	}
	if r.Heartbeat.Skipped || r.Heartbeat.Idle {
		return
	}
	if r.Heartbeat.Inconclusive != "" {
		// Its latency is fpmguard's own lag, not php-fpm's.
		s.Inconclusive++
		return
	}
	if f := r.Heartbeat.Failure; f != nil {
		s.Failures[f.Reason]++
	}
	if r.Heartbeat.WaitsBehindHung > 0 {
		return // not sent: no latency to count
	}
	d := r.Heartbeat.LatencySeconds
	s.Heartbeats++
	s.HeartbeatSumSeconds += d
	for i, b := range HeartbeatBuckets {
		if d <= b {
			s.Buckets[i]++
		}
	}
}
