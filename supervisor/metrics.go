package supervisor

import (
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Collector renders the watcher's latest snapshot as Prometheus metrics.
// Every Desc is built once; a scrape only reads memory, so it never waits
// on php-fpm.
type Collector struct {
	current        func() *Watcher
	processMetrics bool

	// Status-page metrics under the names of the established exporter
	// (hipages/php-fpm_exporter, and php-fpm's own ?openmetrics).
	up, scrapeFailures, startSince, acceptedConn, listenQueue, maxListenQueue, listenQueueLen *prometheus.Desc
	idle, active, total, maxActive, maxChildrenReached, slowRequests                          *prometheus.Desc
	procRequests, procLastMemory, procLastCPU, procDuration, procState                        *prometheus.Desc

	// fpmguard's own.
	heartbeatUp, heartbeatDuration, heartbeatFailures            *prometheus.Desc
	poolHealth, hung, osState                                    *prometheus.Desc
	procCPU, procRSS, procPSS                                    *prometheus.Desc
	maxChildren, socketQueue, socketQueueMax                     *prometheus.Desc
	actions, masterUp, masterRestarts                            *prometheus.Desc
	ocUp, ocEnabled, ocUsed, ocFree, ocWasted, ocFull, ocPending *prometheus.Desc
	ocScripts, ocKeys, ocMaxKeys, ocHits, ocMisses, ocRestarts   *prometheus.Desc
	ocInternedUsed, ocInternedSize, ocJITFree                    *prometheus.Desc
	nginxErrors                                                  *prometheus.Desc
	heartbeatInconclusive                                        *prometheus.Desc
	// fpmguard's own lag, so an operator can raise its CPU limit.
	selfLag, cpuPeriods, cpuThrottled, cpuThrottledTime, probeInterval *prometheus.Desc
}

// The label values fpmguard always emits, so each series exists from the
// first scrape on.
var (
	heartbeatReasons = []string{"refused", "permission", "backlog", "reset", "timeout", "bad_response"}
	healths          = []Health{HealthOK, HealthDegraded, HealthUnhealthy, HealthDown}
	osStates         = []OSState{OSRunning, OSSleeping, OSDiskSleep, OSStopped, OSZombie}
)

// NewCollector builds the collector of the watcher current returns.
// processMetrics false leaves out the per-worker series, for large pools.
func NewCollector(current func() *Watcher, processMetrics bool) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("phpfpm_"+name, help, labels, nil)
	}
	self := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("fpmguard_"+name, help, nil, nil)
	}
	pool := []string{"pool", "scrape_uri"}
	child := []string{"pool", "child", "scrape_uri"}
	return &Collector{
		current: current, processMetrics: processMetrics,

		up:                 d("up", "Could PHP-FPM be reached? 1 when the status page was read.", pool...),
		scrapeFailures:     d("scrape_failures", "The number of failures scraping from PHP-FPM.", pool...),
		startSince:         d("start_since", "The number of seconds since FPM has started.", pool...),
		acceptedConn:       d("accepted_connections", "The number of requests accepted by the pool.", pool...),
		listenQueue:        d("listen_queue", "The number of requests in the queue of pending connections (php-fpm fills it for TCP listeners only).", pool...),
		maxListenQueue:     d("max_listen_queue", "The maximum number of requests in the queue of pending connections since FPM has started.", pool...),
		listenQueueLen:     d("listen_queue_length", "The size of the socket queue of pending connections.", pool...),
		idle:               d("idle_processes", "The number of idle processes.", pool...),
		active:             d("active_processes", "The number of active processes.", pool...),
		total:              d("total_processes", "The number of idle + active processes.", pool...),
		maxActive:          d("max_active_processes", "The maximum number of active processes since FPM has started.", pool...),
		maxChildrenReached: d("max_children_reached", "The number of times, the process limit has been reached, when pm tries to start more children (works only for pm 'dynamic' and 'ondemand').", pool...),
		slowRequests:       d("slow_requests", "The number of requests that exceeded your 'request_slowlog_timeout' value.", pool...),
		procRequests:       d("process_requests", "The number of requests the process has served.", child...),
		procLastMemory:     d("process_last_request_memory", "The max amount of memory the last request consumed.", child...),
		procLastCPU:        d("process_last_request_cpu", "The %cpu the last request consumed.", child...),
		procDuration:       d("process_request_duration", "The duration in microseconds of the requests.", child...),
		procState:          d("process_state", "The state of the process (Idle, Running, ...).", "pool", "child", "state", "scrape_uri"),

		heartbeatUp:       d("heartbeat_up", "1 when the last heartbeat through the pool's main socket (the one nginx uses) succeeded.", "pool"),
		heartbeatDuration: d("heartbeat_duration_seconds", "Round trip of the heartbeat through a worker.", "pool"),
		heartbeatFailures: d("heartbeat_failures_total", "Failed heartbeats by reason: refused, permission, backlog, reset, timeout, bad_response.", "pool", "reason"),
		poolHealth:        d("pool_health", "1 for the pool's current verdict: ok, degraded, unhealthy or down.", "pool", "health"),
		hung:              d("hung_processes", "Workers whose request is older than --hung-after, by what they did over the last interval.", "pool", "kind"),
		osState:           d("os_state_processes", "Workers by the kernel's process state.", "pool", "os_state"),
		procCPU:           d("process_cpu_seconds_total", "CPU time the worker used, user and system.", "pool", "child"),
		procRSS:           d("process_resident_memory_bytes", "Resident memory of the worker; counts the shared opcache again in every worker.", "pool", "child"),
		procPSS:           d("process_proportional_memory_bytes", "Proportional memory of the worker: shared pages divided among their sharers.", "pool", "child"),
		maxChildren:       d("max_children", "pm.max_children of the pool, when its config is known.", "pool"),
		socketQueue:       d("socket_listen_queue", "Connections waiting on the pool's listen socket, as the kernel counts them (ss Recv-Q).", "pool"),
		socketQueueMax:    d("socket_listen_queue_max", "Size of the pool's listen backlog, as the kernel counts it (ss Send-Q); when full, nginx answers 502.", "pool"),
		actions:           d("actions_total", "Actions fpmguard took or declined, by action and result.", "pool", "action", "result"),
		masterUp:          d("master_up", "1 when the php-fpm master is alive.", "master"),
		masterRestarts:    d("master_restarts_total", "Times a new master pid appeared under this master's name.", "master"),

		ocUp:           d("opcache_up", "1 when the opcache status was read.", "master"),
		ocEnabled:      d("opcache_enabled", "1 when the opcache is enabled.", "master"),
		ocUsed:         d("opcache_memory_used_bytes", "Opcache shared memory in use.", "master"),
		ocFree:         d("opcache_memory_free_bytes", "Opcache shared memory free.", "master"),
		ocWasted:       d("opcache_memory_wasted_bytes", "Opcache shared memory wasted by invalidated scripts.", "master"),
		ocFull:         d("opcache_cache_full", "1 when the opcache is full.", "master"),
		ocPending:      d("opcache_restart_pending", "1 when an opcache restart is pending.", "master"),
		ocScripts:      d("opcache_cached_scripts", "Scripts in the opcache.", "master"),
		ocKeys:         d("opcache_cached_keys", "Keys in the opcache hash table.", "master"),
		ocMaxKeys:      d("opcache_max_cached_keys", "Size of the opcache hash table.", "master"),
		ocHits:         d("opcache_hits_total", "Opcache hits.", "master"),
		ocMisses:       d("opcache_misses_total", "Opcache misses.", "master"),
		ocRestarts:     d("opcache_restarts_total", "Opcache restarts by reason: oom, hash, manual.", "master", "reason"),
		ocInternedUsed: d("opcache_interned_strings_used_bytes", "Interned strings buffer in use.", "master"),
		ocInternedSize: d("opcache_interned_strings_buffer_bytes", "Size of the interned strings buffer.", "master"),
		ocJITFree:      d("opcache_jit_buffer_free_bytes", "JIT buffer free.", "master"),

		nginxErrors: d("nginx_upstream_errors_total", "Upstream failures nginx logged for the pool, by the status it answered and the cause.", "pool", "status", "cause"),

		heartbeatInconclusive: d("heartbeat_inconclusive_total", "Heartbeats that proved nothing: they timed out or answered late while fpmguard itself was starved of CPU.", "pool"),
		selfLag:               self("lag_seconds_total", "Time fpmguard's own timers fired late: time it wanted a CPU and had none."),
		cpuPeriods:            self("cpu_periods_total", "CFS enforcement periods of fpmguard's cgroup since fpmguard started."),
		cpuThrottled:          self("cpu_throttled_periods_total", "Periods in which fpmguard's cgroup ran out of CPU quota since fpmguard started."),
		cpuThrottledTime:      self("cpu_throttled_seconds_total", "Time fpmguard's cgroup was throttled since fpmguard started."),
		probeInterval:         self("probe_interval_seconds", "The interval between probes of a pool now: longer than --interval while fpmguard is starved of CPU."),
	}
}

// Describe sends every Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.up, c.scrapeFailures, c.startSince, c.acceptedConn, c.listenQueue, c.maxListenQueue, c.listenQueueLen,
		c.idle, c.active, c.total, c.maxActive, c.maxChildrenReached, c.slowRequests,
		c.procRequests, c.procLastMemory, c.procLastCPU, c.procDuration, c.procState,
		c.heartbeatUp, c.heartbeatDuration, c.heartbeatFailures, c.poolHealth, c.hung, c.osState,
		c.procCPU, c.procRSS, c.procPSS, c.maxChildren, c.socketQueue, c.socketQueueMax,
		c.actions, c.masterUp, c.masterRestarts,
		c.ocUp, c.ocEnabled, c.ocUsed, c.ocFree, c.ocWasted, c.ocFull, c.ocPending,
		c.ocScripts, c.ocKeys, c.ocMaxKeys, c.ocHits, c.ocMisses, c.ocRestarts,
		c.ocInternedUsed, c.ocInternedSize, c.ocJITFree, c.nginxErrors,
		c.heartbeatInconclusive, c.selfLag, c.cpuPeriods, c.cpuThrottled, c.cpuThrottledTime, c.probeInterval,
	} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect emits the latest snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	w := c.current()
	if w == nil {
		return
	}
	snap := w.Snapshot()
	stats := w.stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// The established exporter types its counts as counters without the
	// _total suffix; untyped keeps their names, which dashboards query,
	// without breaking the naming rule for counters.
	untyped := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.UntypedValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	masters := map[string]bool{}
	// Emitting in label order spares the registry most of its sorting.
	order := make([]int, len(snap.Pools))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return snap.Pools[order[a]].Name < snap.Pools[order[b]].Name })
	for _, i := range order {
		p := &snap.Pools[i]
		st := stats[i]
		uri := w.pools[i].target.StatusVia().String() + ";" + w.pools[i].target.StatusPath
		c.collectStatus(p, st, uri, gauge, untyped)
		c.collectPool(p, st, gauge, counter, ch)
		if p.Master != nil {
			name := p.masterName()
			// Up unless known dead: a master fpmguard cannot read is not
			// reported down on a guess.
			masters[name] = masters[name] || !p.Master.Gone()
		}
	}
	// A master seen once stays in the metrics: a stopped one reads 0, so an
	// alert on master_up == 0 can fire.
	restarts := w.masterRestarts()
	for name := range restarts {
		if _, ok := masters[name]; !ok {
			masters[name] = false
		}
	}
	for name, alive := range masters {
		gauge(c.masterUp, b2f(alive), name)
		counter(c.masterRestarts, float64(restarts[name]), name)
	}
	for k, v := range w.Actor().Counts() {
		counter(c.actions, float64(v), k.Pool, k.Action, k.Result)
	}
	for _, o := range snap.Opcache {
		c.collectOpcache(o, gauge, counter)
	}
	for k, v := range w.nginxCounts() {
		counter(c.nginxErrors, float64(v), k.Pool, strconv.Itoa(k.Status), k.Cause)
	}
	self := w.prober.Lag
	counter(c.selfLag, self.LateTotal().Seconds())
	th := self.Throttling()
	counter(c.cpuPeriods, float64(th.Periods))
	counter(c.cpuThrottled, float64(th.Throttled))
	counter(c.cpuThrottledTime, th.Time.Seconds())
	gauge(c.probeInterval, w.pace.Interval().Seconds())
}

type emit func(d *prometheus.Desc, v float64, labels ...string)

// collectStatus emits the status page under the established names; count
// is how their counts are typed.
func (c *Collector) collectStatus(p *PoolReport, st poolStats, uri string, gauge, counter emit) {
	counter(c.scrapeFailures, float64(st.scrapeFailures), p.Name, uri)
	gauge(c.up, b2f(p.Status.OK), p.Name, uri)
	cn := p.Counters
	if !p.Status.OK || cn == nil {
		return
	}
	counter(c.startSince, float64(cn.StartSinceSeconds), p.Name, uri)
	counter(c.acceptedConn, float64(cn.AcceptedConn), p.Name, uri)
	gauge(c.listenQueue, float64(cn.ListenQueue), p.Name, uri)
	counter(c.maxListenQueue, float64(cn.MaxListenQueue), p.Name, uri)
	gauge(c.listenQueueLen, float64(cn.ListenQueueLen), p.Name, uri)
	// php-fpm's own counts can disagree with its process list ("max active
	// processes" can be nonsense); the list is what the page shows.
	active := 0
	for _, w := range p.Processes {
		if w.State != "Idle" {
			active++
		}
	}
	gauge(c.idle, float64(len(p.Processes)-active), p.Name, uri)
	gauge(c.active, float64(active), p.Name, uri)
	gauge(c.total, float64(len(p.Processes)), p.Name, uri)
	counter(c.maxActive, float64(cn.MaxActiveProcesses), p.Name, uri)
	counter(c.maxChildrenReached, float64(cn.MaxChildrenReached), p.Name, uri)
	counter(c.slowRequests, float64(cn.SlowRequests), p.Name, uri)
	if !c.processMetrics {
		return
	}
	for _, i := range childOrder(len(p.Processes)) {
		// child is the worker's place on the status page, as the
		// established exporter names it: never its pid.
		w, child := p.Processes[i], strconv.Itoa(i)
		counter(c.procRequests, float64(w.Requests), p.Name, child, uri)
		gauge(c.procLastMemory, float64(w.LastRequestMemory), p.Name, child, uri)
		gauge(c.procLastCPU, w.LastRequestCPU, p.Name, child, uri)
		gauge(c.procDuration, float64((time.Duration(w.RequestDuration * float64(time.Second))).Microseconds()), p.Name, child, uri)
		// Only the current state: the other states' zeros add nothing to
		// sum by (state) and cost five series per worker.
		gauge(c.procState, 1, p.Name, child, w.State, uri)
	}
}

// collectPool emits fpmguard's own pool metrics.
func (c *Collector) collectPool(p *PoolReport, st poolStats, gauge, counter emit, ch chan<- prometheus.Metric) {
	gauge(c.heartbeatUp, b2f(p.Heartbeat.Up()), p.Name)
	counter(c.heartbeatInconclusive, float64(st.inconclusive), p.Name)
	if st.heartbeats > 0 {
		buckets := make(map[float64]uint64, len(HeartbeatBuckets))
		for i, b := range HeartbeatBuckets {
			buckets[b] = st.buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.heartbeatDuration, st.heartbeats, st.heartbeatSum, buckets, p.Name)
	}
	for _, r := range heartbeatReasons {
		counter(c.heartbeatFailures, float64(st.failures[r]), p.Name, r)
	}
	for _, h := range healths {
		gauge(c.poolHealth, b2f(p.Health == h), p.Name, string(h))
	}
	hung := map[string]int{"blocked": 0, "spinning": 0}
	states := map[OSState]int{}
	for _, w := range p.Processes {
		if w.Hung && w.HungKind != "" {
			hung[w.HungKind]++
		}
		states[w.OSState]++
	}
	for _, kind := range []string{"blocked", "spinning"} {
		gauge(c.hung, float64(hung[kind]), p.Name, kind)
	}
	for _, s := range osStates {
		gauge(c.osState, float64(states[s]), p.Name, string(s))
	}
	if p.Config.MaxChildren > 0 {
		gauge(c.maxChildren, float64(p.Config.MaxChildren), p.Name)
	}
	if q := p.SocketQueue; q != nil {
		gauge(c.socketQueue, float64(q.Length), p.Name)
		gauge(c.socketQueueMax, float64(q.Max), p.Name)
	}
	if !c.processMetrics {
		return
	}
	for _, i := range childOrder(len(p.Processes)) {
		w, child := p.Processes[i], strconv.Itoa(i)
		counter(c.procCPU, w.CPUSeconds, p.Name, child)
		gauge(c.procRSS, float64(w.RSSBytes), p.Name, child)
		if w.PSSBytes > 0 {
			gauge(c.procPSS, float64(w.PSSBytes), p.Name, child)
		}
	}
}

func (c *Collector) collectOpcache(o OpcacheReport, gauge, counter emit) {
	m := o.Master
	gauge(c.ocUp, b2f(o.Error == ""), m)
	if o.Error != "" {
		return
	}
	gauge(c.ocEnabled, b2f(o.Enabled), m)
	gauge(c.ocUsed, float64(o.MemoryUsedBytes), m)
	gauge(c.ocFree, float64(o.MemoryFreeBytes), m)
	gauge(c.ocWasted, float64(o.MemoryWastedBytes), m)
	gauge(c.ocFull, b2f(o.CacheFull), m)
	gauge(c.ocPending, b2f(o.RestartPending), m)
	gauge(c.ocScripts, float64(o.CachedScripts), m)
	gauge(c.ocKeys, float64(o.CachedKeys), m)
	gauge(c.ocMaxKeys, float64(o.MaxCachedKeys), m)
	counter(c.ocHits, float64(o.Hits), m)
	counter(c.ocMisses, float64(o.Misses), m)
	counter(c.ocRestarts, float64(o.OOMRestarts), m, "oom")
	counter(c.ocRestarts, float64(o.HashRestarts), m, "hash")
	counter(c.ocRestarts, float64(o.ManualRestarts), m, "manual")
	gauge(c.ocInternedUsed, float64(o.InternedStringsUsedBytes), m)
	gauge(c.ocInternedSize, float64(o.InternedStringsBufferBytes), m)
	gauge(c.ocJITFree, float64(o.JITBufferFreeBytes), m)
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
