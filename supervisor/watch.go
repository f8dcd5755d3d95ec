package supervisor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmguard/fpmguard/lag"
)

// WatchConfig tunes the watch loop.
type WatchConfig struct {
	Interval       time.Duration // between probes of a pool; 1s if 0
	UnhealthyAfter int           // heartbeat failures in a row that count; 3 if 0
	ReadyMaxQueue  int64         // /readyz: a saturated pool may have this many waiting
	OpcacheEvery   time.Duration // between opcache reads; 5s if 0
	// FirstProbeAfter delays the first probe, for `run`, whose php-fpm is
	// starting at the same moment.
	FirstProbeAfter time.Duration
	Actions         ActionConfig
}

// Defaults of WatchConfig.
const (
	DefaultInterval       = time.Second
	DefaultUnhealthyAfter = 3
	DefaultOpcacheEvery   = 5 * time.Second
	// DiskSleepAfter is how long a worker may stay in D state before it
	// is reported: short stays are ordinary disk I/O.
	DiskSleepAfter = 5 * time.Second
	// spinShare is the share of an interval a spinning worker spends on a
	// CPU or waiting for one.
	spinShare = 0.5
)

func (c *WatchConfig) fill() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.UnhealthyAfter <= 0 {
		c.UnhealthyAfter = DefaultUnhealthyAfter
	}
	if c.OpcacheEvery <= 0 {
		c.OpcacheEvery = DefaultOpcacheEvery
	}
	c.Actions.fill()
}

// Watcher probes every pool continuously, each in a loop of its own, keeps
// the latest snapshot, records events and acts when asked.
type Watcher struct {
	prober  *Prober
	cfg     WatchConfig
	events  *EventLog
	actions *Actor
	pools   []*poolWatch
	nginx   *NginxLogs // nil unless --nginx-error-log
	// pace stretches the interval while fpmguard is starved of CPU.
	pace *lag.Pacer
	// probed is closed when every pool has finished its first probe.
	probed     chan struct{}
	unprobed   atomic.Int64
	probedOnce sync.Once

	mu      sync.Mutex
	opcache []OpcacheReport
	started time.Time
	masters map[string]*masterSeen // by master name
}

// masterSeen counts the masters seen under one name: a new pid is a
// restart, whoever restarted it.
type masterSeen struct {
	pid      int
	restarts uint64
}

// poolWatch is one pool's loop state.
type poolWatch struct {
	target Target

	// probeStart is when the probe in flight began (Unix ns), 0 if none.
	probeStart atomic.Int64

	mu        sync.Mutex
	report    *PoolReport // the latest, published
	stats     poolStats   // counts since fpmguard started
	failures  int         // heartbeat failures in a row, inconclusive ones not counted
	lastBeat  time.Time   // last successful heartbeat
	lastProbe time.Time   // last probe that finished, whatever its outcome
	dSince    map[int]time.Time
	announced map[condition]bool // conditions already reported, to report each once
}

// condition is something reported once when it starts: of a worker when pid
// is set, else of the pool.
type condition struct {
	what string
	pid  int
}

// NewWatcher builds a watcher of targets. events may be shared with other
// parts of fpmguard.
func NewWatcher(pr *Prober, targets []Target, cfg WatchConfig, events *EventLog) *Watcher {
	cfg.fill()
	if cfg.Actions.KillHungAfter > 0 && (pr.Thresholds.HungAfter <= 0 || cfg.Actions.KillHungAfter < pr.Thresholds.HungAfter) {
		// A worker fpmguard kills for its age is hung by definition.
		pr.Thresholds.HungAfter = cfg.Actions.KillHungAfter
	}
	w := &Watcher{prober: pr, cfg: cfg, events: events, started: time.Now(), masters: map[string]*masterSeen{}, probed: make(chan struct{})}
	w.actions = newActor(cfg.Actions, pr, events)
	w.pace = lag.NewPacer(pr.Lag, cfg.Interval)
	w.pace.OnChange = func(_ time.Duration, why string) { events.Add(Event{Kind: EventStarved, Message: why}) }
	w.unprobed.Store(int64(len(targets)))
	if len(targets) == 0 {
		close(w.probed)
	}
	for _, t := range targets {
		w.pools = append(w.pools, &poolWatch{target: t, dSince: map[int]time.Time{}, announced: map[condition]bool{}})
	}
	return w
}

// UseReaper sends the commands the watcher runs (php-fpm -t) through r,
// which under `run` is the only caller of wait.
func (w *Watcher) UseReaper(r *Reaper) { w.actions.output = r.Output }

// SetMasterPID tells every pool the pid of its master, for `run`, which
// starts a new master after each crash.
func (w *Watcher) SetMasterPID(pid int) {
	for _, pw := range w.pools {
		pw.mu.Lock()
		pw.target.MasterPID = pid
		pw.mu.Unlock()
	}
}

// Events is the watcher's event log.
func (w *Watcher) Events() *EventLog { return w.events }

// Actor is the watcher's actor, for its counters.
func (w *Watcher) Actor() *Actor { return w.actions }

// Run watches until ctx ends. Each pool has its own loop, so a hung pool
// never delays another.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if w.prober.Lag != nil {
		wg.Go(func() { w.prober.Lag.Run(ctx) })
	}
	for _, pw := range w.pools {
		wg.Go(func() { w.watchPool(ctx, pw) })
	}
	if w.prober.Opcache != nil {
		wg.Go(func() { w.watchOpcache(ctx) })
	}
	if w.nginx != nil {
		wg.Go(func() { w.nginx.Run(ctx) })
	}
	wg.Wait()
	w.actions.wait()
}

func (w *Watcher) watchPool(ctx context.Context, pw *poolWatch) {
	if d := w.cfg.FirstProbeAfter; d > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
	// A timer, not a ticker: the next probe is one (possibly stretched)
	// interval after this one began, and a probe that overran its interval
	// is followed at once by one more, never by a queue of them.
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		began := time.Now()
		w.tick(ctx, pw)
		timer.Reset(w.pace.Interval() - time.Since(began))
	}
}

// tick probes one pool once, detects what changed, acts, and publishes.
// Hung workers are judged and killed on a fresh status page, before the
// heartbeat: with every worker hung the heartbeat takes its whole timeout.
func (w *Watcher) tick(ctx context.Context, pw *poolWatch) {
	pw.mu.Lock()
	prev, target := pw.report, pw.target
	pw.mu.Unlock()

	pw.probeStart.Store(time.Now().UnixNano())
	r := w.prober.Observe(ctx, target)
	markHung(&r, w.prober.Thresholds.HungAfter)
	classifyHung(&r, prev)
	killed := w.actions.killHung(ctx, target, &r)
	w.prober.Beat(ctx, target, &r)
	pw.probeStart.Store(0)
	if ctx.Err() != nil {
		return
	}
	Judge(&r, prev, w.prober.Thresholds)

	pw.mu.Lock()
	pw.stats.add(&r)
	pw.lastProbe = time.Now()
	if r.Heartbeat.OK || r.Heartbeat.misconfigured() {
		// A worker answered a misconfigured ping: the pool serves.
		pw.failures = 0
		pw.lastBeat = pw.lastProbe
	} else if r.Heartbeat.Failed() {
		// An inconclusive heartbeat neither fails nor succeeds: the streak
		// stays where it was.
		pw.failures++
	}
	failures := pw.failures
	w.detect(pw, prev, &r)
	pw.mu.Unlock()

	w.actions.maybeReload(ctx, target, &r, failures >= w.cfg.UnhealthyAfter, killed)
	w.seeMaster(&r)

	pw.mu.Lock()
	first := pw.report == nil
	pw.report = &r
	pw.mu.Unlock()
	if first && w.unprobed.Add(-1) == 0 {
		w.probedOnce.Do(func() { close(w.probed) })
	}
}

// classifyHung tells spinning from blocked for each hung worker, from what
// the kernel says it did since the previous probe: time on a CPU plus time
// waiting for one. Counting the run-queue wait keeps a spinning worker on a
// busy machine or a CPU-limited container from looking blocked.
func classifyHung(r, prev *PoolReport) {
	old := map[int]ProcessState{}
	if prev != nil {
		for _, p := range prev.Processes {
			old[p.PID] = p
		}
	}
	elapsed := time.Duration(0)
	if prev != nil {
		elapsed = r.at.Sub(prev.at)
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		if !p.Hung {
			continue
		}
		o, ok := old[p.PID]
		if ok && o.startTicks == p.startTicks && elapsed > 0 && (p.onCPU > 0 || p.runQueue > 0) {
			busy := (p.onCPU - o.onCPU) + (p.runQueue - o.runQueue)
			if float64(busy) >= spinShare*float64(elapsed) {
				p.HungKind = "spinning"
			} else {
				p.HungKind = "blocked"
			}
			continue
		}
		// No earlier sample: the state at this instant is all there is.
		if p.OSState == OSRunning {
			p.HungKind = "spinning"
		} else {
			p.HungKind = "blocked"
		}
	}
}

// detect records the events between prev and r. pw.mu is held.
func (w *Watcher) detect(pw *poolWatch, prev, r *PoolReport) {
	pool, master := r.Name, 0
	if r.Master != nil {
		master = r.Master.PID
	}
	add := func(kind string, pid int, format string, args ...any) {
		w.events.Add(Event{Pool: pool, Master: master, PID: pid, Kind: kind, Message: fmt.Sprintf(format, args...)})
	}
	// once reports a condition when it starts, and forgets it when it ends.
	once := func(key condition, on bool) bool {
		was := pw.announced[key]
		pw.announced[key] = on
		return on && !was
	}

	prevHealth := HealthOK
	if prev != nil {
		prevHealth = prev.Health
	}
	if r.Health != prevHealth {
		if r.Health == HealthOK {
			add(EventRecovered, 0, "pool %s recovered (was %s)", pool, prevHealth)
		} else {
			add(EventHealth, 0, "pool %s is %s: %s", pool, r.Health, strings.Join(r.Reasons, "; "))
		}
	}

	now := time.Now()
	live := map[int]bool{}
	for _, p := range r.Processes {
		live[p.PID] = true
		if once(condition{"hung", p.PID}, p.Hung) {
			add(EventHung, p.PID, "worker %d hung (%s): %s %s for %s in %s", p.PID, p.HungKind, p.RequestMethod, p.RequestURI, roundSeconds(p.RequestDuration), p.Script)
		}
		if once(condition{"stopped", p.PID}, p.OSState == OSStopped) {
			add(EventStopped, p.PID, "worker %d is stopped (SIGSTOP or a tracer) while php-fpm says %s: it serves nothing; SIGCONT it or kill it", p.PID, p.State)
		}
		if once(condition{"zombie", p.PID}, p.OSState == OSZombie) {
			add(EventZombie, p.PID, "worker %d is a zombie: its master has not reaped it", p.PID)
		}
		if p.OSState == OSDiskSleep {
			if _, ok := pw.dSince[p.PID]; !ok {
				pw.dSince[p.PID] = now
			}
		} else {
			delete(pw.dSince, p.PID)
		}
		inD := p.OSState == OSDiskSleep && now.Sub(pw.dSince[p.PID]) >= DiskSleepAfter
		if once(condition{"dsleep", p.PID}, inD) {
			add(EventDiskSleep, p.PID, "worker %d has been in disk sleep (D) for %s: stuck on storage (NFS, a full or failing disk); signals wait until the I/O ends", p.PID, now.Sub(pw.dSince[p.PID]).Round(time.Second))
		}
	}
	for pid := range pw.dSince {
		if !live[pid] {
			delete(pw.dSince, pid)
		}
	}
	for key := range pw.announced {
		if key.pid > 0 && !live[key.pid] {
			delete(pw.announced, key)
		}
	}

	if once(condition{what: "heartbeat"}, pw.failures >= w.cfg.UnhealthyAfter) {
		add(EventHeartbeat, 0, "heartbeat of pool %s failed %d times in a row: %s", pool, pw.failures, r.Heartbeat.Error)
	}
	if m := r.Master; m != nil {
		if once(condition{what: "master-gone"}, m.Gone()) {
			if m.PID == 0 {
				add(EventMaster, 0, "master of pool %s is not running: %s", pool, m.Error)
			} else {
				add(EventMaster, 0, "master %d of pool %s is gone: nothing respawns its workers", m.PID, pool)
			}
		}
		if once(condition{what: "master-stopped"}, m.Alive && m.OSState == OSStopped) {
			add(EventMaster, 0, "master %d of pool %s is stopped (SIGSTOP): it respawns nothing until SIGCONT", m.PID, pool)
		}
		foreign := slices.IndexFunc(r.Processes, func(p ProcessState) bool { return !p.ParentOK && p.OSState != OSGone })
		if once(condition{what: "children"}, m.Alive && foreign >= 0) {
			p := r.Processes[foreign]
			add(EventMaster, p.PID, "the status page of pool %s names pid %d, which is not a worker of master %d (its parent is %d): fpmguard will not touch it", pool, p.PID, m.PID, p.parent)
		}
	}
	if prev != nil && prev.Counters != nil && r.Counters != nil && r.Counters.MaxChildrenReached > prev.Counters.MaxChildrenReached {
		add(EventMaxChildren, 0, "pool %s reached pm.max_children (%d) again: %d times since start", pool, r.Config.MaxChildren, r.Counters.MaxChildrenReached)
	}
	if q := r.queue(); once(condition{what: "queue"}, q > 0) {
		add(EventListenQueue, 0, "%d requests wait in the listen queue of pool %s", q, pool)
	}
}

// seeMaster counts a new master pid under a known name as a restart.
func (w *Watcher) seeMaster(r *PoolReport) {
	m := r.Master
	if m == nil || !m.Alive || m.PID == 0 {
		return
	}
	name := r.masterName()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.masters[name]
	switch {
	case seen == nil:
		w.masters[name] = &masterSeen{pid: m.PID}
	case seen.pid != m.PID:
		seen.pid = m.PID
		seen.restarts++
	}
}

// poolStats are a pool's counts since fpmguard started.
type poolStats struct {
	heartbeats     uint64
	heartbeatSum   float64
	buckets        []uint64 // cumulative counts at HeartbeatBuckets
	failures       map[string]uint64
	scrapeFailures uint64
	inconclusive   uint64 // heartbeats that proved nothing: fpmguard was starved
}

// HeartbeatBuckets are the upper bounds of the heartbeat histogram, from a
// fast unix-socket ping to the default timeout.
var HeartbeatBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func (s *poolStats) add(r *PoolReport) {
	if s.failures == nil {
		s.failures = map[string]uint64{}
		s.buckets = make([]uint64, len(HeartbeatBuckets))
	}
	if r.Status.Failed() {
		s.scrapeFailures++
	}
	if r.Heartbeat.Skipped {
		return
	}
	if r.Heartbeat.Inconclusive != "" {
		// Its latency is fpmguard's own lag, not php-fpm's.
		s.inconclusive++
		return
	}
	if f := r.Heartbeat.Failure; f != nil {
		s.failures[f.Reason]++
	}
	d := r.Heartbeat.LatencySeconds
	s.heartbeats++
	s.heartbeatSum += d
	for i, b := range HeartbeatBuckets {
		if d <= b {
			s.buckets[i]++
		}
	}
}

func (s poolStats) clone() poolStats {
	c := s
	c.buckets = append([]uint64(nil), s.buckets...)
	c.failures = maps.Clone(s.failures)
	return c
}

// stats returns each pool's counts, in target order.
func (w *Watcher) stats() []poolStats {
	out := make([]poolStats, len(w.pools))
	for i, pw := range w.pools {
		pw.mu.Lock()
		out[i] = pw.stats.clone()
		pw.mu.Unlock()
	}
	return out
}

// masterRestarts returns the restarts seen per master name.
func (w *Watcher) masterRestarts() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.masters))
	for name, m := range w.masters {
		out[name] = m.restarts
	}
	return out
}

// queue is the listen queue as far as it is known: the kernel's count, or
// php-fpm's (which is 0 on unix sockets).
func (r *PoolReport) queue() int64 {
	var q int64
	if r.Counters != nil {
		q = r.Counters.ListenQueue
	}
	if r.SocketQueue != nil {
		q = max(q, r.SocketQueue.Length)
	}
	return q
}

// watchOpcache reads the opcache as soon as every pool has been probed
// once (its masters are known then), and every OpcacheEvery after that.
func (w *Watcher) watchOpcache(ctx context.Context) {
	first := time.NewTimer(w.cfg.OpcacheEvery)
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-w.probed:
	case <-first.C:
	}
	tick := time.NewTicker(w.cfg.OpcacheEvery)
	defer tick.Stop()
	prev := map[int]*OpcacheReport{}
	for read := true; ; read = false {
		if !read {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		targets, pools := w.current()
		if len(pools) == 0 {
			continue
		}
		reports := w.prober.Opcache.Probe(ctx, targets, pools, prev)
		if ctx.Err() != nil {
			return
		}
		next := map[int]*OpcacheReport{}
		for i := range reports {
			o := &reports[i]
			if p := prev[o.MasterPID]; (p == nil && o.Health != HealthOK) || (p != nil && p.Health != o.Health) {
				w.events.Add(Event{Master: o.MasterPID, Kind: EventOpcache, Message: fmt.Sprintf("opcache of master %d is %s: %s", o.MasterPID, o.Health, strings.Join(o.Reasons, "; "))})
			}
			next[o.MasterPID] = o
		}
		prev = next
		w.mu.Lock()
		w.opcache = reports
		w.mu.Unlock()
	}
}

// current returns the targets and their latest reports, skipping pools not
// probed yet.
func (w *Watcher) current() ([]Target, []PoolReport) {
	var targets []Target
	var pools []PoolReport
	for _, pw := range w.pools {
		pw.mu.Lock()
		r := pw.report
		t := pw.target
		pw.mu.Unlock()
		if r != nil {
			targets = append(targets, t)
			pools = append(pools, *r)
		}
	}
	return targets, pools
}

// Snapshot is the latest report of every pool, never waiting on php-fpm.
// A pool not probed yet is reported as unhealthy, waiting for its first
// probe.
func (w *Watcher) Snapshot() *Report {
	rep := &Report{Version: ReportVersion, Time: time.Now().UTC(), Pools: make([]PoolReport, 0, len(w.pools))}
	for _, pw := range w.pools {
		pw.mu.Lock()
		r := pw.report
		pw.mu.Unlock()
		if r == nil {
			rep.Pools = append(rep.Pools, PoolReport{Name: pw.target.Name, Address: pw.target.Address.String(), Health: HealthUnhealthy,
				Reasons: []string{"not probed yet"}, Processes: []ProcessState{}})
			continue
		}
		rep.Pools = append(rep.Pools, *r)
	}
	w.mu.Lock()
	rep.Opcache = w.opcache
	w.mu.Unlock()
	return rep
}

// Live answers the liveness probe: every master alive, and no pool whose
// heartbeat failed UnhealthyAfter times in a row. A heartbeat that proved
// nothing, because fpmguard itself was starved, counts neither way. The
// reasons say which pool and why.
func (w *Watcher) Live() (bool, []string) {
	var reasons []string
	interval := w.pace.Interval()
	window := time.Duration(w.cfg.UnhealthyAfter) * interval
	for _, pw := range w.pools {
		pw.mu.Lock()
		r, failures, last := pw.report, pw.failures, pw.lastProbe
		pw.mu.Unlock()
		if r == nil {
			if time.Since(w.started) > window+w.stuckAfter() {
				reasons = append(reasons, fmt.Sprintf("pool %s: no probe finished yet", pw.target.Name))
			}
			continue
		}
		if r.Master != nil && r.Master.Gone() {
			reasons = append(reasons, fmt.Sprintf("pool %s: master is gone", r.Name))
			continue
		}
		if r.Heartbeat.Skipped {
			continue
		}
		switch {
		case failures >= w.cfg.UnhealthyAfter:
			reasons = append(reasons, fmt.Sprintf("pool %s: heartbeat failed %d times in a row: %s", r.Name, failures, r.Heartbeat.Error))
		case w.stuck(last, interval):
			reasons = append(reasons, fmt.Sprintf("pool %s: no probe finished for %s", r.Name, time.Since(last).Round(time.Second)))
		}
	}
	return len(reasons) == 0, reasons
}

// stuckAfter is how long a probe may take at the most: its status read and
// heartbeat each end by the client's timeout.
func (w *Watcher) stuckAfter() time.Duration { return 2*w.prober.timeout() + w.cfg.Interval }

// stuck reports a pool whose probes stopped finishing since last, not
// counting the time fpmguard itself could not run.
func (w *Watcher) stuck(last time.Time, interval time.Duration) bool {
	now := time.Now()
	idle := now.Sub(last) - w.prober.Lag.Starved(last, now)
	return idle > time.Duration(w.cfg.UnhealthyAfter)*interval+w.stuckAfter()
}

// Ready answers the readiness probe: every pool can take a request now.
func (w *Watcher) Ready() (bool, []string) {
	var reasons []string
	for _, pw := range w.pools {
		name := pw.target.Name
		if start := pw.probeStart.Load(); start != 0 {
			began := time.Unix(0, start)
			// A heartbeat outstanding while fpmguard could not run proves
			// nothing.
			if ok, _ := w.prober.Lag.Judge("heartbeat", began, time.Now()); !ok && time.Since(began) > w.cfg.Interval {
				reasons = append(reasons, fmt.Sprintf("pool %s: a heartbeat has been outstanding for %s", name, time.Since(began).Round(time.Millisecond)))
				continue
			}
		}
		pw.mu.Lock()
		r := pw.report
		pw.mu.Unlock()
		switch {
		case r == nil:
			reasons = append(reasons, fmt.Sprintf("pool %s: not probed yet", name))
		case r.Heartbeat.Failed():
			reasons = append(reasons, fmt.Sprintf("pool %s: last heartbeat failed: %s", name, r.Heartbeat.Error))
		case r.saturated(w.cfg.ReadyMaxQueue):
			reasons = append(reasons, fmt.Sprintf("pool %s: saturated: no idle worker and %d requests waiting", name, r.queue()))
		case r.Health == HealthUnhealthy || r.Health == HealthDown:
			reasons = append(reasons, fmt.Sprintf("pool %s: %s: %s", name, r.Health, strings.Join(r.Reasons, "; ")))
		}
	}
	return len(reasons) == 0, reasons
}

// saturated: no idle worker, and more requests waiting than allowed.
func (r *PoolReport) saturated(maxQueue int64) bool {
	if !r.Status.OK {
		return false
	}
	busy, total := r.Busy()
	return total > 0 && busy == total && r.queue() > maxQueue
}

// NginxKey labels a count of upstream failures nginx logged.
type NginxKey struct {
	Pool   string
	Status int    // what nginx answered: 502 or 504
	Cause  string // refused, missing, permission, backlog, reset, timeout
}

// nginxCounts returns the upstream failures counted from nginx's error
// logs, when the watcher follows any.
func (w *Watcher) nginxCounts() map[NginxKey]uint64 {
	if w.nginx == nil {
		return nil
	}
	return w.nginx.Counts()
}
