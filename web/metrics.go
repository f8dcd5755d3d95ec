package web

import (
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/fpmguard/fpmguard/watch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// family is one collector of a family of metrics, as node_exporter keeps
// one per file: its Descs are built once, and it reads only the snapshot.
type family interface {
	describe(ch chan<- *prometheus.Desc)
	collect(s *watch.Snapshot, m emitter)
}

// Collector renders a snapshot as Prometheus metrics, family by family. A
// scrape only reads memory, so it never waits on php-fpm.
type Collector struct {
	snapshot func() *watch.Snapshot // nil while not watching
	families []family
}

// NewCollector builds the collector of the snapshots source returns (nil
// while fpmguard watches nothing). processMetrics false leaves out the
// per-worker series, for large pools.
func NewCollector(source func() *watch.Snapshot, processMetrics bool) *Collector {
	return &Collector{snapshot: source, families: []family{
		newStatusCollector(processMetrics),
		newPoolCollector(),
		newProcessCollector(processMetrics),
		newOpcacheCollector(),
		newNginxCollector(),
		newSelfCollector(),
	}}
}

// Describe sends every Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families {
		f.describe(ch)
	}
}

// Collect emits the latest snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	if s == nil {
		return
	}
	for _, f := range c.families {
		f.collect(s, emitter{ch})
	}
}

// desc builds a Desc of fpmguard's: phpfpm_ for what it says of php-fpm,
// fpmguard_ for what it says of itself.
func desc(namespace, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

// emitter sends constant metrics.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// untyped is for the established exporter's counts, which it types as
// counters without the _total suffix: untyped keeps their names, which
// dashboards query, without breaking the naming rule for counters.
func (e emitter) untyped(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.UntypedValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// byName lists the pools in label order, which spares the registry most
// of its sorting.
func byName(s *watch.Snapshot) []*watch.PoolView {
	out := make([]*watch.PoolView, len(s.Pools))
	for i := range s.Pools {
		out[i] = &s.Pools[i]
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Report.Name < out[b].Report.Name })
	return out
}

// childOrder lists worker indexes in the order of their decimal strings
// ("0", "1", "10", "11", ..., "2"), the order the registry sorts labels in.
func childOrder(n int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return strconv.Itoa(order[a]) < strconv.Itoa(order[b]) })
	return order
}

// NewMetricsHandler serves the collector from a registry of its own, with
// fpmguard's build info and Go runtime metrics, as exporters do.
func NewMetricsHandler(c *Collector, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), versioncollector.NewCollector("fpmguard"))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}
