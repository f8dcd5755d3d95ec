package web

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

// oddSnapshot has what the writer must get right beyond fixedSnapshot:
// labels to escape and to sort, numbers to spell, several masters, a pool
// not probed yet and one whose status page failed.
func oddSnapshot() *watch.Snapshot {
	s := fixedSnapshot(3, 12)
	s.Pools[0].Report.Name = `we"ird\pool` + "\nname é"
	w := &s.Pools[1].Report.Processes[3]
	w.LastRequestCPU, w.CPUSeconds, w.RequestDurationSeconds = math.NaN(), math.Inf(+1), 1e-7
	s.Pools[1].Report.Processes[4].LastRequestCPU = -1
	s.Pools[1].Report.Processes[5].LastRequestCPU = 123456789012345678
	s.Pools[2].Report.Status = supervisor.StatusRead{Error: "timeout"}
	s.Pools = append(s.Pools, watch.PoolView{Report: &supervisor.PoolReport{Name: "a-new-pool", Health: supervisor.HealthUnhealthy,
		Processes: []supervisor.ProcessState{}}, ScrapeURI: "tcp://127.0.0.1:9000;/status"})
	s.Pools[1].Report.Master = &supervisor.MasterReport{PID: 7, Alive: true, Config: "/etc/other.conf"}
	s.Pools[1].Report.MasterName = "/etc/other.conf"
	s.MasterRestarts["/etc/other.conf"] = 2
	// Two pools of one name under two masters: two sets of series.
	s.Pools[2].Report.Name = "pool1"
	s.Actions[watch.ActionKey{Pool: supervisor.PoolID{Pool: "pool1", Master: fixedConf}, Action: watch.ActionKill, Result: watch.ResultOK}] = 3
	s.Actions[watch.ActionKey{Pool: supervisor.PoolID{Pool: "pool0", Master: fixedConf}, Action: watch.ActionReload, Result: watch.ResultOK}] = 1
	s.Nginx = map[nginxlog.Key]uint64{{Pool: supervisor.PoolID{Pool: "pool1", Master: fixedConf}, Status: 504, Cause: "timeout"}: 4, {Pool: supervisor.PoolID{Pool: "pool1", Master: "/etc/other.conf"}, Status: 504, Cause: "timeout"}: 5, {Pool: supervisor.PoolID{Pool: "pool0", Master: fixedConf}, Status: 502, Cause: "refused"}: 1}
	s.Self.LagSeconds = 0.25
	return s
}

// registryText is what promhttp served before: the registry's families,
// encoded by expfmt in format.
func registryText(t *testing.T, format expfmt.Format, cs ...prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.(expfmt.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestWriterMatchesRegistry: the writer's text is, byte for byte, what
// expfmt writes of the registry's families, in both formats, the runtime
// families (here the build info, among fpmguard's own) in their place.
func TestWriterMatchesRegistry(t *testing.T) {
	for name, snap := range map[string]*watch.Snapshot{"fixed": fixedSnapshot(3, 12), "odd": oddSnapshot()} {
		for _, processMetrics := range []bool{true, false} {
			c := NewCollector(fixed(snap), processMetrics)
			h := newMetricsHandler(c, nil, versioncollector.NewCollector("fpmguard"))
			for _, ft := range []expfmt.FormatType{expfmt.TypeTextPlain, expfmt.TypeOpenMetrics} {
				want := registryText(t, expfmt.NewFormat(ft), c, versioncollector.NewCollector("fpmguard"))
				got := h.render(snap, ft == expfmt.TypeOpenMetrics)
				if !bytes.Equal(got, want) {
					t.Errorf("%s, process metrics %v, format %v: the writer's text differs from the registry's:\n%s", name, processMetrics, ft, firstDifference(got, want))
				}
			}
		}
	}
}

// TestWriterLint: what the handler serves passes promtool's lint.
func TestWriterLint(t *testing.T) {
	snap := fixedSnapshot(3, 12)
	body := scrape(t, NewMetricsHandler(NewCollector(fixed(snap), true), nil))
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestWriterDropsDuplicates: two pools of one name give each series
// twice; the first is kept, as the registry keeps it.
func TestWriterDropsDuplicates(t *testing.T) {
	snap := fixedSnapshot(2, 2)
	snap.Pools[1].Report.Name = "pool0"
	h := newMetricsHandler(NewCollector(fixed(snap), true), nil)
	out := string(h.render(snap, false))
	if n := strings.Count(out, "\nphpfpm_heartbeat_up{"); n != 1 {
		t.Errorf("%d heartbeat_up series for one pool name", n)
	}
}

func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, gl, wl)
		}
	}
	return "same lines"
}

// counted is a handler whose renders and shared renders are counted.
func counted(source func() *watch.Snapshot) (*metricsHandler, *int, *int) {
	h := newMetricsHandler(NewCollector(source, true), nil, versioncollector.NewCollector("fpmguard"))
	var mu sync.Mutex
	renders, shares := 0, 0
	h.renderHook = func() { mu.Lock(); renders++; mu.Unlock() }
	h.shareHook = func() { mu.Lock(); shares++; mu.Unlock() }
	return h, &renders, &shares
}

// TestScrapeCache: a scrape of the same snapshot serves the bytes of the
// last render, which are those of a fresh one; a snapshot that says the
// same from another pointer shares them too; a new snapshot, or an old
// render, renders again.
func TestScrapeCache(t *testing.T) {
	snap := fixedSnapshot(2, 3)
	current := snap
	h, renders, _ := counted(func() *watch.Snapshot { return current })
	// young makes the renders young whatever the time between scrapes on
	// a loaded machine: only renderMaxAge's own check below ages them.
	young := func() {
		h.mu.Lock()
		for _, r := range h.latest {
			r.at = time.Now().Add(time.Hour)
		}
		h.mu.Unlock()
	}
	first := scrape(t, h)
	young()
	if again := scrape(t, h); again != first || *renders != 1 {
		t.Fatalf("second scrape of one snapshot: %d renders, same bytes %v", *renders, again == first)
	}
	if fresh := string(h.render(snap, false)); fresh != first {
		t.Errorf("the cached bytes differ from a fresh render:\n%s", firstDifference([]byte(first), []byte(fresh)))
	}
	*renders = 0

	// What Watcher.Snapshot returns when nothing changed: a new snapshot
	// of the same reports, with new maps of the same counts.
	same := *snap
	same.Time = snap.Time.Add(time.Second)
	same.Pools = append([]watch.PoolView(nil), snap.Pools...)
	same.Actions, same.MasterRestarts = maps.Clone(snap.Actions), maps.Clone(snap.MasterRestarts)
	current = &same
	young()
	if scrape(t, h) != first || *renders != 0 {
		t.Errorf("a snapshot of the same reports rendered again (%d)", *renders)
	}

	next := fixedSnapshot(2, 3)
	next.Pools[1].Report.Processes[2].Requests = 999
	current = next
	out := scrape(t, h)
	if *renders != 1 || out == first || metricValue(t, out, "phpfpm_process_requests", `pool="pool1"`, `child="2"`) != 999 {
		t.Errorf("a new snapshot: %d renders, process_requests %v", *renders, metricValue(t, out, "phpfpm_process_requests", `pool="pool1"`, `child="2"`))
	}
	counts := maps.Clone(next.Actions)
	counts[watch.ActionKey{Pool: supervisor.PoolID{Pool: "pool1", Master: fixedConf}, Action: watch.ActionKill, Result: watch.ResultOK}] = 1
	moreActions := *next
	moreActions.Actions = counts
	current = &moreActions
	young()
	if scrape(t, h); *renders != 2 {
		t.Errorf("a new action count: %d renders, want 2", *renders)
	}

	// The runtime metrics age: a render older than renderMaxAge is not
	// served, even of the same snapshot.
	h.mu.Lock()
	for _, r := range h.latest {
		r.at = time.Now().Add(-renderMaxAge)
	}
	h.mu.Unlock()
	if scrape(t, h); *renders != 3 {
		t.Errorf("an old render: %d renders, want 3", *renders)
	}
}

// TestConcurrentScrapesShareOneRender: scrapes that arrive while a render
// of their snapshot is under way wait for it: one render for all. The
// first render is held until every other scrape waits on it.
func TestConcurrentScrapesShareOneRender(t *testing.T) {
	snap := fixedSnapshot(10, 5)
	h, renders, _ := counted(fixed(snap))
	started, release, waiting := make(chan struct{}), make(chan struct{}), make(chan struct{}, metricsMaxInFlight)
	count := h.renderHook
	h.renderHook = func() {
		count()
		close(started)
		<-release
	}
	h.shareHook = func() { waiting <- struct{}{} }

	bodies := make([]string, metricsMaxInFlight)
	var wg sync.WaitGroup
	get := func(i int) {
		defer wg.Done()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		bodies[i] = rec.Body.String()
	}
	wg.Add(metricsMaxInFlight)
	go get(0)
	<-started
	for i := 1; i < metricsMaxInFlight; i++ {
		go get(i)
	}
	for i := 1; i < metricsMaxInFlight; i++ {
		<-waiting
	}
	close(release)
	wg.Wait()
	if *renders != 1 {
		t.Errorf("%d concurrent scrapes of one snapshot made %d renders", metricsMaxInFlight, *renders)
	}
	for i, b := range bodies {
		if b != bodies[0] || !strings.Contains(b, "phpfpm_up{") {
			t.Errorf("scrape %d got other bytes (%d bytes)", i, len(b))
		}
	}
}

// TestScrapeNegotiation: formats and encodings are those promhttp chooses,
// and the bodies, once decompressed, are promhttp's.
func TestScrapeNegotiation(t *testing.T) {
	snap := oddSnapshot()
	c := NewCollector(fixed(snap), true)
	h := newMetricsHandler(c, nil, versioncollector.NewCollector("fpmguard"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, versioncollector.NewCollector("fpmguard"))
	ref := promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})

	for _, tt := range []struct{ accept, encoding string }{
		{"", ""},
		{"", "gzip"},
		{"*/*", "gzip, deflate, br"},
		{"text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "gzip;q=0.5, identity"},
		{"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "gzip"},
		{"application/openmetrics-text; version=0.0.1; charset=utf-8", ""},
		{"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", "*"},
		{"text/plain;version=1.0.0;escaping=underscores", "gzip;q=0"},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "gzip"},
	} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		if tt.encoding != "" {
			req.Header.Set("Accept-Encoding", tt.encoding)
		}
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		h.ServeHTTP(got, req)
		ref.ServeHTTP(want, req)
		for _, k := range []string{"Content-Type", "Content-Encoding"} {
			if got.Header().Get(k) != want.Header().Get(k) {
				t.Errorf("Accept %q, Accept-Encoding %q: %s %q, promhttp %q", tt.accept, tt.encoding, k, got.Header().Get(k), want.Header().Get(k))
			}
		}
		if g, w := body(t, got), body(t, want); !bytes.Equal(g, w) {
			t.Errorf("Accept %q, Accept-Encoding %q: the body differs from promhttp's:\n%s", tt.accept, tt.encoding, firstDifference(g, w))
		}
	}
}

// TestScrapeNameFilter: name[] selects families, as promhttp does.
func TestScrapeNameFilter(t *testing.T) {
	h := NewMetricsHandler(NewCollector(fixed(fixedSnapshot(2, 3)), true), nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics?name[]=phpfpm_up&name[]=phpfpm_master_up", nil))
	var names []string
	for line := range strings.Lines(rec.Body.String()) {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(name)[0])
		}
	}
	if strings.Join(names, " ") != "phpfpm_master_up phpfpm_up" {
		t.Errorf("name[] filter: families %q", names)
	}
}

// body is a response's body, decompressed.
func body(t *testing.T, rec *httptest.ResponseRecorder) []byte {
	t.Helper()
	if rec.Header().Get("Content-Encoding") != "gzip" {
		return rec.Body.Bytes()
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
