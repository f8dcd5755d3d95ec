package watch

import (
	"context"
	"sync"
	"time"
)

// The pools are probed one after the other by one goroutine, the probe
// loop, not each by a goroutine of its own. A probe blocks in a few short
// system calls (the FastCGI exchange waits some tens of µs for a worker);
// with many probes in flight at once, Go's runtime hands the processor of
// each blocked thread to another thread and wakes idle ones to look for
// work, and these wake-ups cost more CPU than the probes themselves (100
// quiet pools: 230 µs of CPU per pool-tick with a goroutine each, 175 µs
// serial). One probe at a time leaves the runtime nothing to hand over.
//
// A hung pool must still not hold the others back: a tick that runs longer
// than stallAfter (a probe waiting out --timeout, a config test before a
// reload) hands the loop to a new goroutine, which goes on with the other
// pools. The stalled goroutine ends when its tick does. So a hung pool
// delays the pools after it by stallAfter, and many hung pools are waited
// on in parallel, each on its own goroutine, as before.

// A pool is probed one interval after its last probe began (or a little
// less than --kill-hung-after when that is shorter: lookEvery), or sooner,
// at a deadline: when a request the last probe saw grows older than
// --hung-after (nextDeadline). Probes on the interval wake on the slot
// grid; those at a deadline wake on time. Kills at --kill-hung-after have
// timers of their own (deadline.go).

// stallAfter is how long one tick may hold the probe loop. A quiet pool's
// tick takes a fraction of a millisecond, a 200-worker pool's a few.
const stallAfter = 5 * time.Millisecond

// schedule is when each pool is probed next, shared by the probe loop and
// the stalled loops that finish a tick after they handed it over.
type schedule struct {
	mu    sync.Mutex
	due   []time.Time // by pool index
	exact []bool      // due at a deadline, not on the slot grid
	busy  []bool      // a tick of the pool is running
	// kick wakes the waiting loop when a stalled tick ends: its pool may be
	// due at once.
	kick chan struct{}
}

func (w *Watcher) startSchedule() {
	w.sched.mu.Lock()
	defer w.sched.mu.Unlock()
	now := time.Now()
	w.sched.due = make([]time.Time, len(w.pools))
	w.sched.exact = make([]bool, len(w.pools))
	w.sched.busy = make([]bool, len(w.pools))
	w.sched.kick = make(chan struct{}, 1)
	for i := range w.pools {
		w.sched.due[i] = now.Add(w.offset(i))
	}
}

// probeLoop probes the pools as they fall due, until ctx ends or a tick
// stalls and another loop takes over.
func (w *Watcher) probeLoop(ctx context.Context, wg *sync.WaitGroup) {
	// The new loop is counted in wg before this one stops counting (it
	// waits for started), so wg never drops to zero in between.
	started := make(chan struct{})
	handoff := time.AfterFunc(time.Hour, func() {
		wg.Go(func() { w.probeLoop(ctx, wg) })
		close(started)
	})
	handoff.Stop()
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for {
		pw, exact, ok := w.nextDue(ctx, wait)
		if !ok {
			return
		}
		handoff.Reset(stallAfter)
		began := time.Now()
		pw.atDeadline = exact
		w.tick(ctx, pw)
		handedOver := !handoff.Stop()
		w.sched.mu.Lock()
		// The next probe is one (possibly stretched) interval after this
		// one began: one that overran is followed at once, never by a
		// queue of them. A deadline before that comes first. SetTargets
		// may have moved the pool in the schedule, or removed it,
		// meanwhile.
		next, exact := began.Add(w.lookEvery(w.pace.Step())), false
		if !pw.deadline.IsZero() && pw.deadline.Before(next) {
			next, exact = pw.deadline, true
		}
		if i := pw.slot; i >= 0 {
			w.sched.due[i], w.sched.exact[i] = next, exact
			w.sched.busy[i] = false
		}
		w.sched.mu.Unlock()
		if handedOver {
			<-started
			select {
			case w.sched.kick <- struct{}{}:
			default:
			}
			return
		}
	}
}

// nextDue waits for the pool due first, and marks it busy. Pools due on
// their interval wake on the slot grid, so that those due together share
// one wake-up; a pool due at a deadline wakes on time. false when ctx
// ends; exact when the pool is due at a deadline.
func (w *Watcher) nextDue(ctx context.Context, wait *time.Timer) (pw *poolWatch, exact, ok bool) {
	for {
		if ctx.Err() != nil {
			return nil, false, false
		}
		s := &w.sched
		s.mu.Lock()
		first, firstExact := -1, -1
		for i, busy := range s.busy {
			if busy {
				continue
			}
			if first < 0 || s.due[i].Before(s.due[first]) {
				first = i
			}
			if s.exact[i] && (firstExact < 0 || s.due[i].Before(s.due[firstExact])) {
				firstExact = i
			}
		}
		now := time.Now()
		if first >= 0 && !s.due[first].After(now) {
			s.busy[first] = true
			exact := s.exact[first]
			pw := w.pools[first]
			s.mu.Unlock()
			return pw, exact, true
		}
		d := time.Hour // every pool is in a stalled tick: kick wakes us
		if first >= 0 {
			d = w.untilSlot(s.due[first])
		}
		if firstExact >= 0 {
			d = min(d, time.Until(s.due[firstExact]))
		}
		s.mu.Unlock()
		wait.Reset(d)
		select {
		case <-ctx.Done():
			return nil, false, false
		case <-wait.C:
		case <-s.kick:
		}
	}
}

// lookEvery is the longest time between two probes of a pool: the
// interval, or a little less than --kill-hung-after when that is shorter
// (less two slots, the most a probe on the grid wakes late, and the wait
// for a read through the pool's own socket before the listener's), so that
// no request grows older than --kill-hung-after unseen between two
// probes: each is seen before its deadline, and killed on time.
func (w *Watcher) lookEvery(interval time.Duration) time.Duration {
	k := w.cfg.Actions.KillHungAfter
	if k <= 0 {
		return interval
	}
	return min(interval, max(k-2*w.slot()-ownSocketWait, k/2))
}
