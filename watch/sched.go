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

// stallAfter is how long one tick may hold the probe loop. A quiet pool's
// tick takes a fraction of a millisecond, a 200-worker pool's a few.
const stallAfter = 5 * time.Millisecond

// schedule is when each pool is probed next, shared by the probe loop and
// the stalled loops that finish a tick after they handed it over.
type schedule struct {
	mu   sync.Mutex
	due  []time.Time // by pool index
	busy []bool      // a tick of the pool is running
	// kick wakes the waiting loop when a stalled tick ends: its pool may be
	// due at once.
	kick chan struct{}
}

func (w *Watcher) startSchedule() {
	w.sched.mu.Lock()
	defer w.sched.mu.Unlock()
	now := time.Now()
	w.sched.due = make([]time.Time, len(w.pools))
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
		pw, ok := w.nextDue(ctx, wait)
		if !ok {
			return
		}
		handoff.Reset(stallAfter)
		began := time.Now()
		w.tick(ctx, pw)
		handedOver := !handoff.Stop()
		w.sched.mu.Lock()
		// The next probe is one (possibly stretched) interval after this
		// one began: one that overran is followed at once, never by a
		// queue of them. SetTargets may have moved the pool in the
		// schedule, or removed it, meanwhile.
		if i := pw.slot; i >= 0 {
			w.sched.due[i] = began.Add(w.pace.Interval())
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

// nextDue waits for the pool due first, and marks it busy. Pools wake on
// the slot grid, so that those due together share one wake-up. false when
// ctx ends.
func (w *Watcher) nextDue(ctx context.Context, wait *time.Timer) (*poolWatch, bool) {
	for {
		if ctx.Err() != nil {
			return nil, false
		}
		s := &w.sched
		s.mu.Lock()
		first := -1
		for i, busy := range s.busy {
			if !busy && (first < 0 || s.due[i].Before(s.due[first])) {
				first = i
			}
		}
		now := time.Now()
		if first >= 0 && !s.due[first].After(now) {
			s.busy[first] = true
			pw := w.pools[first]
			s.mu.Unlock()
			return pw, true
		}
		d := time.Hour // every pool is in a stalled tick: kick wakes us
		if first >= 0 {
			d = w.untilSlot(s.due[first])
		}
		s.mu.Unlock()
		wait.Reset(d)
		select {
		case <-ctx.Done():
			return nil, false
		case <-wait.C:
		case <-s.kick:
		}
	}
}
