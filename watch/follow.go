package watch

// Seeing php-fpm change under a pool. A reload (SIGUSR2, what `systemctl
// reload` sends) keeps the master's pid: php-fpm ends its workers (SIGQUIT,
// then at once SIGTERM unless process_control_timeout says to wait), runs
// its own program again (execve: the kernel gives it new code and stack
// addresses, its ExecID), reads its config, opens the sockets of pools new
// or moved, keeps those of the others, and starts workers. A restart gives
// a new pid. Each tick compares the pool's master with the one it saw last
// and tells the session (Changed), which reads php-fpm's configs again and
// gives the watcher the pools they hold now (SetTargets).
//
// What fails while php-fpm reloads proves nothing: a heartbeat a worker
// was serving when php-fpm ended it is reset, a socket of a pool php-fpm
// moved or dropped refuses. A failure within reloadGrace of a reload seen,
// of the pool's being added or moved, is inconclusive, as is one that a
// second look at the master explains: a reset or a refusal, then the
// master running its program anew within reloadLook. Nothing else is
// excused: a master gone is down, one that serves nothing after its reload
// fails its heartbeat once the grace is over, and a heartbeat that waited
// out its timeout (a reload waiting process_control_timeout for busy
// workers serves no one meanwhile) counts as ever.

import (
	"context"
	"fmt"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Changed is signalled when php-fpm changed under a pool watched: a master
// reloaded (ran its program again), a new master pid, a master gone, a
// status page saying php-fpm started again. php-fpm's configs may hold
// other pools now.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) tellChanged() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// The second look at a master after a failure a reload would cause: read
// its /proc/PID/stat every reloadLookEvery, for reloadLook at most. php-fpm
// runs its program again once every worker has ended, which SIGTERM makes
// a matter of milliseconds, and SIGKILL of a second at most.
const (
	reloadLook      = time.Second
	reloadLookEvery = 20 * time.Millisecond
)

// reloadGrace is how long after php-fpm changed under a pool a failure of
// it proves nothing: the tick that saw the change and the next one, and a
// second at least for php-fpm to open its sockets and start its workers.
func (w *Watcher) reloadGrace() time.Duration { return max(w.pace.Interval()*3/2, time.Second) }

// followMaster sees php-fpm's changes in r, the report of the pool's tick
// under way, and keeps a failure that a reload explains from counting.
// moved is when SetTargets gave the pool another address, zero if not.
// Only the pool's loop calls it, before the verdict.
func (w *Watcher) followMaster(ctx context.Context, pw *poolWatch, r *supervisor.PoolReport, moved time.Time) {
	if !moved.IsZero() {
		// The old address's failures say nothing of the new one.
		pw.failures, pw.standIns = 0, 0
		w.changedAt(pw, moved, "the pool moved to another socket")
	}
	m := r.Master
	if m != nil && m.PID > 0 {
		switch {
		case pw.masterPID == 0:
		case m.PID != pw.masterPID && m.Alive:
			w.tellChanged() // a restart, or a new master of the config
		case m.PID == pw.masterPID && m.ExecID != 0 && pw.masterExec != 0 && m.ExecID != pw.masterExec:
			w.changedAt(pw, time.Now(), fmt.Sprintf("master %d reloaded", m.PID))
		}
		if m.Alive {
			pw.masterPID = m.PID
		}
		if m.PID == pw.masterPID && m.ExecID != 0 {
			pw.masterExec = m.ExecID
		}
	}
	if gone := m != nil && m.Gone(); gone != pw.masterGone {
		pw.masterGone = gone
		if gone {
			w.tellChanged() // a restart's first half, or a php-fpm stopped
		}
	}
	if c := r.Counters; c != nil && !c.StartTime.IsZero() {
		if !pw.started.IsZero() && !c.StartTime.Equal(pw.started) {
			w.changedAt(pw, time.Now(), "php-fpm's status page says it started again")
		}
		pw.started = c.StartTime
	}

	if !failed(r) || m == nil || m.Gone() {
		return
	}
	since := time.Since(pw.reloadedAt)
	if since > w.reloadGrace() {
		if !w.reloadingNow(ctx, r) {
			return
		}
		w.changedAt(pw, time.Now(), fmt.Sprintf("master %d reloaded", m.PID))
		since = 0
	}
	excuse(r, fmt.Sprintf("php-fpm changed under pool %s %s ago (%s): a failure this close to it proves nothing", r.Name, human.Duration(since), pw.reloadWhy))
}

// changedAt records that php-fpm changed under the pool at, and why, and
// tells the session.
func (w *Watcher) changedAt(pw *poolWatch, at time.Time, why string) {
	pw.reloadedAt, pw.reloadWhy = at, why
	w.tellChanged()
}

// failed reports a failure in r that a reload could have caused: of the
// heartbeat (not one that waited behind hung workers), of the status read,
// or of a bare connection.
func failed(r *supervisor.PoolReport) bool {
	return (r.Heartbeat.Failed() && r.Heartbeat.WaitsBehindHung == 0) || r.Status.Failed() || (r.Connect != nil && r.Connect.Failure != nil)
}

// reloadingNow looks at r's master again after a failure that a reload
// causes, a request reset (its worker ended) or a socket refusing: it
// reports a master that ran its program anew since r read it, within
// reloadLook.
func (w *Watcher) reloadingNow(ctx context.Context, r *supervisor.PoolReport) bool {
	m := r.Master
	if !m.Alive || m.ExecID == 0 || !reloadSymptom(r) {
		return false
	}
	deadline := time.Now().Add(reloadLook)
	for {
		osp, err := w.prober.Procs.ReadProcess(ctx, m.PID)
		switch {
		case err != nil || osp.State == supervisor.OSGone || osp.State == supervisor.OSZombie:
			return false
		case osp.ExecID != 0 && osp.ExecID != m.ExecID:
			return true
		case time.Now().After(deadline):
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(reloadLookEvery):
		}
	}
}

// reloadSymptom reports a failure a reload causes: a reset, a refusal.
func reloadSymptom(r *supervisor.PoolReport) bool {
	for _, f := range []*supervisor.Failure{r.Heartbeat.Failure, r.Status.Failure, connectFailure(r)} {
		if f != nil && (f.Reason == fastcgi.ReasonReset || f.Reason == fastcgi.ReasonRefused) {
			return true
		}
	}
	return false
}

func connectFailure(r *supervisor.PoolReport) *supervisor.Failure {
	if r.Connect == nil {
		return nil
	}
	return r.Connect.Failure
}

// excuse makes r's failures inconclusive, saying why.
func excuse(r *supervisor.PoolReport, why string) {
	if r.Heartbeat.Failed() && r.Heartbeat.WaitsBehindHung == 0 {
		r.Heartbeat.Inconclusive = why + ": " + r.Heartbeat.Error
		r.Heartbeat.Error, r.Heartbeat.Failure = "", nil
	}
	if r.Status.Failed() {
		r.Status.Inconclusive = why + ": " + r.Status.Error
		r.Status.Error, r.Status.Failure = "", nil
	}
	if c := r.Connect; c != nil && c.Failure != nil {
		c.Error = why + ": " + c.Error
		c.Failure = nil
	}
}
