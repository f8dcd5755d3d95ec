package web

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/watch"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// renderMaxAge bounds how long one render is served while the snapshot
// stays the same: the Go runtime, process and self metrics change without
// it. A Prometheus scrapes far less often, so it always sees them fresh,
// while the two of an HA pair scraping together share one render.
const renderMaxAge = time.Second

// metricsMaxInFlight bounds concurrent scrapes, as promhttp did for us.
const metricsMaxInFlight = 4

// NewMetricsHandler serves the collector, with fpmguard's build info and Go
// runtime and process metrics, as exporters do.
func NewMetricsHandler(c *Collector, logger *slog.Logger) http.Handler {
	return newMetricsHandler(c, logger, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), versioncollector.NewCollector("fpmguard"))
}

// metricsHandler answers a scrape in the text format or OpenMetrics, plain
// or gzipped, with bytes rendered once per snapshot and variant: the
// exposition changes only when the snapshot does, and a scrape of a
// hundred pools of fifty workers is 5 MB of text. Concurrent scrapes of one
// snapshot share one render. What it does not cache, protobuf and name[]
// filters, promhttp serves from a registry of everything.
type metricsHandler struct {
	collector *Collector
	runtime   *prometheus.Registry // what does not come from the snapshot
	uncached  http.Handler
	logger    *slog.Logger
	inFlight  chan struct{}

	mu     sync.Mutex
	latest map[variant]*rendering
	// spare is a writer a render left, with its buffers, megabytes on a
	// large host: kept here, not in a sync.Pool, which every garbage
	// collection empties, and a render's allocations make them frequent.
	spare *expositionWriter

	// Tests' hooks: renderHook runs at the start of each render, shareHook
	// when a scrape takes a render made or being made for another.
	renderHook, shareHook func()
}

// variant is one form of the exposition.
type variant struct{ openMetrics, gzip bool }

// rendering is the exposition of a snapshot in one variant: body is set
// when done is closed, nil if the render failed.
type rendering struct {
	snap *watch.Snapshot
	at   time.Time
	done chan struct{}
	body []byte
}

func newMetricsHandler(c *Collector, logger *slog.Logger, runtime ...prometheus.Collector) *metricsHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &metricsHandler{collector: c, runtime: prometheus.NewRegistry(), logger: logger,
		inFlight: make(chan struct{}, metricsMaxInFlight), latest: map[variant]*rendering{}}
	h.runtime.MustRegister(runtime...)
	// Registering everything in one registry also refuses, at startup,
	// two families of one name.
	all := prometheus.NewRegistry()
	all.MustRegister(append(runtime, c)...)
	h.uncached = promhttp.HandlerFor(all, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
		EnableOpenMetrics: true,
	})
	return h
}

func (h *metricsHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		http.Error(rw, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", metricsMaxInFlight), http.StatusServiceUnavailable)
		return
	}
	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	t := format.FormatType()
	if (t != expfmt.TypeTextPlain && t != expfmt.TypeOpenMetrics) || (r.URL != nil && r.URL.Query().Has("name[]")) {
		h.uncached.ServeHTTP(rw, r)
		return
	}
	v := variant{openMetrics: t == expfmt.TypeOpenMetrics, gzip: wantsGzip(r.Header)}
	body := h.body(v, h.collector.snapshot())
	if body == nil {
		http.Error(rw, "An error has occurred while serving metrics: see fpmguard's log", http.StatusInternalServerError)
		return
	}
	hd := rw.Header()
	hd.Add("Vary", "Accept")
	hd.Add("Vary", "Accept-Encoding")
	// The negotiated version and escaping: the bytes are the same for
	// each, fpmguard's names needing no escaping.
	hd.Set("Content-Type", string(format))
	if v.gzip {
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = rw.Write(body)
}

// body returns the exposition of s in variant v: the latest render when it
// is of the same snapshot and recent, else a new one, which scrapes
// arriving meanwhile wait for instead of rendering again.
func (h *metricsHandler) body(v variant, s *watch.Snapshot) []byte {
	now := time.Now()
	h.mu.Lock()
	r := h.latest[v]
	if r != nil && now.Sub(r.at) < renderMaxAge && sameSnapshot(r.snap, s) {
		h.mu.Unlock()
		if h.shareHook != nil {
			h.shareHook()
		}
		<-r.done
		return r.body
	}
	r = &rendering{snap: s, at: now, done: make(chan struct{})}
	h.latest[v] = r
	h.mu.Unlock()
	defer func() {
		if r.body == nil { // a panic: the next scrape tries again
			h.mu.Lock()
			if h.latest[v] == r {
				delete(h.latest, v)
			}
			h.mu.Unlock()
		}
		close(r.done)
	}()
	body := h.render(s, v.openMetrics)
	if v.gzip {
		body = gzipped(body)
	}
	r.body = body
	return body
}

// render writes the exposition of s, and of the runtime collectors, as the
// registry would: families by name, then the end of OpenMetrics.
func (h *metricsHandler) render(s *watch.Snapshot, openMetrics bool) []byte {
	if h.renderHook != nil {
		h.renderHook()
	}
	c := h.collector
	h.mu.Lock()
	w := h.spare
	h.spare = nil
	h.mu.Unlock()
	if w == nil {
		w = new(expositionWriter)
	}
	w.reset(len(c.descs), openMetrics)
	defer func() {
		h.mu.Lock()
		h.spare = w
		h.mu.Unlock()
	}()
	if s != nil {
		c.emit(s, emitter{w: w})
	}
	runtime, names := h.gatherRuntime(openMetrics)

	size := len(runtime.Bytes()) + len("# EOF\n")
	for i := range w.families {
		if f := &w.families[i]; f.desc != nil {
			size += len(f.text) + 2*len(f.desc.name) + len(f.desc.help) + 32
		}
	}
	out := make([]byte, 0, size)
	rest, i := runtime.Bytes(), 0
	for _, d := range c.byName {
		f := &w.families[d.index]
		if f.desc == nil {
			continue
		}
		for ; i < len(names) && names[i].name < d.name; i++ {
			out = append(out, rest[:names[i].size]...)
			rest = rest[names[i].size:]
		}
		out = w.appendFamily(out, f)
	}
	out = append(out, rest...)
	if openMetrics {
		out = append(out, "# EOF\n"...)
	}
	if w.duplicates > 0 {
		h.logger.Error("metrics: series collected twice, the later dropped", "count", w.duplicates, "first", w.first)
	}
	return out
}

// encodedFamily is the name and length of a family expfmt wrote.
type encodedFamily struct {
	name string
	size int
}

// gatherRuntime encodes the runtime collectors' families with expfmt, as
// promhttp does, one after another: an error leaves out what failed.
func (h *metricsHandler) gatherRuntime(openMetrics bool) (*bytes.Buffer, []encodedFamily) {
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	if openMetrics {
		format = expfmt.NewFormat(expfmt.TypeOpenMetrics)
	}
	families, err := h.runtime.Gather()
	if err != nil {
		h.logger.Error("error gathering metrics", "err", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	names := make([]encodedFamily, 0, len(families))
	for _, f := range families {
		n := buf.Len()
		if err := enc.Encode(f); err != nil {
			h.logger.Error("error encoding metric family", "family", f.GetName(), "err", err)
			buf.Truncate(n)
			continue
		}
		names = append(names, encodedFamily{f.GetName(), buf.Len() - n})
	}
	return &buf, names
}

// sameSnapshot says whether b's exposition is a's, Self aside (its CPU
// periods count up while fpmguard runs; renderMaxAge bounds it). A pool's
// view compares by its report: the watcher makes a new one for each probe
// and never changes it, and a pool not probed yet gets a new one each
// time, so it never compares equal.
func sameSnapshot(a, b *watch.Snapshot) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || len(a.Pools) != len(b.Pools) || len(a.Opcache) != len(b.Opcache) {
		return false
	}
	for i := range a.Pools {
		if a.Pools[i].Report != b.Pools[i].Report {
			return false
		}
	}
	// The watcher replaces its opcache reports, never changes them.
	if len(a.Opcache) > 0 && &a.Opcache[0] != &b.Opcache[0] {
		return false
	}
	return maps.Equal(a.Actions, b.Actions) && maps.Equal(a.MasterRestarts, b.MasterRestarts) && maps.Equal(a.Nginx, b.Nginx) && maps.Equal(a.Exits, b.Exits)
}

// gzipWriters keeps gzip's state, about a megabyte, between renders.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// gzipped compresses at gzip's fastest level: a render is compressed once
// per snapshot, about once a second on a large host, and text metrics
// compress well even so.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b) / 8)
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// wantsGzip chooses between gzip and identity as promhttp does: gzip when
// Accept-Encoding gives it a q above 0 and above identity's, * counting
// for both.
func wantsGzip(h http.Header) bool {
	gz, identity := -1.0, -1.0
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			q := 1.0
			if s, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err != nil {
					continue
				}
				q = f
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip":
				gz = max(gz, q)
			case "identity":
				identity = max(identity, q)
			case "*":
				gz, identity = max(gz, q), max(identity, q)
			}
		}
	}
	return gz > 0 && gz > identity
}
