package web

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/watch"
	"github.com/prometheus/client_golang/prometheus"
)

// family is one collector of a family of metrics, as node_exporter keeps
// one per file: its Descs are built once, and it reads only the snapshot.
type family interface {
	descs() []*metricDesc
	collect(s *watch.Snapshot, m emitter)
}

// Collector renders a snapshot as Prometheus metrics, family by family. A
// scrape only reads memory, so it never waits on php-fpm. It is a
// prometheus.Collector, for the registry's checks and for tests; the
// metrics handler writes the same families straight to text instead.
type Collector struct {
	snapshot func() *watch.Snapshot // nil while not watching
	families []family
	// descs is every Desc, each at its index; byName the same by name, the
	// order of families in the exposition.
	descs, byName []*metricDesc
}

// NewCollector builds the collector of the snapshots source returns (nil
// while fpmguard watches nothing). processMetrics false leaves out the
// per-worker series, for large pools.
func NewCollector(source func() *watch.Snapshot, processMetrics bool) *Collector {
	c := &Collector{snapshot: source, families: []family{
		newStatusCollector(processMetrics),
		newPoolCollector(),
		newUtilizationCollector(),
		newProcessCollector(processMetrics),
		newOpcacheCollector(),
		newNginxCollector(),
		newDiagnosisCollector(),
		newSelfCollector(),
	}}
	for _, f := range c.families {
		for _, d := range f.descs() {
			d.index = len(c.descs)
			c.descs = append(c.descs, d)
		}
	}
	c.byName = slices.Clone(c.descs)
	slices.SortFunc(c.byName, func(a, b *metricDesc) int { return strings.Compare(a.name, b.name) })
	return c
}

// Describe sends every Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

// Collect emits the latest snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if s := c.snapshot(); s != nil {
		c.emit(s, emitter{ch: ch})
	}
}

func (c *Collector) emit(s *watch.Snapshot, m emitter) {
	for _, f := range c.families {
		f.collect(s, m)
	}
}

// metricDesc is a Desc with what the text writer needs of it, which a
// prometheus.Desc keeps to itself.
type metricDesc struct {
	desc       *prometheus.Desc
	name, help string
	labels     []string
	// order lists the indexes of labels in the order of their names: the
	// order of the labels in the text, and of the comparison by which the
	// registry sorts series.
	order []int
	index int // in Collector.descs
}

// desc builds a Desc of fpmguard's: phpfpm_ for what it says of php-fpm,
// fpmguard_ for what it says of itself.
func desc(namespace, name, help string, labels ...string) *metricDesc {
	fq := prometheus.BuildFQName(namespace, "", name)
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return labels[order[a]] < labels[order[b]] })
	return &metricDesc{desc: prometheus.NewDesc(fq, help, labels, nil), name: fq, help: help, labels: labels, order: order}
}

// emitter hands each series to the text writer w, or else as a constant
// metric to ch.
type emitter struct {
	ch chan<- prometheus.Metric
	w  *expositionWriter
}

func (e emitter) gauge(d *metricDesc, v float64, labels ...string) {
	e.emit(d, prometheus.GaugeValue, v, labels)
}

func (e emitter) counter(d *metricDesc, v float64, labels ...string) {
	e.emit(d, prometheus.CounterValue, v, labels)
}

// untyped is for the established exporter's counts, which it types as
// counters without the _total suffix: untyped keeps their names, which
// dashboards query, without breaking the naming rule for counters.
func (e emitter) untyped(d *metricDesc, v float64, labels ...string) {
	e.emit(d, prometheus.UntypedValue, v, labels)
}

func (e emitter) emit(d *metricDesc, t prometheus.ValueType, v float64, labels []string) {
	if e.w != nil {
		e.w.sample(d, t, v, labels)
		return
	}
	e.ch <- prometheus.MustNewConstMetric(d.desc, t, v, labels...)
}

// histogram emits a histogram of count observations summing to sum, with
// counts[i] of them at most bounds[i] (ascending).
func (e emitter) histogram(d *metricDesc, count uint64, sum float64, bounds []float64, counts []uint64, labels ...string) {
	if e.w != nil {
		e.w.histogram(d, count, sum, bounds, counts, labels)
		return
	}
	buckets := make(map[float64]uint64, len(bounds))
	for i, b := range bounds {
		buckets[b] = counts[i]
	}
	e.ch <- prometheus.MustNewConstHistogram(d.desc, count, sum, buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// byName lists the pools in label order, master before pool as the
// registry sorts their labels, which spares the writer (and the registry)
// most of its sorting.
func byName(s *watch.Snapshot) []*watch.PoolView {
	out := make([]*watch.PoolView, len(s.Pools))
	for i := range s.Pools {
		out[i] = &s.Pools[i]
	}
	sort.Slice(out, func(a, b int) bool {
		ra, rb := out[a].Report, out[b].Report
		if ra.MasterName != rb.MasterName {
			return ra.MasterName < rb.MasterName
		}
		return ra.Name < rb.Name
	})
	return out
}

// mostWorkers is the number of workers of the largest pool.
func mostWorkers(pools []*watch.PoolView) int {
	most := 0
	for _, v := range pools {
		most = max(most, len(v.Report.Processes))
	}
	return most
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
