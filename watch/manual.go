package watch

import (
	"context"
	"fmt"
	"slices"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/supervisor"
)

// KillResult is the outcome of a kill a person asked for, in plain words.
type KillResult struct {
	Result  Result `json:"result"`
	Message string `json:"message"`
}

// Done reports a kill that was carried out, or would have been under
// --dry-run.
func (k KillResult) Done() bool { return k.Result == ResultOK || k.Result == ResultDryRun }

// ErrUnknownPool is returned for a pool the watcher does not watch, and
// ErrAmbiguousPool for a name more than one pool has.
var (
	ErrUnknownPool   = supervisor.ErrUnknownPool
	ErrAmbiguousPool = supervisor.ErrAmbiguousPool
)

// KillWorker SIGTERMs worker pid of pool because a person asked (the kill
// key of `fpmguard top`, or POST /kill of serve), through the rules the
// watchdog obeys: only a worker that still runs, on a status page read
// again now, the request the latest probe showed, never one serving
// fpmguard's own probe; its parent the pool's master, its title the
// pool's, its start time the one observed; the master alive; no more of
// the pool's workers on their way out at once than --max-kill-ratio
// allows (the watchdog's kill cap, which counts these too); within the
// action budget; nothing but a report under --dry-run. SIGKILL follows
// after the grace when it is still there. who names the person's side,
// for the event. Every outcome is counted and recorded as the watchdog's
// are; a pool that is not watched is refused with ErrUnknownPool and
// counted nowhere, so a caller cannot invent label values.
func (w *Watcher) KillWorker(ctx context.Context, pool string, pid int, who string) (KillResult, error) {
	pw, err := w.findPool(pool)
	if err != nil {
		return KillResult{}, err
	}
	pw.mu.Lock()
	t := pw.target
	pw.mu.Unlock()
	v := pw.view.Load()
	if v == nil {
		return KillResult{Result: ResultRefused, Message: fmt.Sprintf("not killing pid %d: pool %s has not been probed yet", pid, pool)}, nil
	}
	for _, p := range v.Report.Processes {
		if p.PID == pid {
			return w.actions.killByHand(ctx, t, v.Report, p, who), nil
		}
	}
	return KillResult{Result: ResultRefused, Message: fmt.Sprintf("not killing pid %d: the latest status page of pool %s does not name it", pid, pool)}, nil
}

// killByHand is KillWorker's part in the actor: the watchdog's checks, in
// its order, under the same kill cap.
func (a *Actor) killByHand(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, p supervisor.ProcessState, who string) KillResult {
	refuse := func(result Result, kind event.Kind, format string, args ...any) KillResult {
		a.count(t.ID(), ActionKill, result)
		return KillResult{Result: result, Message: a.event(t, r, kind, p.PID, nil, format, args...)}
	}
	if why := Unkillable(r, &p); why != "" {
		return refuse(ResultRefused, event.KindActionRefused, "not killing worker %d of pool %s (asked by %s): %s", p.PID, t.Name, who, why)
	}
	// The snapshot may be an interval old: read the status page again, so
	// that a request that ended meanwhile does not cost an idle worker, or
	// the worker's next request, its life.
	now, err := a.running(ctx, t)
	if err != nil {
		return refuse(ResultRefused, event.KindActionRefused, "not killing worker %d of pool %s (asked by %s): cannot re-read its status page to check it is still busy: %v", p.PID, t.Name, who, err)
	}
	if !now.same(r, p) {
		return refuse(ResultRefused, event.KindActionRefused, "not killing worker %d of pool %s (asked by %s): the request it ran has ended since fpmguard last looked, and another is never killed in its place", p.PID, t.Name, who)
	}
	switch res, dying, limit := a.claim(now, p); res {
	case ResultRefused:
		return refuse(ResultRefused, event.KindActionRefused, "not killing worker %d of pool %s again (asked by %s): it was sent SIGTERM already, and gets SIGKILL if still there %s after it", p.PID, t.Name, who, a.cfg.KillGrace)
	case ResultCapped:
		return refuse(ResultCapped, event.KindActionRefused, "not killing worker %d of pool %s now (asked by %s): %d of its %d workers are on their way out, and at most %d are at once (--max-kill-ratio %.2f); try again in a few seconds",
			p.PID, t.Name, who, dying, len(now.procs), limit, a.cfg.MaxKillRatio)
	}
	// The escalation to SIGKILL outlives the request that asked: it ends
	// by itself after the grace, and Run waits for it.
	res, msg := a.killOne(context.WithoutCancel(ctx), t, r, p, "on request of "+who, now.at)
	return KillResult{Result: res, Message: msg}
}

// Unkillable says why worker p of pool r, as a probe saw them, is never
// killed by hand, whatever the moment: "" when it may be, subject to the
// checks made right before the signal (the status page read again, the
// kill cap, the budget). top asks it before it offers the kill key, and
// killByHand before anything else.
func Unkillable(r *supervisor.PoolReport, p *supervisor.ProcessState) string {
	switch {
	case !supervisor.InRequest(p.State):
		return fmt.Sprintf("it runs no request (php-fpm says %q), and an idle worker is never killed", p.State)
	case p.ProbeRequest():
		return "it is serving one of fpmguard's own probes"
	case r.Master == nil || !r.Master.Alive:
		return "its master is not known to be alive, so nothing would respawn it"
	}
	return ""
}

// findPool is the watched pool a person named (supervisor.FindPool): by
// its name when no other pool has it, else by its ID.
func (w *Watcher) findPool(ref string) (*poolWatch, error) {
	pools := w.watched()
	ids := make([]supervisor.PoolID, len(pools))
	for i, pw := range pools {
		ids[i] = pw.id
	}
	id, err := supervisor.FindPool(ids, ref)
	if err != nil {
		return nil, err
	}
	return pools[slices.IndexFunc(pools, func(pw *poolWatch) bool { return pw.id == id })], nil
}
