package watch

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fpmlog"
	"github.com/fpmguard/fpmguard/safefile"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Why workers died (issue 21): the watcher follows the error log of each
// master whose pools it watches (package fpmlog), read inside the master's
// root through package safefile, or is fed php-fpm's stderr under `run`.
// Each death gets its cause (fpmguard's own kills are told to the
// classifier before the signal; the memory cgroups of the master and of
// each new worker are watched for OOM kills), the request the worker was
// running when the last status read saw it, and the 502s nginx answered
// for the pool at that moment. All of it runs beside the probe loop: a
// scan every second reads the views the loop published.

// ExitKey labels a count of worker exits.
type ExitKey struct {
	Pool  supervisor.PoolID
	Cause fpmlog.Cause
}

// Bounds and delays of the deaths kept and told.
const (
	scanEvery = time.Second
	// masterGoneAfter is how long a master no pool's report names keeps
	// its log followed: the exits of its last workers come after it.
	masterGoneAfter = 30 * time.Second
	// seenFor is how long the last request of a worker no status page
	// names any more is remembered, for its exit line.
	seenFor = 2 * time.Minute
	// nginxSettle is how long a death waits for nginx's lines of the same
	// moment to be read (nginx's log is polled every 250 ms).
	nginxSettle = 2500 * time.Millisecond
	// recentDeaths and recentFor bound the deaths a pool's report shows.
	recentDeaths = 10
	recentFor    = 15 * time.Minute
	// logUnreadAfter is how long a log may stay unopened before fpmguard
	// says why deaths are not followed.
	logUnreadAfter = 10 * time.Second
)

// deathWatch is the watcher's follower of php-fpm's error logs.
type deathWatch struct {
	w *Watcher

	mu      sync.Mutex
	ctx     context.Context // Run's, once it runs
	logs    map[int]*masterLog
	seen    map[int]seenWorker
	recent  map[supervisor.PoolID][]supervisor.WorkerDeath // by pool, newest first
	counts  map[ExitKey]uint64
	running sync.WaitGroup // followers, and deaths waiting for nginx
}

// masterLog is one master's error log and the classifier of its deaths.
type masterLog struct {
	pid        int
	path       string // the log as fpmguard opens it, "" when fed only
	follower   *fpmlog.Follower
	classifier *fpmlog.Classifier
	fed        bool // a line came through Feed
	lastSeen   time.Time
	started    time.Time
	workers    map[int]uint64  // pid -> start ticks: the workers seen
	cgroups    map[string]bool // /proc/PID/cgroup contents watched
	openErr    error           // the last failed open of the log
	told       bool            // the unread log was reported
	stop       context.CancelFunc
}

// seenWorker is the request a worker was last seen running.
type seenWorker struct {
	start   uint64
	pool    supervisor.PoolID
	request string // "GET /x.php", "" while idle
	at      time.Time
}

func newDeathWatch(w *Watcher) *deathWatch {
	return &deathWatch{w: w, logs: map[int]*masterLog{}, seen: map[int]seenWorker{}, recent: map[supervisor.PoolID][]supervisor.WorkerDeath{}, counts: map[ExitKey]uint64{}}
}

// run scans the pools every second until ctx ends, then stops every
// follower.
func (dw *deathWatch) run(ctx context.Context) {
	dw.mu.Lock()
	dw.ctx = ctx
	dw.mu.Unlock()
	tick := time.NewTicker(scanEvery)
	defer tick.Stop()
	probed := dw.w.probed
	for {
		dw.scan()
		select {
		case <-probed:
			// Every pool's first probe is in: its masters are known now.
			probed = nil
		case <-ctx.Done():
			dw.mu.Lock()
			for _, ml := range dw.logs {
				ml.stop()
			}
			dw.mu.Unlock()
			dw.running.Wait()
			return
		case <-tick.C:
		}
	}
}

// scan reads the latest view of every pool: a follower for each live
// master, the cgroup of each new worker, the request each worker runs.
func (dw *deathWatch) scan() {
	now := time.Now()
	dw.mu.Lock()
	defer dw.mu.Unlock()
	if dw.ctx == nil {
		return
	}
	for _, pw := range dw.w.watched() {
		v := pw.view.Load()
		if v == nil {
			continue
		}
		r := v.Report
		m := r.Master
		if m == nil || !m.Alive || m.PID <= 0 {
			continue
		}
		pw.mu.Lock()
		t := pw.target
		pw.mu.Unlock()
		ml := dw.masterLocked(m.PID, t)
		ml.lastSeen = now
		for i := range r.Processes {
			p := &r.Processes[i]
			if p.StartTicks() == 0 {
				continue
			}
			sw := seenWorker{start: p.StartTicks(), pool: pw.id, at: now}
			if !p.Idle() && !p.ProbeRequest() {
				sw.request = requestText(p)
			}
			dw.seen[p.PID] = sw
			if ml.workers[p.PID] != p.StartTicks() {
				ml.workers[p.PID] = p.StartTicks()
				ml.watchCgroup(p.PID)
			}
		}
	}
	for pid, ml := range dw.logs {
		switch {
		case now.Sub(ml.lastSeen) > masterGoneAfter:
			ml.stop()
			delete(dw.logs, pid)
		case ml.path != "" && !ml.told && !ml.follower.Opened() && now.Sub(ml.started) > logUnreadAfter:
			ml.told = true
			why := "it does not exist yet"
			if ml.openErr != nil {
				why = ml.openErr.Error()
			}
			dw.w.events.Add(event.Event{Master: pid, Kind: event.KindDiagnosis,
				Message: fmt.Sprintf("php-fpm's error log %s of master %d cannot be read (%s): fpmguard cannot tell why its workers die until it can", ml.path, pid, why)})
		}
		for w, start := range ml.workers {
			if s, ok := dw.seen[w]; !ok || s.start != start {
				delete(ml.workers, w)
			}
		}
	}
	for pid, s := range dw.seen {
		if now.Sub(s.at) > seenFor {
			delete(dw.seen, pid)
		}
	}
}

// requestText is a request as a death names it: method and URI, never
// the query string.
func requestText(p *supervisor.ProcessState) string {
	return strings.TrimSpace(p.RequestMethod + " " + supervisor.StripQuery(p.RequestURI))
}

// masterLocked returns master pid's log, following it from now when it is
// new. dw.mu is held.
func (dw *deathWatch) masterLocked(pid int, t supervisor.Target) *masterLog {
	if ml := dw.logs[pid]; ml != nil {
		return ml
	}
	now := time.Now()
	ml := &masterLog{pid: pid, classifier: fpmlog.NewClassifier(), lastSeen: now, started: now, workers: map[int]uint64{}, cgroups: map[string]bool{}}
	var f *fpmlog.Follower
	switch p := t.ErrorLog; {
	case p == "" || strings.EqualFold(p, "syslog") || strings.HasPrefix(strings.ToLower(p), "syslog:") || stderrLog(p):
		// Nothing to follow: under run, php-fpm's stderr is fed (Feed).
		f = fpmlog.NewFollower("", ml.classifier)
	default:
		ml.path = filepath.Join(t.Root, p)
		f = fpmlog.NewFollower(ml.path, ml.classifier)
		root, trust := t.Root, dw.w.prober.Trust
		f.Open = func(string) (*os.File, error) {
			// The master writes its log; the pool user may own its
			// directory: no link, no FIFO, an owner fpmguard trusts.
			file, _, err := safefile.Open(root, p, safefile.Rules{MaxBytes: 1 << 62, Owners: trust.FileOwners()})
			dw.mu.Lock()
			ml.openErr = err
			dw.mu.Unlock()
			return file, err
		}
	}
	f.Master = pid
	f.OnDeath = func(d fpmlog.Death) { dw.died(ml, d) }
	ml.follower = f
	ml.watchCgroup(pid)
	ctx, cancel := context.WithCancel(dw.ctx)
	ml.stop = cancel
	dw.running.Go(func() { f.Run(ctx) })
	dw.logs[pid] = ml
	return ml
}

// stderrLog reports an error_log that is php-fpm's own stderr: under run,
// fpmguard reads it from the pipe it gave php-fpm.
func stderrLog(p string) bool {
	return p == "/proc/self/fd/2" || p == "/dev/stderr" || p == "/dev/fd/2"
}

// watchCgroup watches the memory cgroup pid is in for OOM kills, unless a
// process of the same cgroup is watched already: the master and its
// workers mostly share one.
func (ml *masterLog) watchCgroup(pid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || ml.cgroups[string(b)] {
		return
	}
	if ml.classifier.WatchCgroupOf(pid) == nil {
		ml.cgroups[string(b)] = true
	}
}

// feed reads a line of php-fpm's stderr under run, for its master: the
// master of the watched pools.
func (dw *deathWatch) feed(line string) {
	dw.mu.Lock()
	var ml *masterLog
	if dw.ctx != nil {
		for _, pw := range dw.w.watched() {
			pw.mu.Lock()
			t := pw.target
			pw.mu.Unlock()
			if t.MasterPID > 0 {
				ml = dw.masterLocked(t.MasterPID, t)
				ml.fed = true
				break
			}
		}
	}
	dw.mu.Unlock()
	if ml != nil {
		ml.follower.Feed(line)
	}
}

// signalled tells the classifier of pid's master that fpmguard is about
// to signal it: its exit is fpmguard's kill.
func (dw *deathWatch) signalled(pid int) {
	osp, err := dw.w.prober.Procs.ReadProcess(context.Background(), pid)
	if err != nil {
		return
	}
	dw.mu.Lock()
	ml := dw.logs[osp.PPID]
	dw.mu.Unlock()
	if ml != nil {
		ml.classifier.Signalled(pid)
	}
}

// died counts a death of a watched pool of ml's master, and reports a
// failure, once nginx's lines of the moment are read.
func (dw *deathWatch) died(ml *masterLog, d fpmlog.Death) {
	pw := dw.watchedPool(ml.pid, d.Pool)
	if pw == nil {
		return // a line may name any pool: only the watched are counted
	}
	id := pw.id
	dw.mu.Lock()
	dw.counts[ExitKey{Pool: id, Cause: d.Cause}]++
	req := ""
	if s, ok := dw.seen[d.PID]; ok && s.pool == id {
		req = s.request
	}
	ctx := dw.ctx
	dw.mu.Unlock()
	if !d.Failure() {
		return // pm.max_requests, an idle worker retired: how php-fpm works
	}
	if r := pw.diag.reports.request(d.PID); r != "" {
		req = r
	}
	dw.running.Go(func() {
		select {
		case <-ctx.Done():
		case <-time.After(nginxSettle):
		}
		wd := supervisor.NewWorkerDeath(d, req, dw.nginxAt(id, d))
		dw.mu.Lock()
		list := append([]supervisor.WorkerDeath{wd}, dw.recent[id]...)
		dw.recent[id] = list[:min(len(list), recentDeaths)]
		dw.mu.Unlock()
		dw.w.events.Add(event.Event{Pool: id.Pool, MasterName: id.Master, Master: ml.pid, PID: d.PID, Kind: event.KindWorkerExit, Message: wd.Line})
	})
}

// nginxAt returns the 502s nginx answered for pool at the moment d
// died: read within a second before its second and two after (php-fpm's
// log says the second; nginx's lines are read a poll after they are
// written).
func (dw *deathWatch) nginxAt(pool supervisor.PoolID, d fpmlog.Death) []supervisor.NginxCount {
	n := dw.w.nginx
	if n == nil {
		return nil
	}
	sec := d.Time.Truncate(time.Second)
	var out []supervisor.NginxCount
	for k, c := range n.Between(pool, sec.Add(-time.Second), sec.Add(2*time.Second)) {
		if k.Status == 502 {
			out = append(out, supervisor.NginxCount{Status: k.Status, Cause: string(k.Cause), Text: k.Cause.Text(), Count: c})
		}
	}
	slices.SortFunc(out, func(a, b supervisor.NginxCount) int { return b.Count - a.Count })
	return out
}

// watchedPool is the watched pool of that name under master pid, nil if
// none.
func (dw *deathWatch) watchedPool(master int, name string) *poolWatch {
	for _, pw := range dw.w.watched() {
		pw.mu.Lock()
		t := pw.target
		pw.mu.Unlock()
		if t.Name != name {
			continue
		}
		if t.MasterPID == master {
			return pw
		}
		if v := pw.view.Load(); v != nil && v.Report.Master != nil && v.Report.Master.PID == master {
			return pw
		}
	}
	return nil
}

// latest is the latest report of pool, nil if none.
func (w *Watcher) latest(pool supervisor.PoolID) *supervisor.PoolReport {
	if pw := w.poolByID(pool); pw != nil {
		if v := pw.view.Load(); v != nil {
			return v.Report
		}
	}
	return nil
}

// attach puts each pool's recent deaths into its report in s, and the
// exit counts: a report is copied before it changes, as views are shared.
func (dw *deathWatch) attach(s *Snapshot) {
	now := time.Now()
	dw.mu.Lock()
	defer dw.mu.Unlock()
	for i := range s.Pools {
		v := &s.Pools[i]
		var keep []supervisor.WorkerDeath
		for _, d := range dw.recent[v.Report.ID()] {
			if now.Sub(d.Time) <= recentFor {
				keep = append(keep, d)
			}
		}
		if len(keep) == 0 {
			continue
		}
		r := *v.Report
		r.Deaths = keep
		v.Report = &r
	}
	s.Exits = dw.exitsLocked()
}

// exitsLocked counts the exits of every watched pool whose master's log is
// followed, every cause included: a count that is 0 is known to be.
func (dw *deathWatch) exitsLocked() map[ExitKey]uint64 {
	out := maps.Clone(dw.counts)
	for _, ml := range dw.logs {
		if !ml.fed && (ml.path == "" || !ml.follower.Opened()) {
			continue
		}
		for _, pw := range dw.w.watched() {
			v := pw.view.Load()
			if v == nil || v.Report.Master == nil || v.Report.Master.PID != ml.pid {
				continue
			}
			for _, c := range fpmlog.Causes {
				k := ExitKey{Pool: pw.id, Cause: c}
				out[k] += 0
			}
		}
	}
	return out
}

// lately says in a few words which workers of pool died in the last d,
// for the events that report nginx's failures: "worker 4711 was
// OOM-killed while running POST /import.php".
func (dw *deathWatch) lately(pool supervisor.PoolID, d time.Duration) string {
	dw.mu.Lock()
	defer dw.mu.Unlock()
	var parts []string
	for _, wd := range dw.recent[pool] {
		if time.Since(wd.Time) <= d {
			parts = append(parts, strings.SplitN(wd.Line, ": ", 2)[0])
		}
	}
	return strings.Join(parts, "; ")
}

// describe says what fpmguard saw of a pool, for nginx's events: the
// workers that died just before, then what its workers do.
func (w *Watcher) describe(pool supervisor.PoolID) string {
	r := w.latest(pool)
	if r == nil {
		return ""
	}
	s := r.Summary()
	if d := w.deaths.lately(pool, 2*nginxSettle+w.cfg.Interval); d != "" {
		s = d + "; " + s
	}
	return s
}

// forget drops the exit counts and recent deaths of a pool no longer
// watched.
func (dw *deathWatch) forget(pool supervisor.PoolID) {
	dw.mu.Lock()
	defer dw.mu.Unlock()
	delete(dw.recent, pool)
	for k := range dw.counts {
		if k.Pool == pool {
			delete(dw.counts, k)
		}
	}
}

// FeedErrorLog reads a line php-fpm wrote to its stderr, under run: its
// error log, when error_log names stderr (/proc/self/fd/2).
func (w *Watcher) FeedErrorLog(line string) { w.deaths.feed(line) }

// setupDiagnosis ties the diagnosis and the deaths to the watcher: the
// diagnoser's warnings become events, a kill's record gets the worker's
// wait and stack, and every signal fpmguard sends is told to the
// classifier of the worker's master first.
func (w *Watcher) setupDiagnosis() {
	w.deaths = newDeathWatch(w)
	if d := w.prober.Diagnoser; d != nil {
		d.Warn = w.diagnosisWarning
	}
	w.actions.evidence = w.killEvidence
	signal := w.actions.signal
	w.actions.signal = func(pid int, sig syscall.Signal) error {
		w.deaths.signalled(pid)
		return signal(pid, sig)
	}
}
