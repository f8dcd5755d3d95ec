package waits

import (
	"sync"
	"time"
)

// Tracker remembers since when each worker has been seen waiting on the
// same thing. Use one per set of workers read together (a pool): an
// update forgets the workers it does not see.
type Tracker struct {
	mu   sync.Mutex
	seen map[procKey]Wait
}

type procKey struct {
	pid   int
	start uint64
}

// Update sets each wait's Since: when its worker was first seen waiting on
// the same thing, or now. A worker whose wait changed, or a new process
// with a reused pid, starts over.
func (t *Tracker) Update(now time.Time, ws []Wait) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := make(map[procKey]Wait, len(ws))
	for i := range ws {
		w := &ws[i]
		k := procKey{w.PID, w.Start}
		w.Since = now
		if old, ok := t.seen[k]; ok && old.Same(*w) {
			w.Since = old.Since
		}
		next[k] = *w
	}
	t.seen = next
}
