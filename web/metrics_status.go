package web

import (
	"strconv"
	"time"

	"github.com/fpmguard/fpmguard/watch"
)

// statusCollector emits the status page under the names of the established
// exporter (hipages/php-fpm_exporter, and php-fpm's own ?openmetrics): a
// dashboard built on them needs no change.
type statusCollector struct {
	processMetrics bool

	up, scrapeFailures, startSince, acceptedConn, listenQueue, maxListenQueue, listenQueueLen *metricDesc
	idle, active, total, maxActive, maxChildrenReached, slowRequests                          *metricDesc
	procRequests, procLastMemory, procLastCPU, procDuration, procState                        *metricDesc
}

func newStatusCollector(processMetrics bool) *statusCollector {
	d := func(name, help string, labels ...string) *metricDesc {
		return desc("phpfpm", name, help, labels...)
	}
	// master tells apart pools of one name under two masters (Debian's
	// www of each PHP version): see docs/metrics.md.
	pool := []string{"pool", "master", "scrape_uri"}
	child := []string{"pool", "master", "child", "scrape_uri"}
	return &statusCollector{
		processMetrics:     processMetrics,
		up:                 d("up", "Could PHP-FPM be reached? 1 when the status page was read.", pool...),
		scrapeFailures:     d("scrape_failures", "The number of failures scraping from PHP-FPM.", pool...),
		startSince:         d("start_since", "The number of seconds since FPM has started.", pool...),
		acceptedConn:       d("accepted_connections", "The number of requests accepted by the pool: php-fpm's own counter, fpmguard's probes included (fpmguard_probe_requests_total counts those).", pool...),
		listenQueue:        d("listen_queue", "The number of requests in the queue of pending connections (php-fpm fills it for TCP listeners only).", pool...),
		maxListenQueue:     d("max_listen_queue", "The maximum number of requests in the queue of pending connections since FPM has started.", pool...),
		listenQueueLen:     d("listen_queue_length", "The size of the socket queue of pending connections.", pool...),
		idle:               d("idle_processes", "The number of idle processes, the one serving fpmguard's status request included.", pool...),
		active:             d("active_processes", "The number of active processes, not counting the one serving fpmguard's status request.", pool...),
		total:              d("total_processes", "The number of idle + active processes.", pool...),
		maxActive:          d("max_active_processes", "The maximum number of active processes since FPM has started.", pool...),
		maxChildrenReached: d("max_children_reached", "The number of times, the process limit has been reached, when pm tries to start more children (works only for pm 'dynamic' and 'ondemand').", pool...),
		slowRequests:       d("slow_requests", "The number of requests that exceeded your 'request_slowlog_timeout' value.", pool...),
		procRequests:       d("process_requests", "The number of requests the process has served.", child...),
		procLastMemory:     d("process_last_request_memory", "The max amount of memory the last request consumed.", child...),
		procLastCPU:        d("process_last_request_cpu", "The %cpu the last request consumed.", child...),
		procDuration:       d("process_request_duration", "The duration in microseconds of the requests.", child...),
		procState:          d("process_state", "The state of the process (Idle, Running, ...).", "pool", "master", "child", "state", "scrape_uri"),
	}
}

func (c *statusCollector) descs() []*metricDesc {
	return []*metricDesc{
		c.up, c.scrapeFailures, c.startSince, c.acceptedConn, c.listenQueue, c.maxListenQueue, c.listenQueueLen,
		c.idle, c.active, c.total, c.maxActive, c.maxChildrenReached, c.slowRequests,
		c.procRequests, c.procLastMemory, c.procLastCPU, c.procDuration, c.procState,
	}
}

func (c *statusCollector) collect(s *watch.Snapshot, m emitter) {
	pools := byName(s)
	for _, v := range pools {
		p, uri := v.Report, v.ScrapeURI
		m.untyped(c.scrapeFailures, float64(v.Stats.ScrapeFailures), p.Name, p.MasterName, uri)
		if st := p.Status; v.Probed() && !st.Skipped && st.Inconclusive == "" {
			// An idle ondemand pool is reachable: its master is alive and
			// its socket listens; its page is not read, not to wake a
			// worker. A pool without a status page, or whose read proved
			// nothing, is neither up nor down.
			m.gauge(c.up, b2f(st.OK || st.Idle), p.Name, p.MasterName, uri)
		}
		cn := p.Counters
		if !p.Status.OK || cn == nil {
			continue
		}
		m.untyped(c.startSince, float64(cn.StartSinceSeconds), p.Name, p.MasterName, uri)
		m.untyped(c.acceptedConn, float64(cn.AcceptedConn), p.Name, p.MasterName, uri)
		m.gauge(c.listenQueue, float64(cn.ListenQueue), p.Name, p.MasterName, uri)
		m.untyped(c.maxListenQueue, float64(cn.MaxListenQueue), p.Name, p.MasterName, uri)
		m.gauge(c.listenQueueLen, float64(cn.ListenQueueLen), p.Name, p.MasterName, uri)
		// php-fpm's own counts can disagree with its process list ("max
		// active processes" can be nonsense), and count the worker serving
		// fpmguard's own status request as active: the list, less that
		// request, is what every output of fpmguard counts.
		active, total := p.Busy()
		m.gauge(c.idle, float64(total-active), p.Name, p.MasterName, uri)
		m.gauge(c.active, float64(active), p.Name, p.MasterName, uri)
		m.gauge(c.total, float64(total), p.Name, p.MasterName, uri)
		m.untyped(c.maxActive, float64(cn.MaxActiveProcesses), p.Name, p.MasterName, uri)
		m.untyped(c.maxChildrenReached, float64(cn.MaxChildrenReached), p.Name, p.MasterName, uri)
		m.untyped(c.slowRequests, float64(cn.SlowRequests), p.Name, p.MasterName, uri)
	}
	if c.processMetrics {
		c.collectWorkers(pools, m)
	}
}

// collectWorkers emits the series of each worker of the pools whose status
// page was read, child by child: their labels sort child first, so this is
// the order the registry sorts them in, which spares a sort.
func (c *statusCollector) collectWorkers(pools []*watch.PoolView, m emitter) {
	for _, i := range childOrder(mostWorkers(pools)) {
		// child is the worker's place on the status page, as the
		// established exporter names it: never its pid.
		child := strconv.Itoa(i)
		for _, v := range pools {
			p, uri := v.Report, v.ScrapeURI
			if !p.Status.OK || p.Counters == nil || i >= len(p.Processes) {
				continue
			}
			w := &p.Processes[i]
			m.untyped(c.procRequests, float64(w.Requests), p.Name, p.MasterName, child, uri)
			m.gauge(c.procLastMemory, float64(w.LastRequestMemory), p.Name, p.MasterName, child, uri)
			m.gauge(c.procLastCPU, w.LastRequestCPU, p.Name, p.MasterName, child, uri)
			m.gauge(c.procDuration, float64(time.Duration(w.RequestDurationSeconds*float64(time.Second)).Microseconds()), p.Name, p.MasterName, child, uri)
			// Only the current state: the other states' zeros add nothing
			// to sum by (state) and cost five series per worker.
			m.gauge(c.procState, 1, p.Name, p.MasterName, child, w.State, uri)
		}
	}
}
