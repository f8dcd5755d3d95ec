package web

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/fpmlog"
	"github.com/fpmguard/fpmguard/opcache"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/waits"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// update rewrites the golden files under testdata: go test -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// fixedSnapshot is a snapshot set by hand, not probed: pools of workers
// each, with one of every interesting thing.
// fixedConf is the master of fixedSnapshot's pools.
const fixedConf = "/etc/php/8.2/fpm/php-fpm.conf"

func fixedSnapshot(pools, workers int) *watch.Snapshot {
	start := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	conf := fixedConf
	s := &watch.Snapshot{
		Time: start,
		Opcache: []supervisor.OpcacheReport{{MasterPID: 100, Master: conf, Pools: []string{"pool0"}, Enabled: true, CacheFull: true,
			MemoryUsedBytes: 8 << 20, MemoryFreeBytes: 1 << 10, MemoryWastedBytes: 0, CachedScripts: 222, CachedKeys: 223, MaxCachedKeys: 223,
			Hits: 1000, Misses: 400, OOMRestarts: 1, HashRestarts: 2, ManualRestarts: 3, InternedStringsUsedBytes: 1 << 20, InternedStringsBufferBytes: 8 << 20,
			JITBufferFreeBytes: 0, Health: supervisor.HealthDegraded}},
		Actions:        map[watch.ActionKey]uint64{{Pool: supervisor.PoolID{Pool: "pool0", Master: conf}, Action: watch.ActionKill, Result: watch.ResultOK}: 1},
		Exits:          map[watch.ExitKey]uint64{},
		MasterRestarts: map[string]uint64{conf: 0},
		Self:           watch.Self{Interval: time.Second},
	}
	for i := range pools {
		name := fmt.Sprintf("pool%d", i)
		for _, c := range fpmlog.Causes {
			s.Exits[watch.ExitKey{Pool: supervisor.PoolID{Pool: name, Master: conf}, Cause: c}] = map[fpmlog.Cause]uint64{fpmlog.CauseOOMKill: 2, fpmlog.CauseMaxRequests: 40}[c]
		}
		r := &supervisor.PoolReport{
			Name: name, MasterName: conf, Address: "unix:///run/php/" + name + ".sock",
			Heartbeat: supervisor.Heartbeat{OK: true, LatencySeconds: 0.0003},
			Status:    supervisor.StatusRead{OK: true, Via: "status_listen"},
			Master:    &supervisor.MasterReport{PID: 100, Alive: true, Config: conf},
			Counters: &supervisor.Counters{ProcessManager: "static", StartTime: start, StartSinceSeconds: 3600, AcceptedConn: 1234, MaxListenQueue: 2,
				ListenQueueLen: 0, MaxActiveProcesses: 7, MaxChildrenReached: 3, SlowRequests: 5},
			SocketQueue: &supervisor.SocketQueue{Length: 1, Max: 511},
			Config:      supervisor.PoolLimits{PM: "static", MaxChildren: workers, MinWorkers: workers},
		}
		for j := range workers {
			p := supervisor.ProcessState{PID: 1000*i + j + 101, State: "Idle", OSState: supervisor.OSSleeping, ParentOK: true, RequestMethod: "-", RequestURI: "-",
				Requests: uint64(10 + j), LastRequestCPU: 12.5, LastRequestMemory: 2 << 20, CPUSeconds: 1.5, RSSBytes: 30 << 20, PSSBytes: 12 << 20}
			switch j {
			case 0:
				p.State, p.RequestDurationSeconds, p.RequestMethod, p.RequestURI, p.Hung, p.HungKind = "Running", 45.2, "GET", "/report.php", true, supervisor.HungBlocked
				p.Wait = &waits.Wait{PID: p.PID, Kind: waits.KindNetRead, FD: 7, Peer: &waits.Peer{Transport: waits.TransportTCP,
					Remote: netip.MustParseAddrPort("10.0.0.5:3306"), Service: waits.ServiceMySQL}}
			case 1:
				p.State, p.RequestDurationSeconds, p.OSState, p.RequestMethod, p.RequestURI = "Running", 0.5, supervisor.OSRunning, "POST", "/api"
			}
			r.Processes = append(r.Processes, p)
		}
		supervisor.Mark(r, supervisor.Thresholds{})
		supervisor.Judge(r, nil, supervisor.Thresholds{})
		s.Pools = append(s.Pools, watch.PoolView{
			Report: r, LastProbe: start, ScrapeURI: "unix:///run/php/" + name + "-status.sock;/status",
			// One good heartbeat of 0.3 ms, one that timed out after 2 s
			// while the status page failed.
			Stats: watch.PoolStats{Heartbeats: 2, HeartbeatSumSeconds: 2.0003, Buckets: []uint64{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2},
				Failures: map[fastcgi.Reason]uint64{fastcgi.ReasonTimeout: 1}, ScrapeFailures: 1},
		})
	}
	return s
}

// fixed is a snapshot source for the collector.
func fixed(s *watch.Snapshot) func() *watch.Snapshot { return func() *watch.Snapshot { return s } }

func TestCollectorLintAndGolden(t *testing.T) {
	c := NewCollector(fixed(fixedSnapshot(1, 3)), true)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	fpmtest.Golden(t, "metrics.golden", buf.Bytes(), *update)
}

// TestMasterUpStaysWhenTheMasterStops: a master once seen reads 0 when it
// is gone, instead of vanishing, so an alert on master_up == 0 fires.
func TestMasterUpStaysWhenTheMasterStops(t *testing.T) {
	snap := fixedSnapshot(1, 2)
	c := NewCollector(fixed(snap), false)
	master := `master="/etc/php/8.2/fpm/php-fpm.conf"`
	out := scrape(t, NewMetricsHandler(c, nil))
	if metricValue(t, out, "phpfpm_master_up", master) != 1 {
		t.Fatal("master_up is not 1 while the master runs")
	}
	snap.Pools[0].Report.Master = &supervisor.MasterReport{Config: "/etc/php/8.2/fpm/php-fpm.conf", Error: "reading php-fpm pid file: no such file"}
	out = scrape(t, NewMetricsHandler(c, nil))
	if metricValue(t, out, "phpfpm_master_up", master) != 0 {
		t.Error("master_up is not 0 after the master stopped")
	}
}

// TestNoProcessMetrics: the per-worker series go away, the pool ones stay.
func TestNoProcessMetrics(t *testing.T) {
	snap := fixedSnapshot(1, 3)
	n := testutil.CollectAndCount(NewCollector(fixed(snap), false), "phpfpm_process_requests", "phpfpm_process_cpu_seconds_total")
	if n != 0 {
		t.Errorf("%d per-worker series with --no-process-metrics", n)
	}
	if n := testutil.CollectAndCount(NewCollector(fixed(snap), false), "phpfpm_total_processes"); n != 1 {
		t.Errorf("phpfpm_total_processes: %d series", n)
	}
}

// scrape returns the exposition of a metrics handler.
func scrape(t testing.TB, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// metricValue finds the value of the series with all the given labels.
func metricValue(t *testing.T, exposition, name string, labels ...string) float64 {
	t.Helper()
	line, ok := findSeries(exposition, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v in the exposition", name, labels)
	}
	v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// hasSeries reports whether the exposition holds a series of name with
// every label given.
func hasSeries(exposition, name string, labels ...string) bool {
	_, ok := findSeries(exposition, name, labels...)
	return ok
}

// findSeries finds the line of the first series of name with every label
// given.
func findSeries(exposition, name string, labels ...string) (string, bool) {
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if all {
			return line, true
		}
	}
	return "", false
}

// TestMetricsMatchPHPFPM: against a real php-fpm, /metrics says what the
// status page and the opcache script say when read right after.
func TestMetricsMatchPHPFPM(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}}, Files: map[string]string{"a.php": "<?php echo 1;"}})
	if err := fpm.Request(context.Background(), "a.php", "x=1"); err != nil {
		t.Fatal(err)
	}
	ts, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	tg := ts[0]
	// No heartbeat: nothing goes through the main socket after the status
	// read, which goes through the status listener.
	tg.PingPath = ""
	dir := fpmtest.Dir(t)
	// A timeout far above what a read takes on a loaded runner: a failed
	// read would change what /metrics says.
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 30 * time.Second, Probe: true}, Procs: supervisor.SystemProcs}
	pr.Opcache = &supervisor.OpcacheProber{Client: pr.Client, Dir: filepath.Join(dir, "oc")}
	first := time.Now()
	r := pr.Probe(context.Background(), tg, nil)
	pools := []supervisor.PoolReport{r}
	pr.Opcache.Probe(context.Background(), []supervisor.Target{tg}, pools, nil)
	snap := &watch.Snapshot{Pools: []watch.PoolView{{Report: &r, LastProbe: time.Now(), ScrapeURI: tg.StatusVia().String() + ";" + tg.StatusPath}},
		Opcache: pr.Opcache.Probe(context.Background(), []supervisor.Target{tg}, pools, nil)} // the script is cached now
	out := scrape(t, NewMetricsHandler(NewCollector(fixed(snap), true), nil))

	st, err := pr.Client.Status(context.Background(), tg.StatusVia(), tg.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	between := time.Since(first) // the two reads of the status page are at most this far apart
	pool := `pool="www"`
	// What fpmguard connected to the main socket between the two reads is
	// what php-fpm counted since: nothing.
	since := fastcgi.RequestsSent(tg.Address) - r.ProbeRequests
	if since != 0 || metricValue(t, out, "fpmguard_probe_requests_total", pool) != float64(r.ProbeRequests) {
		t.Errorf("%d connections to the main socket after the status read, want none; probe_requests_total %v, the report's %d",
			since, metricValue(t, out, "fpmguard_probe_requests_total", pool), r.ProbeRequests)
	}
	served := uint64(0)
	for i, p := range st.Processes {
		child := fmt.Sprintf(`child="%d"`, i)
		served += p.Requests - uint64(metricValue(t, out, "phpfpm_process_requests", pool, child))
	}
	if served != since {
		t.Errorf("the workers served %d requests between the reads, fpmguard made %d connections", served, since)
	}
	for _, tt := range []struct {
		name string
		want float64
	}{
		{"phpfpm_accepted_connections", float64(st.AcceptedConn - since)},
		{"phpfpm_total_processes", float64(len(st.Processes))},
		{"phpfpm_listen_queue", float64(st.ListenQueue)},
		{"phpfpm_max_listen_queue", float64(st.MaxListenQueue)},
		{"phpfpm_listen_queue_length", float64(st.ListenQueueLen)},
		{"phpfpm_max_active_processes", float64(st.MaxActiveProcesses)},
		{"phpfpm_max_children_reached", float64(st.MaxChildrenReached)},
		{"phpfpm_slow_requests", float64(st.SlowRequests)},
		{"phpfpm_max_children", 3},
		{"phpfpm_up", 1},
	} {
		if got := metricValue(t, out, tt.name, pool); got != tt.want {
			t.Errorf("%s = %v, the status page says %v", tt.name, got, tt.want)
		}
	}
	// Whole seconds since the start, read at most `between` apart: they
	// differ by the seconds that passed between the reads, rounded either way.
	if d := metricValue(t, out, "phpfpm_start_since", pool) - float64(st.StartSince); d < -math.Floor(between.Seconds())-1 || d > 0 {
		t.Errorf("start_since off by %v, for reads %v apart", d, between)
	}

	oc, err := opcache.Client{FastCGI: pr.Client, Script: snap.Opcache[0].Script}.Read(context.Background(), tg.StatusVia())
	if err != nil {
		t.Fatal(err)
	}
	master := `master="` + fpm.Conf + `"`
	for _, tt := range []struct {
		name string
		want int64
	}{
		{"phpfpm_opcache_memory_used_bytes", oc.MemoryUsed},
		{"phpfpm_opcache_memory_free_bytes", oc.MemoryFree},
		{"phpfpm_opcache_memory_wasted_bytes", oc.MemoryWasted},
		{"phpfpm_opcache_cached_scripts", oc.CachedScripts},
		{"phpfpm_opcache_cached_keys", oc.CachedKeys},
		{"phpfpm_opcache_max_cached_keys", oc.MaxCachedKeys},
		{"phpfpm_opcache_interned_strings_buffer_bytes", oc.InternedSize},
	} {
		if got := metricValue(t, out, tt.name, master); got != float64(tt.want) {
			t.Errorf("%s = %v, the opcache script says %d", tt.name, got, tt.want)
		}
	}
	// The read for this comparison is one more lookup: a hit, or a miss
	// while the new script is younger than opcache.file_update_protection.
	lookups := metricValue(t, out, "phpfpm_opcache_hits_total", master) + metricValue(t, out, "phpfpm_opcache_misses_total", master)
	if lookups+1 != float64(oc.Hits+oc.Misses) {
		t.Errorf("hits + misses = %v, the opcache script says %d before its own lookup", lookups, oc.Hits+oc.Misses-1)
	}
	if metricValue(t, out, "phpfpm_opcache_up", master) != 1 || metricValue(t, out, "fpmguard_build_info") != 1 {
		t.Error("opcache_up or build info missing")
	}
}

// TestMetricsWhileEveryWorkerHangs: a scrape reads memory only, so it
// answers while php-fpm does not: while a probe waits on a pool whose every
// worker hangs, scrapes answer, and that same probe is still in flight
// after them. No figure of time decides it.
func TestMetricsWhileEveryWorkerHangs(t *testing.T) {
	// Each request marks that a worker has taken it, then holds the worker
	// until the test ends, whose cleanup cancels it and stops php-fpm.
	started := fpmtest.Dir(t)
	if err := os.Chmod(started, 0o777); err != nil {
		t.Fatal(err)
	}
	hang := fmt.Sprintf(`<?php touch('%s/' . getmypid()); sleep(600);`, started)
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}, Files: map[string]string{"hang.php": hang}})
	fpm.Background(t, 2, "hang.php", "")
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		ents, _ := os.ReadDir(started)
		return len(ents), len(ents) == 2
	})
	// Both workers hang: every probe from now on waits for one, through the
	// pool's busy main socket, and with an hour's timeout the first probe
	// is in flight until the test ends.
	w := watching(t, fpm, time.Hour, nil)
	srv := httptest.NewServer(NewHTTPHandler(func() Source { return w }, NewMetricsHandler(NewCollector(w.Snapshot, true), nil), "/metrics"))
	defer srv.Close()
	// A scrape that waited for the probe would wait until the test ends:
	// the client's timeout only keeps such a failure from hanging the test.
	hc := &http.Client{Timeout: 30 * time.Second}
	for range 5 {
		resp, err := hc.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatalf("/metrics while php-fpm hangs: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/metrics: %d while php-fpm hangs", resp.StatusCode)
		}
		if w.Snapshot().Pools[0].Probed() {
			t.Fatal("the first probe ended: php-fpm did not hang")
		}
	}
}

// TestSocketListenQueue: requests waiting on a saturated unix-socket pool
// show in the kernel's count, which php-fpm's status page leaves at 0.
func TestSocketListenQueue(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1, StatusListen: true}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
	// A timeout far above what a read takes: a failed read would change
	// the verdict. No ping: it would wait in the queue too.
	w := watching(t, fpm, 30*time.Second, func(t *supervisor.Target) { t.PingPath = "" })
	// The requests hold the worker and the queue until the test ends, so the
	// queue never shrinks between the reads below.
	fpm.Background(t, 4, "sleep.php", "ms=600000")
	var r *supervisor.PoolReport
	var out string
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		snap := w.Snapshot()
		r = snap.Pools[0].Report
		out = scrape(t, NewMetricsHandler(NewCollector(fixed(snap), true), nil))
		line, ok := findSeries(out, "phpfpm_socket_listen_queue", `pool="www"`)
		return fmt.Sprintf("%q (pool %s %q)", line, r.Health, r.Reasons), ok && strings.HasSuffix(line, " 3")
	})
	if got := metricValue(t, out, "phpfpm_listen_queue", `pool="www"`); got != 0 {
		t.Logf("php-fpm's own listen_queue is %v", got)
	}
	if metricValue(t, out, "phpfpm_socket_listen_queue_max", `pool="www"`) <= 0 {
		t.Error("no backlog size")
	}
	if r.Health != supervisor.HealthDegraded || !strings.Contains(strings.Join(r.Reasons, "\n"), "listen queue 3") {
		t.Errorf("verdict %s %q", r.Health, r.Reasons)
	}
	n := 0
	for _, e := range w.Events().Recent(0) {
		if e.Kind == event.KindListenQueue {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d listen queue events", n)
	}
}

// TestNoURIOrPIDInLabels: with requests in flight whose URIs carry tokens,
// no label value holds a URI, a query or a pid.
func TestNoURIOrPIDInLabels(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
	fpm.Background(t, 1, "sleep.php", "ms=600000&token=s3cr3t")
	w := watching(t, fpm, 30*time.Second, nil)
	snap := fpmtest.Poll(t, 30*time.Second, func() (*watch.Snapshot, bool) {
		snap := w.Snapshot()
		busy, _ := snap.Pools[0].Report.Busy()
		return snap, busy == 1
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(fixed(snap), true))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]bool{strconv.Itoa(fpm.MasterPID()): true}
	for _, pid := range fpm.WorkerPIDs("www") {
		pids[strconv.Itoa(pid)] = true
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if strings.Contains(v, "sleep.php") || strings.Contains(v, "s3cr3t") || strings.Contains(v, "?") || pids[v] {
					t.Errorf("%s{%s=%q} holds a URI or a pid", f.GetName(), l.GetName(), v)
				}
			}
		}
	}
}

// watching runs a watcher of the test master's first pool, probing every
// 200 ms with the given timeout, until the test ends. edit may change the
// target first.
func watching(t *testing.T, fpm *fpmtest.FPM, timeout time.Duration, edit func(*supervisor.Target)) *watch.Watcher {
	t.Helper()
	ts, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil || len(ts) == 0 {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&ts[0])
	}
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: timeout}, Procs: supervisor.SystemProcs}
	w := watch.New(pr, ts[:1], watch.Config{Interval: 200 * time.Millisecond}, event.NewLog(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// TestNoValueNotMeasured: a pool not probed yet has its verdict, unknown,
// its configured max_children and its counters at 0, and no gauge; a pool
// without ping.path or pm.status_path has no heartbeat or status gauge,
// and an opcache not read has no series at all. None of them reads as down.
func TestNoValueNotMeasured(t *testing.T) {
	dir := fpmtest.Dir(t)
	waiting, err := supervisor.ParsePoolSpec("unix://" + dir + "/waiting.sock,name=waiting,pm=static,pm.max_children=4")
	if err != nil {
		t.Fatal(err)
	}
	// The watcher's own view of a pool whose first probe has not come.
	w := watch.New(&supervisor.Prober{Procs: supervisor.SystemProcs}, []supervisor.Target{waiting}, watch.Config{FirstProbeAfter: time.Hour}, event.NewLog(nil))
	snap := w.Snapshot()
	if r := snap.Pools[0].Report; r.Health != supervisor.HealthUnknown || r.Heartbeat.Failed() || r.Status.Failed() {
		t.Errorf("a pool not probed yet: %s, heartbeat failed %v, status failed %v", r.Health, r.Heartbeat.Failed(), r.Status.Failed())
	}
	stock := fixedSnapshot(1, 2).Pools[0]
	stock.Stats = watch.PoolStats{}
	stock.Report = &supervisor.PoolReport{Name: "stock", Heartbeat: supervisor.Heartbeat{Skipped: true}, Status: supervisor.StatusRead{Skipped: true},
		Connect: &supervisor.Connect{OK: true}, Processes: []supervisor.ProcessState{}}
	supervisor.Judge(stock.Report, nil, supervisor.Thresholds{})
	snap.Pools = append(snap.Pools, stock)
	snap.Opcache = []supervisor.OpcacheReport{{MasterPID: 7, Master: "/etc/unread.conf", Health: supervisor.HealthUnknown, Inconclusive: "the opcache was not read"}}
	out := scrape(t, NewMetricsHandler(NewCollector(fixed(snap), true), nil))

	for _, pool := range []string{"waiting", "stock"} {
		label := `pool="` + pool + `"`
		if metricValue(t, out, "phpfpm_pool_health", label, `health="unknown"`) != 1 {
			t.Errorf("pool %s: health is not unknown", pool)
		}
		for _, name := range []string{"phpfpm_heartbeat_up", "phpfpm_up", "phpfpm_hung_processes", "phpfpm_os_state_processes", "phpfpm_total_processes"} {
			if hasSeries(out, name, label) {
				t.Errorf("pool %s: %s, which was never measured", pool, name)
			}
		}
		if metricValue(t, out, "phpfpm_heartbeat_failures_total", label, `reason="timeout"`) != 0 {
			t.Errorf("pool %s: failures counted", pool)
		}
	}
	if metricValue(t, out, "phpfpm_max_children", `pool="waiting"`) != 4 {
		t.Error("the configured max_children is known before a probe")
	}
	if hasSeries(out, "phpfpm_opcache_up", `master="/etc/unread.conf"`) {
		t.Error("an opcache not read has series")
	}
}
