package web

import (
	"strconv"

	"github.com/fpmguard/fpmguard/watch"
	"github.com/prometheus/client_golang/prometheus"
)

// processCollector emits the OS view of each worker: CPU time and memory.
// --no-process-metrics leaves it out, for large pools.
type processCollector struct {
	on                        bool
	procCPU, procRSS, procPSS *prometheus.Desc
}

func newProcessCollector(on bool) *processCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return desc("phpfpm", name, help, labels...)
	}
	return &processCollector{
		on:      on,
		procCPU: d("process_cpu_seconds_total", "CPU time the worker used, user and system.", "pool", "child"),
		procRSS: d("process_resident_memory_bytes", "Resident memory of the worker; counts the shared opcache again in every worker.", "pool", "child"),
		procPSS: d("process_proportional_memory_bytes", "Proportional memory of the worker: shared pages divided among their sharers.", "pool", "child"),
	}
}

func (c *processCollector) describe(ch chan<- *prometheus.Desc) {
	ch <- c.procCPU
	ch <- c.procRSS
	ch <- c.procPSS
}

func (c *processCollector) collect(s *watch.Snapshot, m emitter) {
	if !c.on {
		return
	}
	for _, v := range byName(s) {
		p := v.Report
		for _, i := range childOrder(len(p.Processes)) {
			w, child := &p.Processes[i], strconv.Itoa(i)
			m.counter(c.procCPU, w.CPUSeconds, p.Name, child)
			m.gauge(c.procRSS, float64(w.RSSBytes), p.Name, child)
			if w.PSSBytes > 0 {
				m.gauge(c.procPSS, float64(w.PSSBytes), p.Name, child)
			}
		}
	}
}
