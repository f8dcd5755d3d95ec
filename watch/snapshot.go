package watch

import (
	"maps"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Snapshot is everything the watcher knows at one moment. It is never
// changed once made: metrics, HTTP, events and the terminal read it, and
// nothing else of the watcher.
type Snapshot struct {
	Time  time.Time
	Pools []PoolView // in target order
	// Opcache has one entry per master, when the opcache was read.
	Opcache []supervisor.OpcacheReport
	// Actions counts what fpmguard did or declined, by pool, action and
	// result.
	Actions map[ActionKey]uint64
	// MasterRestarts counts the new master pids seen under each master
	// name.
	MasterRestarts map[string]uint64
	// Nginx counts the upstream failures nginx logged, when it is followed
	// and every log it follows has been opened; nil otherwise.
	Nginx map[nginxlog.Key]uint64
	// Exits counts the workers that exited, by pool and cause, for the
	// pools whose master's error log is followed (deaths.go): every cause
	// of such a pool is there, 0 included.
	Exits map[ExitKey]uint64
	Self  Self
}

// PoolView is one pool as last probed.
type PoolView struct {
	// Report is the pool's latest report; for a pool not probed yet, one
	// that says so: health unknown, and nothing measured.
	Report *supervisor.PoolReport
	Stats  PoolStats
	// ScrapeURI names the status page as the established exporter does
	// (supervisor.Target.ScrapeURI).
	ScrapeURI string
	// Failures is the heartbeat failures in a row; inconclusive ones are
	// not counted.
	Failures  int
	LastBeat  time.Time // the last good heartbeat
	LastProbe time.Time // the last probe that finished, whatever its outcome
}

// Probed reports a pool whose first probe has ended: until then its
// report holds nothing measured.
func (v *PoolView) Probed() bool { return !v.LastProbe.IsZero() }

// Self is fpmguard's own state: its lag, and what it costs.
type Self struct {
	LagSeconds      float64        // time its timers fired late, in all
	Throttling      lag.Throttling // of its cgroup, since it started
	Interval        time.Duration  // between probes of a pool now
	DroppedLogLines uint64         // log lines it could not write
}

// Snapshot returns what the watcher knows now, never waiting on php-fpm.
func (w *Watcher) Snapshot() *Snapshot {
	pools := w.watched()
	s := &Snapshot{Time: time.Now().UTC(), Pools: make([]PoolView, len(pools)), Actions: w.actions.Counts()}
	for i, pw := range pools {
		if v := pw.view.Load(); v != nil {
			s.Pools[i] = *v
			continue
		}
		pw.mu.Lock()
		t := pw.target
		pw.mu.Unlock()
		r := supervisor.NotProbed(t, "not probed yet")
		s.Pools[i] = PoolView{Report: &r, ScrapeURI: t.ScrapeURI()}
	}
	w.mu.Lock()
	s.Opcache = w.opcache
	s.MasterRestarts = make(map[string]uint64, len(w.masters))
	for name, m := range w.masters {
		s.MasterRestarts[name] = m.restarts
	}
	w.mu.Unlock()
	w.deaths.attach(s)
	if w.nginx != nil && w.nginx.Opened() {
		// Before its log is open, nginx's failures are not known: none
		// are shown rather than zeros.
		s.Nginx = w.nginx.Counts()
	}
	s.Self = Self{
		LagSeconds:      w.prober.Lag.LateTotal().Seconds(),
		Throttling:      w.prober.Lag.Throttling(),
		Interval:        w.pace.Interval(),
		DroppedLogLines: event.DroppedLogLines(),
	}
	return s
}

// Report is the snapshot as `fpmguard status -o json` prints it.
func (s *Snapshot) Report() *supervisor.Report {
	rep := &supervisor.Report{Version: supervisor.ReportVersion, Time: s.Time, Pools: make([]supervisor.PoolReport, len(s.Pools)), Opcache: s.Opcache}
	for i, p := range s.Pools {
		rep.Pools[i] = *p.Report
	}
	return rep
}

// clone copies the counts, which the loop goes on changing.
func (s PoolStats) clone() PoolStats {
	c := s
	c.Buckets = append([]uint64(nil), s.Buckets...)
	c.Failures = maps.Clone(s.Failures)
	return c
}
