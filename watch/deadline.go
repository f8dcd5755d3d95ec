package watch

import (
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

// Kills at the deadline. Each probe of a pool arms the pool's kill timer
// for the moment the first request it saw in flight grows older than
// --kill-hung-after. The timer acts on its own, beside the pool's probes
// (one may be waiting out a ping behind busy workers): it reads the status
// page once, through pm.status_listen when the pool has it, and kills,
// through the actor's rules, each request due that still runs in the same
// worker (same pid, same request by php-fpm's count, same URI and start).
// A request that ended, or a worker that changed, is dropped: the next
// probe arms the timer anew from what it sees, so a pool whose requests
// all end in time never has its timer fire. A request the kill cap holds
// back waits for a worker on its way out to go (Actor.gone), not for the
// next probe.
//
// A probe sees every request before its deadline: it comes at least every
// --kill-hung-after, less a margin (lookEvery). Timers run only while the
// watcher runs.

// killTimers is a pool's requests armed to be killed at their deadline.
type killTimers struct {
	// run is held by whatever kills in the pool and arms its timer, the
	// pool's tick or its timer: one at a time, so that a worker gone
	// between a kill held back by the cap and its arming (workerGone waits
	// for run) is never missed.
	run sync.Mutex

	mu    sync.Mutex
	armed map[int]armedKill // by pid
	timer *time.Timer
}

// armedKill is a request armed to be killed at its deadline.
type armedKill struct {
	candidate
	at time.Time // when it grows older than --kill-hung-after
	// waiting: past it, held back by the kill cap. It is acted on when a
	// worker on its way out has gone.
	waiting bool
}

// armKills arms pw's kill timer from r, the report of the probe under way,
// and capped, the requests that probe's kills held back: every request in
// flight whose deadline comes after the page was read (the probe judged
// the others), replacing what an earlier probe armed. pw.kills.run is
// held.
func (w *Watcher) armKills(pw *poolWatch, r *supervisor.PoolReport, capped []candidate) {
	after := w.cfg.Actions.KillHungAfter
	if after <= 0 || w.runCtx == nil || w.runCtx.Err() != nil {
		return
	}
	armed := map[int]armedKill{}
	for _, p := range r.Processes {
		start, ok := r.RequestStart(p)
		if !ok || p.ProbeRequest() {
			continue
		}
		// A millisecond past: judged older than the threshold, not as old.
		if at := start.Add(after + time.Millisecond); at.After(r.StatusAt()) {
			armed[p.PID] = armedKill{candidate: candidate{r, p}, at: at}
		}
	}
	for _, c := range capped {
		armed[c.p.PID] = armedKill{candidate: c, at: r.StatusAt(), waiting: true}
	}
	pw.kills.mu.Lock()
	defer pw.kills.mu.Unlock()
	pw.kills.armed = armed
	w.resetKillTimer(pw)
}

// resetKillTimer sets pw's kill timer for the first deadline armed, or
// stops it. pw.kills.mu is held.
func (w *Watcher) resetKillTimer(pw *poolWatch) {
	var first time.Time
	for _, a := range pw.kills.armed {
		if !a.waiting && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	switch {
	case first.IsZero():
		if pw.kills.timer != nil {
			pw.kills.timer.Stop()
		}
	case pw.kills.timer == nil:
		pw.kills.timer = time.AfterFunc(time.Until(first), func() { w.killDue(pw, false) })
	default:
		pw.kills.timer.Reset(time.Until(first))
	}
}

// killDue kills pw's armed requests whose deadline has come, and, with
// waiting, those the kill cap held back, then sets the timer for the next
// deadline.
func (w *Watcher) killDue(pw *poolWatch, waiting bool) {
	pw.kills.run.Lock()
	defer pw.kills.run.Unlock()
	ctx := w.runCtx
	if ctx == nil || ctx.Err() != nil {
		return
	}
	pw.mu.Lock()
	t, removed := pw.target, pw.removed
	pw.mu.Unlock()
	if removed {
		return // SetTargets dropped the pool: its kills with it
	}
	now := time.Now()
	var due []candidate
	pw.kills.mu.Lock()
	for pid, a := range pw.kills.armed {
		if (a.waiting && waiting) || (!a.waiting && !a.at.After(now)) {
			due = append(due, a.candidate)
			delete(pw.kills.armed, pid)
		}
	}
	pw.kills.mu.Unlock()
	if len(due) > 0 {
		_, capped := w.actions.kill(ctx, t, due)
		pw.kills.mu.Lock()
		if pw.kills.armed == nil {
			pw.kills.armed = map[int]armedKill{}
		}
		for _, c := range capped {
			pw.kills.armed[c.p.PID] = armedKill{candidate: c, at: now, waiting: true}
		}
		pw.kills.mu.Unlock()
	}
	pw.kills.mu.Lock()
	w.resetKillTimer(pw)
	pw.kills.mu.Unlock()
}

// workerGone acts on the kills of pool that the kill cap held back: one of
// its workers on its way out has gone.
func (w *Watcher) workerGone(pool supervisor.PoolID) {
	if pw := w.poolByID(pool); pw != nil {
		w.killDue(pw, true)
	}
}

// stopKillTimers stops every pool's kill timer, when the watcher stops.
func (w *Watcher) stopKillTimers() {
	for _, pw := range w.watched() {
		pw.stopKills()
	}
}

// stopKills stops pw's kill timer and forgets what it armed: the watcher
// stops, or no longer watches the pool.
func (pw *poolWatch) stopKills() {
	pw.kills.mu.Lock()
	defer pw.kills.mu.Unlock()
	if pw.kills.timer != nil {
		pw.kills.timer.Stop()
	}
	pw.kills.armed = nil
}
