package history

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/fpmguard/fpmguard/supervisor"
)

var (
	t0     = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	target = supervisor.Target{Name: "www", PM: "static", MaxChildren: 4, StatusPath: "/status", PingPath: "/ping"}
)

// report is a pool of workers, each given as state, requests served,
// request duration and PSS in MiB.
func report(accepted uint64, queue int64, workers ...supervisor.ProcessState) *supervisor.PoolReport {
	return &supervisor.PoolReport{Name: "www", Counters: &supervisor.Counters{AcceptedConn: accepted, ListenQueue: queue},
		Master: &supervisor.MasterReport{PID: 1, Alive: true, Config: "/etc/php-fpm.conf", PSSBytes: 8 << 20}, Processes: workers}
}

func worker(pid int, state string, requests uint64, seconds float64, pssMiB uint64) supervisor.ProcessState {
	return supervisor.ProcessState{PID: pid, State: state, Requests: requests, RequestDurationSeconds: seconds, RequestURI: "/index.php",
		PSSBytes: pssMiB << 20, RSSBytes: (pssMiB + 20) << 20}
}

func TestPoolSummary(t *testing.T) {
	h := New()
	// 100 samples a second apart: two workers; one busy on every
	// sample, the other on every other; each finishes a request of 0.3 s
	// between samples.
	for i := range 100 {
		state := "Idle"
		if i%2 == 0 {
			state = "Running"
		}
		h.AddPool(target, report(uint64(10*i), 0,
			worker(10, "Running", uint64(i), 1, 30),
			worker(11, state, uint64(i), 0.3, 30+uint64(i+1)/10)), t0.Add(time.Duration(i)*time.Second))
	}
	s := h.Summary().Pools[0]
	if s.Samples != 100 || s.BusyMax != 2 || s.BusyP50 != 1 || s.BusyP99 != 2 || s.IdleShare != 0 || s.Accepted != 990 {
		t.Errorf("busy: %+v", s)
	}
	// Worker 11 finished a request between the samples where it is idle;
	// a percentile is its bin's bound, never above the slowest.
	if s.Requests != 50 || s.DurationP99Seconds != float64(float32(0.3)) || s.DurationMaxSeconds < 0.299 || s.DurationMaxSeconds > 0.301 {
		t.Errorf("durations: %d requests, p99 %v, max %v", s.Requests, s.DurationP99Seconds, s.DurationMaxSeconds)
	}
	if s.WorkerPSSMaxBytes != 40<<20 || s.MasterPSSMaxBytes != 8<<20 || s.WorkersPSSNowBytes != (30+40)<<20 {
		t.Errorf("memory: %+v", s)
	}
	// Worker 11 grew 9 MiB from request 9 to request 99, its PSS read
	// fresh when idle.
	if len(s.Growth) != 1 || s.GrowthMedian != float64(9<<20)/90 {
		t.Errorf("growth: %+v, median %v", s.Growth, s.GrowthMedian)
	}
}

func TestIdleAndQueue(t *testing.T) {
	h := New()
	for i := range 10 {
		// Only fpmguard's two requests a sample: idle.
		r := report(uint64(2*i), 0, worker(10, "Idle", 0, 0, 20))
		r.ProbeRequests = uint64(2 * i)
		h.AddPool(target, r, t0.Add(time.Duration(i)*time.Second))
	}
	h.AddPool(target, report(100, 3, worker(10, "Running", 1, 0, 20)), t0.Add(10*time.Second))
	s := h.Summary().Pools[0]
	if s.IdleShare < 0.89 || s.IdleShare > 0.91 || s.QueueMax != 3 || s.QueueShare < 0.09 || s.QueueShare > 0.1 {
		t.Errorf("idle %v, queue max %d share %v", s.IdleShare, s.QueueMax, s.QueueShare)
	}
}

func TestWindowIsBounded(t *testing.T) {
	h := New()
	for i := range 3 * Buckets {
		h.AddPool(target, report(0, 0), t0.Add(time.Duration(i)*BucketWidth))
	}
	p := h.pools[target.ID()]
	if len(p.buckets.b) != Buckets || !h.Summary().Pools[0].From.Equal(t0.Add(2*Buckets*BucketWidth)) {
		t.Errorf("%d buckets from %v", len(p.buckets.b), h.Summary().Pools[0].From)
	}
}

// TestMemoryCost measures what a full day of history costs for 100 pools
// of 10 workers: every bucket filled.
func TestMemoryCost(t *testing.T) {
	const pools = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := New()
	workers := make([]supervisor.ProcessState, 10)
	for i := range workers {
		workers[i] = worker(100+i, "Idle", 0, 0, 30)
	}
	for b := range Buckets {
		for p := range pools {
			tp := target
			tp.Name = fmt.Sprintf("pool%03d", p)
			h.AddPool(tp, report(uint64(b), 0, workers...), t0.Add(time.Duration(b)*BucketWidth))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPool := (after.HeapAlloc - before.HeapAlloc) / pools
	t.Logf("a full day of history: %d KiB a pool, %d KiB for %d pools (a bucket is %d bytes)",
		perPool>>10, pools*perPool>>10, pools, unsafe.Sizeof(Bucket{}))
	if perPool > 32<<10 {
		t.Errorf("a pool's day costs %d KiB, want at most 32", perPool>>10)
	}
	runtime.KeepAlive(h)
}

func TestOpcacheSummary(t *testing.T) {
	h := New()
	for i := range 5 {
		h.AddOpcache([]supervisor.OpcacheReport{{MasterPID: 1, Master: "/etc/php-fpm.conf", Enabled: true, Pools: []string{"www"},
			MemoryUsedBytes: int64(10+i) << 20, MemoryWastedBytes: 1 << 20, CachedKeys: int64(100 * i), MaxCachedKeys: 16229,
			OOMRestarts: int64(i / 3), Hits: int64(1000 * i), MemoryConsumptionBytes: 128 << 20}}, t0.Add(time.Duration(i)*5*time.Second))
	}
	o := h.Summary().Opcache[0]
	if o.Samples != 5 || o.UsedWastedMaxBytes != 15<<20 || o.KeysMax != 400 || o.OOMRestarts != 1 || o.Hits != 4000 || o.MemoryConsumptionBytes != 128<<20 {
		t.Errorf("%+v", o)
	}
}

// BenchmarkAddPool is the history's share of a pool-tick: one sample of a
// pool of 10 workers.
func BenchmarkAddPool(b *testing.B) {
	h := New()
	workers := make([]supervisor.ProcessState, 10)
	for i := range workers {
		workers[i] = worker(100+i, "Idle", 0, 0.1, 30)
	}
	r := report(0, 0, workers...)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Counters.AcceptedConn = uint64(i)
		for j := range r.Processes {
			r.Processes[j].Requests = uint64(i)
		}
		h.AddPool(target, r, t0.Add(time.Duration(i)*time.Second))
	}
}

// TestOwnRequestsAreNotLoad: on a pool that serves only fpmguard's own
// requests (status reads, pings, whose URI php-fpm shows as "-", bare
// connects), no request is counted and no duration is kept, whatever
// the workers' last URIs say.
func TestOwnRequestsAreNotLoad(t *testing.T) {
	h := New()
	for i := range 60 {
		n := uint64(i)
		r := report(2*n+1, 0,
			supervisor.ProcessState{PID: 10, State: "Idle", Requests: n, RequestDurationSeconds: 0.00005, RequestURI: "-"},
			supervisor.ProcessState{PID: 11, State: "Idle", Requests: n, RequestDurationSeconds: 0.0001, RequestURI: "/status?json&full"},
			supervisor.ProcessState{PID: 12, State: "Idle", Requests: n, RequestDurationSeconds: 0.0001, RequestURI: "/index.php"})
		r.ProbeRequests = 2*n + 1
		h.AddPool(target, r, t0.Add(time.Duration(i)*time.Second))
	}
	s := h.Summary().Pools[0]
	if s.Accepted != 0 || s.Requests != 0 || s.IdleShare != 1 {
		t.Errorf("fpmguard's own requests counted: %d accepted, %d timed, idle on %v of samples", s.Accepted, s.Requests, s.IdleShare)
	}
}

// TestRemovePool drops a pool no longer watched, and its master's opcache
// with the master's last pool: neither counts for advice any more.
func TestRemovePool(t *testing.T) {
	h := New()
	www := target
	www.MasterConfig = "/etc/php-fpm.conf"
	api := www
	api.Name = "api"
	other := target
	other.Name, other.MasterConfig = "other", "/etc/other.conf"
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Second)
		h.AddPool(www, report(uint64(i), 0, worker(10, "Idle", 1, 0.1, 30)), at)
		h.AddPool(api, report(uint64(i), 0, worker(20, "Running", 1, 0.1, 90)), at)
		r := report(uint64(i), 0, worker(30, "Idle", 1, 0.1, 10))
		r.Master = &supervisor.MasterReport{PID: 2, Alive: true, Config: "/etc/other.conf"}
		h.AddPool(other, r, at)
		h.AddOpcache([]supervisor.OpcacheReport{{MasterPID: 1, Master: "/etc/php-fpm.conf", Enabled: true}, {MasterPID: 2, Master: "/etc/other.conf", Enabled: true}}, at)
	}
	pools := func() (names []string) {
		for _, p := range h.Summary().Pools {
			names = append(names, p.Pool)
		}
		return names
	}
	masters := func() (names []string) {
		for _, o := range h.Summary().Opcache {
			names = append(names, o.Master)
		}
		return names
	}
	h.RemovePool(api)
	h.RemovePool(api) // twice: nothing more
	if got := fmt.Sprint(pools(), masters()); got != "[other www] [/etc/other.conf /etc/php-fpm.conf]" {
		t.Errorf("api removed: pools and opcaches %s", got)
	}
	h.RemovePool(other)
	if got := fmt.Sprint(pools(), masters()); got != "[www] [/etc/php-fpm.conf]" {
		t.Errorf("other removed: pools and opcaches %s", got)
	}
}

// TestOnePoolNameUnderTwoMasters: www of two masters are two windows, each
// with its own samples and master.
func TestOnePoolNameUnderTwoMasters(t *testing.T) {
	h := New()
	a, b := target, target
	a.MasterConfig, b.MasterConfig = "/etc/php/8.2/fpm/php-fpm.conf", "/etc/php/7.4/fpm/php-fpm.conf"
	for i := range 10 {
		h.AddPool(a, report(uint64(10*i), 0, worker(10, "Idle", uint64(i), 0.1, 20)), t0.Add(time.Duration(i)*time.Second))
		if i%2 == 0 {
			h.AddPool(b, report(uint64(i), 0, worker(20, "Idle", uint64(i), 0.1, 20)), t0.Add(time.Duration(i)*time.Second))
		}
	}
	pools := h.Summary().Pools
	if len(pools) != 2 || pools[0].Pool != "www" || pools[1].Pool != "www" {
		t.Fatalf("summaries: %+v", pools)
	}
	samples := map[string]uint64{pools[0].Master: pools[0].Samples, pools[1].Master: pools[1].Samples}
	if samples[a.MasterConfig] != 10 || samples[b.MasterConfig] != 5 {
		t.Errorf("samples by master: %v", samples)
	}
}
