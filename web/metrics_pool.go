package web

import (
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// The OS states fpmguard emits for every pool whose workers it saw.
var osStates = []supervisor.OSState{supervisor.OSRunning, supervisor.OSSleeping, supervisor.OSDiskSleep, supervisor.OSStopped, supervisor.OSZombie}

// poolCollector emits fpmguard's view of each pool and its master: the
// heartbeat, the verdict, hung and OS states, the kernel's queue, and what
// fpmguard did. A gauge is emitted only once it was measured: before a
// pool's first probe, only its verdict (unknown), its configured
// max_children and its counters (all 0) are true.
type poolCollector struct {
	heartbeatUp, heartbeatDuration, heartbeatFailures, heartbeatInconclusive *metricDesc
	poolHealth, hung, osState, maxChildren, socketQueue, socketQueueMax      *metricDesc
	actions, masterUp, masterRestarts, probeRequests                         *metricDesc
}

func newPoolCollector() *poolCollector {
	d := func(name, help string, labels ...string) *metricDesc {
		return desc("phpfpm", name, help, labels...)
	}
	return &poolCollector{
		heartbeatUp:           d("heartbeat_up", "1 when a worker answered the last heartbeat through the pool's main socket (the one nginx uses), if only to say ping.path or ping.response is wrong; absent for a pool without ping.path, and before its first probe.", "pool", "master"),
		heartbeatDuration:     d("heartbeat_duration_seconds", "Round trip of the heartbeat through a worker.", "pool", "master"),
		heartbeatFailures:     d("heartbeat_failures_total", "Failed heartbeats by reason: refused, permission, backlog, reset, timeout, bad_response.", "pool", "master", "reason"),
		heartbeatInconclusive: d("heartbeat_inconclusive_total", "Heartbeats that proved nothing: they timed out or answered late while fpmguard itself was starved of CPU, or failed while php-fpm reloaded.", "pool", "master"),
		poolHealth:            d("pool_health", "1 for the pool's current verdict: ok, unknown (not probed yet, or not monitored), degraded, unhealthy or down.", "pool", "master", "health"),
		hung:                  d("hung_processes", "Workers whose request is older than --hung-after, by what they did over the last interval.", "pool", "master", "kind"),
		osState:               d("os_state_processes", "Workers by the kernel's process state.", "pool", "master", "os_state"),
		maxChildren:           d("max_children", "pm.max_children of the pool, when its config is known.", "pool", "master"),
		socketQueue:           d("socket_listen_queue", "Connections waiting on the pool's listen socket, as the kernel counts them (ss Recv-Q), fpmguard's own included.", "pool", "master"),
		socketQueueMax:        d("socket_listen_queue_max", "Size of the pool's listen backlog, as the kernel counts it (ss Send-Q); when full, nginx answers 502.", "pool", "master"),
		actions:               d("actions_total", "Actions fpmguard took or declined, by action and result.", "pool", "master", "action", "result"),
		masterUp:              d("master_up", "1 when the php-fpm master is alive.", "master"),
		masterRestarts:        d("master_restarts_total", "Times a new master pid appeared under this master's name.", "master"),
		probeRequests: desc("fpmguard", "probe_requests_total",
			"Connections fpmguard made to the pool's main socket (pings, status reads, opcache reads, bare connects), as of the status read phpfpm_accepted_connections comes from, which counts them too: the difference of their rates is the users' requests.", "pool", "master"),
	}
}

func (c *poolCollector) descs() []*metricDesc {
	return []*metricDesc{
		c.heartbeatUp, c.heartbeatDuration, c.heartbeatFailures, c.heartbeatInconclusive,
		c.poolHealth, c.hung, c.osState, c.maxChildren, c.socketQueue, c.socketQueueMax,
		c.actions, c.masterUp, c.masterRestarts, c.probeRequests,
	}
}

func (c *poolCollector) collect(s *watch.Snapshot, m emitter) {
	masters := map[string]bool{}
	for _, v := range byName(s) {
		p, st := v.Report, &v.Stats
		for _, h := range supervisor.Healths {
			m.gauge(c.poolHealth, b2f(p.Health == h), p.Name, p.MasterName, string(h))
		}
		m.counter(c.heartbeatInconclusive, float64(st.Inconclusive), p.Name, p.MasterName)
		for _, r := range fastcgi.Reasons {
			m.counter(c.heartbeatFailures, float64(st.Failures[r]), p.Name, p.MasterName, string(r))
		}
		m.counter(c.probeRequests, float64(p.ProbeRequests), p.Name, p.MasterName)
		if p.Config.MaxChildren > 0 {
			m.gauge(c.maxChildren, float64(p.Config.MaxChildren), p.Name, p.MasterName)
		}
		if !v.Probed() {
			continue
		}
		if !p.Heartbeat.Skipped {
			m.gauge(c.heartbeatUp, b2f(p.Heartbeat.Up()), p.Name, p.MasterName)
		}
		if st.Heartbeats > 0 {
			m.histogram(c.heartbeatDuration, st.Heartbeats, st.HeartbeatSumSeconds, watch.HeartbeatBuckets, st.Buckets, p.Name, p.MasterName)
		}
		c.collectWorkers(p, m)
		if q := p.SocketQueue; q != nil {
			m.gauge(c.socketQueue, float64(q.Length), p.Name, p.MasterName)
			m.gauge(c.socketQueueMax, float64(q.Max), p.Name, p.MasterName)
		}
		if p.Master != nil {
			name := p.MasterName
			// Up unless known dead: a master fpmguard cannot read is not
			// reported down on a guess.
			masters[name] = masters[name] || !p.Master.Gone()
		}
	}
	// A master seen once stays in the metrics: a stopped one reads 0, so an
	// alert on master_up == 0 can fire.
	for name := range s.MasterRestarts {
		if _, ok := masters[name]; !ok {
			masters[name] = false
		}
	}
	for name, alive := range masters {
		m.gauge(c.masterUp, b2f(alive), name)
		m.counter(c.masterRestarts, float64(s.MasterRestarts[name]), name)
	}
	for k, v := range s.Actions {
		m.counter(c.actions, float64(v), k.Pool.Pool, k.Pool.Master, string(k.Action), string(k.Result))
	}
}

// collectWorkers emits the pool's hung workers and its workers by OS
// state, when they were seen: the status page was read. An idle ondemand
// pool, judged without reading it, has no hung worker (every one waits for
// a request), and its OS states are not known.
func (c *poolCollector) collectWorkers(p *supervisor.PoolReport, m emitter) {
	if !p.Status.OK && !p.Status.Idle {
		return
	}
	hung := map[supervisor.HungKind]int{}
	states := map[supervisor.OSState]int{}
	for i := range p.Processes {
		w := &p.Processes[i]
		if w.Hung && w.HungKind != "" {
			hung[w.HungKind]++
		}
		states[w.OSState]++
	}
	for _, kind := range supervisor.HungKinds {
		m.gauge(c.hung, float64(hung[kind]), p.Name, p.MasterName, string(kind))
	}
	if !p.Status.OK {
		return
	}
	for _, st := range osStates {
		m.gauge(c.osState, float64(states[st]), p.Name, p.MasterName, string(st))
	}
}
