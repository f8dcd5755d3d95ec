package web

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// expositionWriter writes the families of a snapshot in the Prometheus
// text format (0.0.4) or in OpenMetrics 1.0, the same bytes expfmt writes
// for what the registry gathers from them (TestWriterMatchesRegistry),
// without the registry's protobuf structs, two allocations and a hash a
// series: on a hundred pools of fifty workers they cost a scrape 100 ms.
type expositionWriter struct {
	openMetrics bool
	families    []familyText // by metricDesc.index
	// duplicates counts the series dropped for repeating the labels of
	// one before them, as the registry drops them; first names the first.
	duplicates int
	first      string
}

// familyText is one family's series as written so far, one after another.
type familyText struct {
	desc *metricDesc
	kind metricKind // of the first series, as the registry takes it
	text []byte
	ends []int // where each series ends in text
	// keys holds the label values of each series in the order of their
	// names (desc.order), the registry's sort key.
	keys     []string
	unsorted bool
}

type metricKind uint8

const (
	kindNone metricKind = iota
	kindGauge
	kindCounter
	kindUntyped
	kindHistogram
)

func kindOf(t prometheus.ValueType) metricKind {
	switch t {
	case prometheus.GaugeValue:
		return kindGauge
	case prometheus.CounterValue:
		return kindCounter
	}
	return kindUntyped
}

// reset empties w for n descs, keeping its buffers for the next render.
func (w *expositionWriter) reset(n int, openMetrics bool) {
	w.openMetrics, w.duplicates, w.first = openMetrics, 0, ""
	if cap(w.families) < n {
		w.families = make([]familyText, n)
	}
	w.families = w.families[:n]
	for i := range w.families {
		f := &w.families[i]
		f.desc, f.kind, f.unsorted = nil, kindNone, false
		f.text, f.ends = f.text[:0], f.ends[:0]
		clear(f.keys) // not to keep old label values alive
		f.keys = f.keys[:0]
	}
}

func (w *expositionWriter) family(d *metricDesc, k metricKind) *familyText {
	f := &w.families[d.index]
	if f.desc == nil {
		f.desc, f.kind = d, k
	}
	return f
}

func (w *expositionWriter) sample(d *metricDesc, t prometheus.ValueType, v float64, labels []string) {
	f := w.family(d, kindOf(t))
	f.text = appendSeries(f.text, d, "", labels, nil)
	f.text = w.appendValue(f.text, v)
	f.text = append(f.text, '\n')
	f.added(labels)
}

// histogram writes the buckets, the sum and the count, as expfmt does:
// an +Inf bucket last unless bounds has one.
func (w *expositionWriter) histogram(d *metricDesc, count uint64, sum float64, bounds []float64, counts []uint64, labels []string) {
	f := w.family(d, kindHistogram)
	var le [32]byte
	inf := false
	for i, b := range bounds {
		inf = inf || math.IsInf(b, +1)
		f.text = appendSeries(f.text, d, "_bucket", labels, w.appendValue(le[:0], b))
		f.text = w.appendCount(f.text, counts[i])
	}
	if !inf {
		f.text = appendSeries(f.text, d, "_bucket", labels, infBound)
		f.text = w.appendCount(f.text, count)
	}
	f.text = appendSeries(f.text, d, "_sum", labels, nil)
	f.text = w.appendValue(f.text, sum)
	f.text = append(f.text, '\n')
	f.text = appendSeries(f.text, d, "_count", labels, nil)
	f.text = w.appendCount(f.text, count)
	f.added(labels)
}

// added ends the series just written, and notes whether the family is
// still in the registry's order.
func (f *familyText) added(labels []string) {
	f.ends = append(f.ends, len(f.text))
	n := len(f.keys)
	for _, i := range f.desc.order {
		f.keys = append(f.keys, labels[i])
	}
	if k := len(f.desc.order); n > 0 && !f.unsorted && compareKeys(f.keys[n-k:n], f.keys[n:]) >= 0 {
		f.unsorted = true
	}
}

// compareKeys orders series as the registry does: by their label values,
// in the order of the label names.
func compareKeys(a, b []string) int {
	for i := range a {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// appendFamily appends f, its HELP and TYPE lines and its series in the
// registry's order, to out. A series with the labels of one before it is
// dropped, as the registry drops it.
func (w *expositionWriter) appendFamily(out []byte, f *familyText) []byte {
	out = w.appendHeader(out, f)
	if !f.unsorted {
		return append(out, f.text...)
	}
	k := len(f.desc.order)
	key := func(i int) []string { return f.keys[i*k : (i+1)*k] }
	order := make([]int, len(f.ends))
	for i := range order {
		order[i] = i
	}
	// Stable: of two series with the same labels, the first is kept.
	slices.SortStableFunc(order, func(a, b int) int { return compareKeys(key(a), key(b)) })
	for n, i := range order {
		if n > 0 && compareKeys(key(order[n-1]), key(i)) == 0 {
			if w.duplicates++; w.first == "" {
				w.first = f.desc.name + strings.Join(key(i), ",")
			}
			continue
		}
		start := 0
		if i > 0 {
			start = f.ends[i-1]
		}
		out = append(out, f.text[start:f.ends[i]]...)
	}
	return out
}

func (w *expositionWriter) appendHeader(out []byte, f *familyText) []byte {
	name, typ := f.desc.name, ""
	switch f.kind {
	case kindGauge:
		typ = "gauge"
	case kindCounter:
		typ = "counter"
		if w.openMetrics {
			// OpenMetrics names a counter's family without the _total
			// of its samples, and knows no counter without it.
			if trimmed, ok := strings.CutSuffix(name, "_total"); ok {
				name = trimmed
			} else {
				typ = "unknown"
			}
		}
	case kindUntyped:
		typ = "untyped"
		if w.openMetrics {
			typ = "unknown"
		}
	case kindHistogram:
		typ = "histogram"
	}
	out = append(out, "# HELP "...)
	out = append(out, name...)
	out = append(out, ' ')
	out = appendEscaped(out, f.desc.help, w.openMetrics)
	out = append(out, "\n# TYPE "...)
	out = append(out, name...)
	out = append(out, ' ')
	out = append(out, typ...)
	return append(out, '\n')
}

var infBound = []byte("+Inf")

// appendSeries appends a sample's name and labels, and the space before
// its value: le is a histogram bucket's bound, nil for none.
func appendSeries(b []byte, d *metricDesc, suffix string, labels []string, le []byte) []byte {
	b = append(b, d.name...)
	b = append(b, suffix...)
	sep := byte('{')
	for _, i := range d.order {
		b = append(b, sep)
		b = append(b, d.labels[i]...)
		b = append(b, '=', '"')
		b = appendEscaped(b, labels[i], true)
		b = append(b, '"')
		sep = ','
	}
	if le != nil {
		b = append(b, sep)
		b = append(b, `le="`...)
		b = append(b, le...)
		b = append(b, '"')
		sep = ','
	}
	if sep == ',' {
		b = append(b, '}')
	}
	return append(b, ' ')
}

// plain marks the bytes written as they are in a quoted string: ASCII but
// for backslash, newline and double quote. A table, as label values are
// most of the bytes of a scrape.
var plain = func() (t [256]bool) {
	for c := range utf8.RuneSelf {
		t[c] = c != '\\' && c != '\n' && c != '"'
	}
	return t
}()

// appendEscaped escapes backslashes and newlines, and double quotes when
// quote is set, as expfmt does. A string that is not UTF-8 has its bad
// bytes replaced: the registry would refuse the whole scrape for it.
func appendEscaped(b []byte, s string, quote bool) []byte {
	i := 0
	for i < len(s) && plain[s[i]] {
		i++
	}
	if i == len(s) {
		return append(b, s...)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendValue writes a float as expfmt does: OpenMetrics marks a whole
// number with ".0".
func (w *expositionWriter) appendValue(b []byte, f float64) []byte {
	switch {
	case f == 1 && !w.openMetrics:
		return append(b, '1')
	case f == 0 && !w.openMetrics:
		return append(b, '0')
	case f == -1 && !w.openMetrics:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	n := len(b)
	if i := int64(f); float64(i) == f && i > -1e6 && i < 1e6 {
		// What 'g' writes of a whole number below a million, faster.
		b = strconv.AppendInt(b, i, 10)
	} else {
		b = strconv.AppendFloat(b, f, 'g', -1, 64)
	}
	if w.openMetrics && !bytes.ContainsAny(b[n:], "e.") {
		b = append(b, '.', '0')
	}
	return b
}

// appendCount writes a histogram's count and a newline: an integer in
// OpenMetrics, a float in the text format.
func (w *expositionWriter) appendCount(b []byte, n uint64) []byte {
	if w.openMetrics {
		b = strconv.AppendUint(b, n, 10)
	} else {
		b = w.appendValue(b, float64(n))
	}
	return append(b, '\n')
}
