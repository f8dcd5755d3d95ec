package web

import (
	"github.com/fpmguard/fpmguard/watch"
)

// selfCollector emits fpmguard's own lag and what it lost, so an operator
// can tell when to raise its CPU limit.
type selfCollector struct {
	lag, cpuPeriods, cpuThrottled, cpuThrottledTime, probeInterval, droppedLogLines *metricDesc
}

func newSelfCollector() *selfCollector {
	d := func(name, help string) *metricDesc { return desc("fpmguard", name, help) }
	return &selfCollector{
		lag:              d("lag_seconds_total", "Time fpmguard's own timers fired late: time it wanted a CPU and had none."),
		cpuPeriods:       d("cpu_periods_total", "CFS enforcement periods of fpmguard's cgroup since fpmguard started."),
		cpuThrottled:     d("cpu_throttled_periods_total", "Periods in which fpmguard's cgroup ran out of CPU quota since fpmguard started."),
		cpuThrottledTime: d("cpu_throttled_seconds_total", "Time fpmguard's cgroup was throttled since fpmguard started."),
		probeInterval:    d("probe_interval_seconds", "The interval between probes of a pool now: longer than --interval while fpmguard is starved of CPU."),
		droppedLogLines:  d("log_lines_dropped_total", "Log lines fpmguard could not write (a closed or broken stdout or stderr) and dropped."),
	}
}

func (c *selfCollector) descs() []*metricDesc {
	return []*metricDesc{c.lag, c.cpuPeriods, c.cpuThrottled, c.cpuThrottledTime, c.probeInterval, c.droppedLogLines}
}

func (c *selfCollector) collect(s *watch.Snapshot, m emitter) {
	self := s.Self
	m.counter(c.lag, self.LagSeconds)
	m.counter(c.cpuPeriods, float64(self.Throttling.Periods))
	m.counter(c.cpuThrottled, float64(self.Throttling.Throttled))
	m.counter(c.cpuThrottledTime, self.Throttling.Time.Seconds())
	m.gauge(c.probeInterval, self.Interval.Seconds())
	m.counter(c.droppedLogLines, float64(self.DroppedLogLines))
}
