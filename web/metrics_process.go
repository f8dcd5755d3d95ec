package web

import (
	"strconv"

	"github.com/fpmguard/fpmguard/watch"
)

// processCollector emits the OS view of each worker: CPU time and memory.
// --no-process-metrics leaves it out, for large pools.
type processCollector struct {
	on                        bool
	procCPU, procRSS, procPSS *metricDesc
}

func newProcessCollector(on bool) *processCollector {
	d := func(name, help string, labels ...string) *metricDesc {
		return desc("phpfpm", name, help, labels...)
	}
	return &processCollector{
		on:      on,
		procCPU: d("process_cpu_seconds_total", "CPU time the worker used, user and system.", "pool", "master", "child"),
		procRSS: d("process_resident_memory_bytes", "Resident memory of the worker; counts the shared opcache again in every worker.", "pool", "master", "child"),
		procPSS: d("process_proportional_memory_bytes", "Proportional memory of the worker: shared pages divided among their sharers.", "pool", "master", "child"),
	}
}

func (c *processCollector) descs() []*metricDesc {
	return []*metricDesc{c.procCPU, c.procRSS, c.procPSS}
}

// collect goes child by child, the order the registry sorts the series in
// (child sorts before pool), which spares a sort.
func (c *processCollector) collect(s *watch.Snapshot, m emitter) {
	if !c.on {
		return
	}
	pools := byName(s)
	for _, i := range childOrder(mostWorkers(pools)) {
		child := strconv.Itoa(i)
		for _, v := range pools {
			p := v.Report
			if i >= len(p.Processes) {
				continue
			}
			w := &p.Processes[i]
			m.counter(c.procCPU, w.CPUSeconds, p.Name, p.MasterName, child)
			m.gauge(c.procRSS, float64(w.RSSBytes), p.Name, p.MasterName, child)
			if w.PSSBytes > 0 {
				m.gauge(c.procPSS, float64(w.PSSBytes), p.Name, p.MasterName, child)
			}
		}
	}
}
