package watch

// Following php-fpm as it changes. A reload (SIGUSR2) may add pools, drop
// some or move a pool's socket; a restart does the same under a new master
// pid, in a new /proc/PID/root for a master in another root. SetTargets
// gives the running watcher the pools php-fpm runs now, with the probe
// loop running. A pool that stayed keeps everything the watcher knows of
// it: its counts and histograms (its /metrics counters go on), its failure
// streak, its history for advice. A removed pool goes from every output:
// the snapshot (so /metrics, /status, /snapshot, top), the action counts
// and the history behind advice.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
)

// PoolChange says how SetTargets changed the pools watched, each pool by
// its name for people (NAME@MASTER where another pool has its name).
type PoolChange struct {
	Added   []string
	Removed []string
	// Changed says what changed of each, e.g. "www (listen
	// unix:///run/a.sock → unix:///run/b.sock)".
	Changed []string
}

// Empty reports no change.
func (c PoolChange) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

func (c PoolChange) String() string {
	var parts []string
	for _, p := range []struct {
		what  string
		pools []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"changed", c.Changed}} {
		if len(p.pools) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.pools, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// SetTargets makes targets the pools watched, and records the change as
// one event. It is safe to call while the watcher runs. A pool of the same
// ID as one watched (its name and its master's: supervisor.PoolID) is that
// pool, with its target replaced: a new master pid, root or socket. A pool whose address
// changed starts a new failure streak, and failures in its first moments
// count for nothing, as those of a pool added (php-fpm may still be
// opening its socket): see followMaster.
func (w *Watcher) SetTargets(targets []supervisor.Target) PoolChange {
	now := time.Now()
	var ch PoolChange
	var removed []*poolWatch

	ids := make([]supervisor.PoolID, 0, len(targets))
	given := make(map[supervisor.PoolID]bool, len(targets))
	for _, t := range targets {
		if id := t.ID(); !given[id] {
			given[id] = true
			ids = append(ids, id)
		}
	}
	labels := supervisor.Labels(ids)
	if w.nginx != nil {
		// Its sockets, through a new master's root too.
		w.nginx.SetTargets(targets)
	}

	w.sched.mu.Lock()
	old := make(map[supervisor.PoolID]*poolWatch, len(w.pools))
	for _, pw := range w.pools {
		old[pw.id] = pw
	}
	next := make([]*poolWatch, 0, len(ids))
	soon := map[*poolWatch]bool{} // added or moved: probed at once
	for _, t := range targets {
		k := t.ID()
		if !given[k] {
			continue // given twice: the first one counts
		}
		given[k] = false
		pw, ok := old[k]
		if !ok {
			pw = newPoolWatch(t, -1, labels[k])
			// Never waited for by the opcache's first read.
			pw.counted.Store(true)
			pw.reloadedAt, pw.reloadWhy = now, "the pool was just added"
			soon[pw] = true
			ch.Added = append(ch.Added, labels[k])
			next = append(next, pw)
			continue
		}
		delete(old, k)
		pw.mu.Lock()
		if what := changes(pw.target, t); what != "" {
			ch.Changed = append(ch.Changed, labels[k]+" ("+what+")")
		}
		pw.label = labels[k]
		if moved(pw.target, t) {
			pw.moved = now
			soon[pw] = true
		}
		pw.target = t
		pw.mu.Unlock()
		next = append(next, pw)
	}
	for _, pw := range w.pools {
		if old[pw.id] == pw {
			pw.mu.Lock()
			pw.removed = true
			ch.Removed = append(ch.Removed, pw.label)
			pw.mu.Unlock()
			removed = append(removed, pw)
		}
	}
	if ch.Empty() && len(next) == len(w.pools) {
		w.sched.mu.Unlock()
		return ch
	}
	w.reschedule(next, now, soon)
	w.sched.mu.Unlock()

	for _, pw := range removed {
		w.forget(pw)
	}
	if !ch.Empty() {
		w.events.Add(event.Event{Kind: event.KindPools, Message: "pools watched changed: " + ch.String()})
	}
	return ch
}

// reschedule makes next the pools watched and the schedule's order: the
// pools that stay keep their place in time, but for those in soon (added,
// or moved to another socket), probed within half an interval (at most
// half a second), spread over it. sched.mu is held.
func (w *Watcher) reschedule(next []*poolWatch, now time.Time, soon map[*poolWatch]bool) {
	s := &w.sched
	due := make([]time.Time, len(next))
	busy := make([]bool, len(next))
	exact := make([]bool, len(next))
	spread := min(w.cfg.Interval, time.Second) / 2
	n := time.Duration(max(len(soon), 1))
	k := time.Duration(0)
	for i, pw := range next {
		if j := pw.slot; j >= 0 && j < len(s.due) && w.pools[j] == pw {
			due[i], busy[i], exact[i] = s.due[j], s.busy[j], s.exact[j]
		}
		if soon[pw] {
			due[i], exact[i] = now.Add(spread*k/n+rand.N(spread/n+1)), false
			k++
		}
	}
	for _, pw := range w.pools {
		pw.slot = -1
	}
	for i, pw := range next {
		pw.slot = i
	}
	if s.due != nil {
		// Before Run, startSchedule makes the schedule from w.pools.
		s.due, s.busy, s.exact = due, busy, exact
	}
	w.poolsMu.Lock()
	w.pools = next
	w.poolsMu.Unlock()
	if s.kick != nil {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// forget drops what the watcher and the history keep of a removed pool.
func (w *Watcher) forget(pw *poolWatch) {
	pw.mu.Lock()
	t := pw.target
	pw.mu.Unlock()
	w.countProbed(pw)
	pw.stopKills()
	if w.cfg.History != nil {
		w.cfg.History.RemovePool(t)
	}
	w.actions.forget(pw.id)
	w.deaths.forget(pw.id)
	if slices.ContainsFunc(w.watched(), func(o *poolWatch) bool { return o.id.Master == pw.id.Master }) {
		return
	}
	w.mu.Lock()
	delete(w.masters, pw.id.Master)
	w.mu.Unlock()
}

// forget drops the action counts and budget of a pool no longer watched.
func (a *Actor) forget(pool supervisor.PoolID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.counts {
		if k.Pool == pool {
			delete(a.counts, k)
		}
	}
	delete(a.spent, pool)
	delete(a.lastKill, pool)
	delete(a.lastReload, pool)
}

// moved reports a pool reached elsewhere now: the failures of the old
// address say nothing of the new one. A socket in another root is the
// same socket through another master's /proc/PID/root.
func moved(a, b supervisor.Target) bool {
	return a.Address.InRoot() != b.Address.InRoot() || a.StatusAddress.InRoot() != b.StatusAddress.InRoot() ||
		a.StatusPath != b.StatusPath || a.PingPath != b.PingPath || a.PingResponse != b.PingResponse
}

// changes says what of the pool's config changed, as its directives name
// it; "" for nothing. A new master pid or root is no change of the pool.
// It runs for every pool at each rescan and reload: only what differs is
// written.
func changes(a, b supervisor.Target) string {
	var out []string
	diff := func(name string, x, y any) {
		out = append(out, fmt.Sprintf("%s %v → %v", name, none(x), none(y)))
	}
	if a.Address.InRoot() != b.Address.InRoot() {
		diff("listen", addr(a.Address), addr(b.Address))
	}
	if a.StatusAddress.InRoot() != b.StatusAddress.InRoot() {
		diff("pm.status_listen", addr(a.StatusAddress), addr(b.StatusAddress))
	}
	for _, f := range []struct{ name, x, y string }{
		{"pm.status_path", a.StatusPath, b.StatusPath}, {"ping.path", a.PingPath, b.PingPath}, {"ping.response", a.PingResponse, b.PingResponse},
		{"pm", a.PM, b.PM}, {"slowlog", a.Slowlog, b.Slowlog}, {"access.log", a.AccessLog, b.AccessLog}, {"chroot", a.Chroot, b.Chroot},
	} {
		if f.x != f.y {
			diff(f.name, f.x, f.y)
		}
	}
	if a.MaxChildren != b.MaxChildren {
		diff("pm.max_children", a.MaxChildren, b.MaxChildren)
	}
	if a.MinWorkers != b.MinWorkers {
		diff("workers promised", a.MinWorkers, b.MinWorkers)
	}
	if a.RequestSlowlogTimeout != b.RequestSlowlogTimeout {
		diff("request_slowlog_timeout", a.RequestSlowlogTimeout, b.RequestSlowlogTimeout)
	}
	if a.RequestTerminateTimeout != b.RequestTerminateTimeout {
		diff("request_terminate_timeout", a.RequestTerminateTimeout, b.RequestTerminateTimeout)
	}
	if !slices.Equal(a.SuppressPaths, b.SuppressPaths) {
		diff("access.suppress_path", a.SuppressPaths, b.SuppressPaths)
	}
	return strings.Join(out, ", ")
}

// none writes an unset value as "none".
func none(v any) any {
	if s := fmt.Sprint(v); s == "" || s == "[]" || s == "0s" {
		return "none"
	}
	return v
}

// addr is an address as its master names it, "" when unset.
func addr(a fastcgi.Address) string {
	if a.IsZero() {
		return ""
	}
	return a.InRoot().String()
}
