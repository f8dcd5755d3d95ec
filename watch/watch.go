// Package watch is fpmguard's loop: it probes every pool continuously,
// judges, acts when asked, records events, and publishes each result as an
// immutable Snapshot that every output reads. It imports supervisor,
// fastcgi, event, nginxlog, lag, history, safefile and human; it must not
// import runner or web, which read it.
package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Config tunes the watch loop.
type Config struct {
	Interval       time.Duration // between probes of a pool; 1s if 0
	UnhealthyAfter int           // heartbeat failures in a row that count; 3 if 0
	ReadyMaxQueue  int64         // readiness: a saturated pool may have this many waiting
	OpcacheEvery   time.Duration // between opcache reads; 5s if 0
	// FirstProbeAfter delays the first probe, for `run`, whose php-fpm is
	// starting at the same moment.
	FirstProbeAfter time.Duration
	Actions         ActionConfig
	// History, when set, keeps every probe for advice. It outlives the
	// watcher: a reload starts a new watcher on the same history.
	History *history.History
}

// Defaults of Config.
const (
	DefaultInterval       = time.Second
	DefaultUnhealthyAfter = 3
	DefaultOpcacheEvery   = 5 * time.Second
	// DiskSleepAfter is how long a worker may stay in D state before it
	// is reported: short stays are ordinary disk I/O.
	DiskSleepAfter = 5 * time.Second
)

func (c *Config) fill() {
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

// hungAfter is the age past which a worker counts as hung, given the
// verdict's threshold and the age past which fpmguard kills: a worker
// fpmguard kills for its age is hung by definition.
func hungAfter(hungAfter, killHungAfter time.Duration) time.Duration {
	if killHungAfter > 0 && (hungAfter <= 0 || killHungAfter < hungAfter) {
		return killHungAfter
	}
	return hungAfter
}

// Watcher probes every pool, one after the other (sched.go), and publishes what
// it finds.
type Watcher struct {
	prober *supervisor.Prober
	cfg    Config
	// th is the verdict's thresholds: the prober's, with HungAfter no
	// later than the age at which fpmguard kills.
	th      supervisor.Thresholds
	events  *event.Log
	actions *Actor
	// pools is replaced whole by SetTargets (targets.go), never changed
	// in place, under poolsMu and sched.mu both: read it through watched,
	// or under sched.mu.
	pools   []*poolWatch
	poolsMu sync.RWMutex
	nginx   *nginxlog.Follower // nil unless nginx logs are followed
	// changed is signalled when php-fpm changed under a pool (follow.go).
	changed chan struct{}
	// pace stretches the interval while fpmguard is starved of CPU.
	pace *lag.Pacer
	// probed is closed when every pool has finished its first probe.
	probed     chan struct{}
	unprobed   atomic.Int64
	probedOnce sync.Once

	sched schedule
	// deaths follows php-fpm's error logs: why workers die (deaths.go).
	deaths *deathWatch
	// runCtx is Run's: the kill timers act within it. nil until Run.
	runCtx context.Context

	mu      sync.Mutex
	opcache []supervisor.OpcacheReport
	masters map[string]*masterSeen // by master name
}

// masterSeen counts the masters seen under one name: a new pid is a
// restart, whoever restarted it.
type masterSeen struct {
	pid      int
	restarts uint64
}

// poolWatch is one pool's state. One tick of a pool runs at a time, and
// only it touches the loop state; what others read is published in view.
type poolWatch struct {
	mu     sync.Mutex // guards target, which SetMasterPID changes, label, moved and removed
	target supervisor.Target
	// moved is when SetTargets gave the pool another address, zero if
	// not since its last tick; removed, that the pool is no longer
	// watched (targets.go).
	moved   time.Time
	removed bool
	// slot is the pool's place in the schedule, -1 once removed; guarded
	// by the schedule's lock.
	slot int
	// counted: its first probe, or its removal, was counted in unprobed.
	counted atomic.Bool
	// since is when the pool was first watched.
	since time.Time
	// id is the pool's identity: the master's pid is no part of it. label
	// is its name for people (name), which SetTargets changes: its name
	// alone, or its ID when another pool watched has the same name.
	id    supervisor.PoolID
	label string

	// probeStart is when the probe in flight began (Unix ns), 0 if none.
	probeStart atomic.Int64
	// view is the latest published state, nil before the first probe.
	view atomic.Pointer[PoolView]

	// Loop state.
	stats     PoolStats
	failures  int
	lastBeat  time.Time
	dSince    map[int]time.Time
	standIns  int                // heartbeats in a row the status read stood in for
	listened  time.Time          // the last read through pm.status_listen
	announced map[condition]bool // conditions already reported, to report each once
	// deadline is when a request the last probe saw grows older than
	// --hung-after, if before the next probe: the pool is probed then
	// (sched.go), and judged. Zero when none does.
	deadline time.Time
	// atDeadline: this tick runs at a deadline, not on the pool's
	// interval.
	atDeadline bool

	// kills are the requests armed to be killed at their deadline
	// (deadline.go); the loop arms them, their timer acts.
	kills killTimers

	// What followMaster saw of the pool's master, and when php-fpm last
	// changed under the pool, and how (follow.go).
	masterPID  int    // as last seen alive
	masterExec uint64 // its program's ExecID
	masterGone bool
	started    time.Time // the status page's start time
	reloadedAt time.Time
	reloadWhy  string

	diag poolDiagnosis // what held-up workers wait for (diagnose.go)
}

// condition is something reported once when it starts: of a worker when pid
// is set, else of the pool.
type condition struct {
	what string
	pid  int
}

// New builds a watcher of targets with pr, which it uses as given. events
// may be shared with other parts of fpmguard.
func New(pr *supervisor.Prober, targets []supervisor.Target, cfg Config, events *event.Log) *Watcher {
	cfg.fill()
	w := &Watcher{prober: pr, cfg: cfg, events: events, masters: map[string]*masterSeen{}, probed: make(chan struct{}), changed: make(chan struct{}, 1)}
	w.th = pr.Thresholds
	w.th.HungAfter = hungAfter(pr.Thresholds.HungAfter, cfg.Actions.KillHungAfter)
	w.actions = newActor(cfg.Actions, pr, events)
	w.actions.gone = w.workerGone
	w.pace = lag.NewPacer(pr.Lag, cfg.Interval)
	w.pace.OnChange = func(_ time.Duration, why string) { events.Add(event.Event{Kind: event.KindStarved, Message: why}) }
	w.unprobed.Store(int64(len(targets)))
	if len(targets) == 0 {
		close(w.probed)
	}
	ids := make([]supervisor.PoolID, len(targets))
	for i, t := range targets {
		ids[i] = t.ID()
	}
	labels := supervisor.Labels(ids)
	for i, t := range targets {
		w.pools = append(w.pools, newPoolWatch(t, i, labels[ids[i]]))
	}
	w.setupDiagnosis()
	return w
}

func newPoolWatch(t supervisor.Target, slot int, label string) *poolWatch {
	return &poolWatch{target: t, slot: slot, id: t.ID(), label: label, since: time.Now(), dSince: map[int]time.Time{}, announced: map[condition]bool{}}
}

// name is the pool's name for people: its label.
func (pw *poolWatch) name() string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.label
}

// watched is the pools watched now.
func (w *Watcher) watched() []*poolWatch {
	w.poolsMu.RLock()
	defer w.poolsMu.RUnlock()
	return w.pools
}

// poolByID is the watched pool of that ID, nil if none.
func (w *Watcher) poolByID(id supervisor.PoolID) *poolWatch {
	for _, pw := range w.watched() {
		if pw.id == id {
			return pw
		}
	}
	return nil
}

// UseOutput runs the commands the watcher runs (php-fpm -t) through
// output: under `run`, the reaper's, the only caller of wait.
func (w *Watcher) UseOutput(output func(ctx context.Context, name string, args ...string) ([]byte, error)) {
	w.actions.output = output
}

// SetMasterPID tells every pool the pid of its master, for `run`, which
// starts a new master after each crash.
func (w *Watcher) SetMasterPID(pid int) {
	for _, pw := range w.watched() {
		pw.mu.Lock()
		pw.target.MasterPID = pid
		pw.mu.Unlock()
	}
}

// History is the history the watcher keeps, nil when it keeps none.
func (w *Watcher) History() *history.History { return w.cfg.History }

// Events is the watcher's event log.
func (w *Watcher) Events() *event.Log { return w.events }

// FollowNginx makes the watcher follow nginx's error logs at paths, with
// what it saw of each pool in the events.
func (w *Watcher) FollowNginx(paths []string) {
	pools := w.watched()
	targets := make([]supervisor.Target, len(pools))
	for i, pw := range pools {
		targets[i] = pw.target
	}
	n := nginxlog.NewFollower(paths, targets, w.events)
	// A few intervals gather a burst of failures into one event.
	n.ReportEvery = max(5*w.cfg.Interval, time.Second)
	n.Describe = w.describe
	w.nginx = n
}

// Run watches until ctx ends. The pools are probed one after the other,
// and a hung pool's probe goes on beside the others (sched.go).
func (w *Watcher) Run(ctx context.Context) {
	w.runCtx = ctx
	var wg sync.WaitGroup
	if w.prober.Lag != nil {
		wg.Go(func() { w.prober.Lag.Run(ctx) })
	}
	// With no pool yet, the loop waits for SetTargets to give it some.
	w.startSchedule()
	wg.Go(func() { w.probeLoop(ctx, &wg) })
	if w.prober.Opcache != nil {
		wg.Go(func() { w.watchOpcache(ctx) })
	}
	if w.nginx != nil {
		wg.Go(func() { w.nginx.Run(ctx) })
	}
	wg.Go(func() { w.deaths.run(ctx) })
	wg.Wait()
	w.stopKillTimers()
	w.actions.wait()
}

// offset is when pool i is first probed, after FirstProbeAfter: the pools
// are spread over the first interval (at most a second), with jitter, so
// that a thousand of them never fire at once. Each then keeps its place.
func (w *Watcher) offset(i int) time.Duration {
	n := len(w.pools) // under sched.mu
	spread := min(w.cfg.Interval, time.Second)
	each := spread / time.Duration(n)
	jitter := time.Duration(0)
	if each > 0 {
		jitter = rand.N(each)
	}
	return w.cfg.FirstProbeAfter + spread*time.Duration(i)/time.Duration(n) + jitter
}

// slot is the grid probes are aligned to: the pools due within one slot
// are woken together. Waking an idle process costs more CPU (about 100 µs
// on a small VM: futexes, epoll, a thread) than probing a quiet pool, so
// a thousand pools must not mean a thousand wake-ups a second.
func (w *Watcher) slot() time.Duration { return min(100*time.Millisecond, w.cfg.Interval/4) }

// untilSlot is the time until the first slot boundary at or after t.
func (w *Watcher) untilSlot(t time.Time) time.Duration {
	ns, s := t.UnixNano(), int64(w.slot())
	if s <= 0 {
		return time.Until(t)
	}
	return time.Until(time.Unix(0, (ns+s-1)/s*s))
}

// pingEvery is how often, in ticks, a pool whose status read stands in for
// its heartbeat is pinged anyway: that checks ping.path and ping.response,
// which the status read does not. After any heartbeat that was not a
// clean success, every tick pings until one is. A stand-in saves a FastCGI
// exchange, a third of a quiet pool's tick, and a request to php-fpm.
const pingEvery = 10

// tick probes one pool once, detects what changed, acts, and publishes:
// each of the probe's steps runs once. Hung workers are judged and killed
// on a fresh status page, before the heartbeat: with every worker hung the
// heartbeat takes its whole timeout.
func (w *Watcher) tick(ctx context.Context, pw *poolWatch) {
	pw.mu.Lock()
	target, moved := pw.target, pw.moved
	pw.moved = time.Time{}
	pw.mu.Unlock()
	var prev *supervisor.PoolReport
	if v := pw.view.Load(); v != nil {
		prev = v.Report
	}
	atDeadline := pw.atDeadline
	pw.atDeadline, pw.deadline = false, time.Time{}

	if r, ok := w.prober.Idle(ctx, target); ok {
		// An idle ondemand pool: judged without waking a worker.
		w.followMaster(ctx, pw, &r, moved)
		supervisor.Judge(&r, prev, w.th)
		w.detect(pw, prev, &r)
		pw.kills.run.Lock()
		w.armKills(pw, &r, nil)
		pw.kills.run.Unlock()
		w.publish(pw, target, &r, prev == nil)
		return
	}
	pw.probeStart.Store(time.Now().UnixNano())
	var r supervisor.PoolReport
	// own is a status read through the pool's own socket that waited the
	// client's whole timeout: it stands in for the heartbeat, failed too.
	var own supervisor.StatusRead
	switch {
	case target.StatusAddress.IsZero():
		r = w.prober.Observe(ctx, target)
		own = r.Status
	case w.throughOwnSocket(target, prev, atDeadline, pw.listened):
		if r = w.prober.ObserveThrough(ctx, target, target.Address, ownSocketWait); !r.Status.OK {
			// No worker answered it at once: the status listener shows
			// why, and a ping will say what nginx would see.
			r = w.prober.Observe(ctx, target)
			pw.listened = time.Now()
		}
	default:
		r = w.prober.Observe(ctx, target)
		pw.listened = time.Now()
	}
	supervisor.Mark(&r, w.th)
	supervisor.Classify(&r, prev)
	diagnosed := w.startDiagnosis(ctx, pw, target, &r)
	// Kills now, and the kill timer armed, before the heartbeat, which may
	// wait behind busy workers: a deadline during it goes off on time.
	pw.kills.run.Lock()
	killed, capped := w.actions.killHung(ctx, target, &r)
	w.armKills(pw, &r, capped)
	pw.kills.run.Unlock()
	switch {
	case killed == 0 && supervisor.BeatFromHung(target, &r):
		pw.standIns = 0
	case supervisor.BeatFromTimeout(target, &r, own):
		pw.standIns = 0
	case pw.standIns < pingEvery-1 && cleanBeat(prev) && supervisor.BeatFromStatus(target, &r):
		pw.standIns++
	default:
		w.prober.Beat(ctx, target, &r)
		pw.standIns = 0
	}
	pw.probeStart.Store(0)
	if ctx.Err() != nil {
		return
	}
	diagnosed()
	w.followMaster(ctx, pw, &r, moved)
	supervisor.Judge(&r, prev, w.th)

	pw.stats.add(&r)
	now := time.Now()
	if r.Heartbeat.OK || r.Heartbeat.Misconfigured() {
		// A worker answered a misconfigured ping: the pool serves.
		pw.failures = 0
		pw.lastBeat = now
	} else if r.Heartbeat.Failed() {
		// An inconclusive heartbeat neither fails nor succeeds: the streak
		// stays where it was.
		pw.failures++
	}
	w.detect(pw, prev, &r)
	w.actions.maybeReload(ctx, target, &r, pw.failures >= w.cfg.UnhealthyAfter, killed)
	w.seeMaster(&r)
	pw.deadline = w.nextDeadline(&r)

	w.publish(pw, target, &r, prev == nil)
}

// cleanBeat reports a previous report whose heartbeat succeeded and proved
// it.
func cleanBeat(prev *supervisor.PoolReport) bool {
	return prev != nil && prev.Heartbeat.OK && prev.Heartbeat.Inconclusive == ""
}

// ownSocketWait is how long a read through the own socket of a pool with
// pm.status_listen is waited for before its listener is read instead. A
// free worker answers within a millisecond, and a read that has not
// answered within 10 ms stands in for no ping (BeatFromStatus); waiting
// longer holds back what the listener shows (hung workers, and their kill
// timers), waiting less reads the listener whenever php-fpm is slow to
// answer on a loaded machine, and each read of it after its idle timeout
// (10 s) forks a worker of its hidden pool: at 100 pools with a wait of
// 100 ms, php-fpm spent a third of a core on that.
const ownSocketWait = 500 * time.Millisecond

// listenEvery is the longest time between two reads of a healthy pool's
// status listener: within the idle timeout (10 s) of its hidden ondemand
// pool, with room for a late probe on a loaded machine, so that its worker
// stays. A read after the worker idled out forks another (at 100 pools,
// reads every 10 s cost php-fpm a third of a core), and a read that comes
// while php-fpm is ending the idle worker can wait in the listener's
// queue until the next connection: the listener would be slow exactly when
// the pool's own workers are busy and it is needed. The tick that reads it
// is the last one before listenEvery would pass: with the interval
// stretched while fpmguard is starved (2 s, 4 s), the reads come sooner.
const listenEvery = 8 * time.Second

// throughOwnSocket says whether a tick reads the status page of a pool
// with pm.status_listen through the pool's own socket, as a pool without
// it always does: the read then stands in for the heartbeat, and most
// healthy ticks cost one FastCGI exchange instead of two. It does while a
// worker is free: the last look saw an idle one and a clean heartbeat, and
// nothing waits in the socket's queue now; and while the next tick would
// still come within listenEvery of the last read of the listener (else
// this tick reads it, and pings). The listener is read
// instead on the first tick, on every one after a heartbeat that was not a
// clean success, and at a deadline, when the page must answer whatever the
// workers do; and when the read through the pool's socket fails or does
// not answer at once (ownSocketWait), in the same tick.
func (w *Watcher) throughOwnSocket(t supervisor.Target, prev *supervisor.PoolReport, atDeadline bool, listened time.Time) bool {
	if t.StatusAddress.IsZero() {
		return true
	}
	if atDeadline || t.PingPath == "" || w.listenerDue(listened) || !cleanBeat(prev) || !prev.Status.OK || prev.Queue() > 0 {
		return false
	}
	if !prev.AnyIdle() {
		return false
	}
	q, err := supervisor.ReadSocketQueue(t.Address)
	return err == nil && q.Length == 0
}

// listenerDue says whether a tick reads a healthy pool's status listener to
// keep its worker (listenEvery): when it was last read listenEvery ago, or
// when the next tick, an interval away, would come later than that. An
// interval longer than listenEvery keeps no worker: the listener is then
// read when listenEvery has passed.
func (w *Watcher) listenerDue(listened time.Time) bool {
	since, interval := time.Since(listened), w.pace.Interval()
	return since >= listenEvery || (interval < listenEvery && since+interval > listenEvery)
}

// nextDeadline is the first moment a request in flight on r's status page
// grows older than --hung-after, after the page was read (the probe judged
// what came before); zero when none does. The probe loop probes the pool
// then, if that comes before its interval: a hung worker is judged on
// time whatever the interval. (Kills have timers of their own:
// deadline.go.) A pool with no long request costs nothing more.
func (w *Watcher) nextDeadline(r *supervisor.PoolReport) time.Time {
	var first time.Time
	if w.th.HungAfter <= 0 {
		return first
	}
	for _, p := range r.Processes {
		start, ok := r.RequestStart(p)
		if !ok || p.ProbeRequest() {
			continue
		}
		// A millisecond past: judged older than the threshold, not as old.
		at := start.Add(w.th.HungAfter + time.Millisecond)
		if at.After(r.StatusAt()) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// publish makes r the pool's latest view, and keeps it in the history.
func (w *Watcher) publish(pw *poolWatch, target supervisor.Target, r *supervisor.PoolReport, first bool) {
	if w.cfg.History != nil {
		// Not for a pool SetTargets removed meanwhile: its history is gone.
		pw.mu.Lock()
		if !pw.removed {
			w.cfg.History.AddPool(target, r, time.Now())
		}
		pw.mu.Unlock()
	}
	pw.view.Store(&PoolView{
		Report: r, Stats: pw.stats.clone(), ScrapeURI: target.ScrapeURI(),
		Failures: pw.failures, LastBeat: pw.lastBeat, LastProbe: time.Now(),
	})
	pw.diag.reports.keep(r)
	if first {
		w.countProbed(pw)
	}
}

// countProbed counts a pool as probed once, for the opcache's first read:
// at its first probe, or when SetTargets removed it before. Pools added
// later were never waited for.
func (w *Watcher) countProbed(pw *poolWatch) {
	if pw.counted.CompareAndSwap(false, true) && w.unprobed.Add(-1) == 0 {
		w.probedOnce.Do(func() { close(w.probed) })
	}
}

// seeMaster counts a new master pid under a known name as a restart.
func (w *Watcher) seeMaster(r *supervisor.PoolReport) {
	m := r.Master
	if m == nil || !m.Alive || m.PID == 0 {
		return
	}
	name := r.MasterName
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
	prev := map[int]*supervisor.OpcacheReport{}
	for read := true; ; read = false {
		if !read {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		targets, pools := w.probedPools()
		if len(pools) == 0 {
			continue
		}
		reports := w.prober.Opcache.Probe(ctx, targets, pools, prev)
		if ctx.Err() != nil {
			return
		}
		reports = keepIdle(reports, pools, prev)
		next := map[int]*supervisor.OpcacheReport{}
		for i := range reports {
			o := &reports[i]
			if p := prev[o.MasterPID]; (p == nil && o.Health != supervisor.HealthOK) || (p != nil && p.Health != o.Health) {
				w.events.Add(event.Event{MasterName: o.Master, Master: o.MasterPID, Kind: event.KindOpcache, Message: fmt.Sprintf("opcache of master %d is %s: %s", o.MasterPID, o.Health, strings.Join(o.Reasons, "; "))})
			}
			next[o.MasterPID] = o
		}
		prev = next
		if w.cfg.History != nil {
			w.cfg.History.AddOpcache(reports, time.Now())
		}
		w.mu.Lock()
		w.opcache = reports
		w.mu.Unlock()
	}
}

// probedPools returns the targets and their latest reports, skipping pools
// not probed yet.
func (w *Watcher) probedPools() ([]supervisor.Target, []supervisor.PoolReport) {
	var targets []supervisor.Target
	var pools []supervisor.PoolReport
	for _, pw := range w.watched() {
		v := pw.view.Load()
		if v == nil {
			continue
		}
		pw.mu.Lock()
		targets = append(targets, pw.target)
		pw.mu.Unlock()
		pools = append(pools, *v.Report)
	}
	return targets, pools
}

// keepIdle keeps the last opcache report of each live master that was not
// read because every pool of it is an idle ondemand pool: a read would
// start a worker, and the segment has not changed without requests.
func keepIdle(reports []supervisor.OpcacheReport, pools []supervisor.PoolReport, prev map[int]*supervisor.OpcacheReport) []supervisor.OpcacheReport {
	read := map[int]bool{}
	for _, o := range reports {
		read[o.MasterPID] = true
	}
	for _, p := range pools {
		m := p.Master
		if m == nil || !m.Alive || read[m.PID] || prev[m.PID] == nil || !p.Heartbeat.Idle {
			continue
		}
		o := *prev[m.PID]
		o.Inconclusive = ""
		reports = append(reports, o)
		read[m.PID] = true
	}
	return reports
}
