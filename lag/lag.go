// Package lag measures fpmguard's own lag: how late its timers fire and how
// often the kernel throttles its cgroup. A probe that timed out while
// fpmguard itself could not run is evidence of nothing, so the prober asks
// this package how much of a probe's time fpmguard was starved.
//
// It imports nothing of fpmguard's: every other package may use it.
package lag

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Defaults of a Monitor.
const (
	// DefaultPeriod is how often the sampler asks to wake. 10 wake-ups a
	// second cost a few microseconds of CPU each.
	DefaultPeriod = 100 * time.Millisecond
	// tolerance is lateness that counts as none: timer slack and an
	// ordinary wake-up on a busy machine.
	tolerance = 2 * time.Millisecond
	// keep is how far back late spans are kept: longer than any probe.
	keep = 2 * time.Minute
	// maxSpans bounds the memory of the span ring.
	maxSpans = 4096
)

// StarvedShare is the share of a probe's time during which fpmguard could
// not run that makes the probe's timeout or lateness its own fault.
const StarvedShare = 0.25

// span is a stretch of time during which the sampler wanted to run and
// could not.
type span struct{ from, to time.Time }

// Monitor samples fpmguard's own scheduling lag. Its zero value is not
// ready: use New.
type Monitor struct {
	period time.Duration
	cgroup *cgroupCPU // nil when no cpu controller is found

	mu        sync.Mutex
	spans     []span    // late spans, oldest first, within keep
	next      time.Time // when the sampler expects to wake next
	running   bool
	lateTotal time.Duration
	first     Throttling // the cgroup's counters when sampling began
	last      Throttling
	// throttled are the cgroup's throttled time as read once a second,
	// oldest first, within keep: the kernel's own count of the time
	// fpmguard wanted a CPU and its quota gave none. The sampler alone
	// misses much of it: under a quota it wakes on its grid, and is only
	// as late as the start of the next quota period is after that.
	throttled []throttleRead
}

// throttleRead is the cgroup's total throttled time at one moment.
type throttleRead struct {
	at    time.Time
	total time.Duration
}

// Throttling is the cgroup cpu controller's count of fpmguard's cgroup.
type Throttling struct {
	Periods   uint64        // enforcement periods with runnable tasks
	Throttled uint64        // periods in which the quota ran out
	Time      time.Duration // total time throttled
}

// New returns a monitor that samples every period (DefaultPeriod if 0).
// It reads the cgroup of this process, when it has a cpu controller.
func New(period time.Duration) *Monitor {
	if period <= 0 {
		period = DefaultPeriod
	}
	return &Monitor{period: period, cgroup: findCgroupCPU()}
}

// Run samples until ctx ends. A second Run while one runs returns at once.
func (m *Monitor) Run(ctx context.Context) {
	now := time.Now()
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return
	}
	m.next = now.Add(m.period)
	m.running = true
	if m.cgroup != nil {
		var err error
		m.first, err = m.cgroup.read()
		m.last = m.first
		if err == nil {
			// A failed read is no base: the next read's whole total
			// would count as throttled in its first second.
			m.throttled = append(m.throttled[:0], throttleRead{now, m.first.Time})
		}
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()
	timer := time.NewTimer(m.period)
	defer timer.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		if n%refindEvery == 0 {
			m.refind()
		}
		var th Throttling
		ok := false
		if m.cgroup != nil && n%m.readEvery() == 0 {
			var err error
			th, err = m.cgroup.read()
			ok = err == nil
		}
		m.mu.Lock()
		m.record(m.next, now)
		if ok {
			m.last = th
			m.noteThrottled(now, th.Time)
		}
		m.next = aligned(now.Add(m.period), m.period)
		m.mu.Unlock()
		timer.Reset(time.Until(m.next))
	}
}

// readEvery is how many samples pass between reads of the cgroup's
// counters: one a second. They are read over windows of seconds (the
// pacer's, a scrape's), and a read costs more than the sample itself.
func (m *Monitor) readEvery() int { return max(1, int(time.Second/m.period)) }

// refindEvery is how many samples pass between looks for this process's
// cgroup: a process can be moved to another one while it runs (systemctl
// set-property, a test's own group).
const refindEvery = 50

// refind follows this process into another cgroup. The counts of the old
// one are kept as a base, so the totals never go back.
func (m *Monitor) refind() {
	c := findCgroupCPU()
	if c == nil {
		return
	}
	m.mu.Lock()
	same := m.cgroup != nil && m.cgroup.path == c.path
	m.mu.Unlock()
	if same {
		return
	}
	th, err := c.read()
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Whatever the old group counted stays counted.
	m.first = Throttling{
		Periods:   th.Periods - (m.last.Periods - m.first.Periods),
		Throttled: th.Throttled - (m.last.Throttled - m.first.Throttled),
		Time:      th.Time - (m.last.Time - m.first.Time),
	}
	m.last = th
	m.cgroup = c
	// Another group's total: no time between the two is known.
	m.throttled = append(m.throttled[:0], throttleRead{time.Now(), th.Time})
}

// noteThrottled keeps one read of the cgroup's throttled time. m.mu is
// held.
func (m *Monitor) noteThrottled(at time.Time, total time.Duration) {
	m.throttled = appendRecent(m.throttled, at, func(r throttleRead) time.Time { return r.at }, throttleRead{at, total})
}

// appendRecent appends v to s, an oldest-first list, after dropping the
// entries more than keep older than at (when gives an entry's time), and
// the oldest one when maxSpans are left.
func appendRecent[T any](s []T, at time.Time, when func(T) time.Time, v T) []T {
	cut := 0
	for cut < len(s) && at.Sub(when(s[cut])) > keep {
		cut++
	}
	if len(s)-cut >= maxSpans {
		cut++
	}
	return append(s[cut:], v)
}

// throttledIn is how much of [from, to] the cgroup was throttled, by its
// reads: the throttled time between two reads, spread evenly over the
// time between them (the kernel adds each CPU's, so it is capped there).
// The time since the last read, a second at most (reading more often
// would cost more than the sampling), is taken at the share of the
// second before it: a quota that throttles fpmguard goes on doing so,
// and one that stopped is counted a second too long at most. m.mu is
// held.
func (m *Monitor) throttledIn(from, to time.Time) time.Duration {
	n := len(m.throttled)
	if n < 2 {
		return 0
	}
	share := func(a, b throttleRead) float64 {
		wall, d := b.at.Sub(a.at), b.total-a.total
		if wall <= 0 || d <= 0 {
			return 0
		}
		return float64(min(d, wall)) / float64(wall)
	}
	last := m.throttled[n-1]
	// Reads that stopped (a cgroup file gone) extend no share for ever.
	end := last.at.Add(2 * time.Second)
	if to.Before(end) {
		end = to
	}
	sum := time.Duration(share(m.throttled[n-2], last) * float64(overlap(last.at, end, from, to)))
	for i := n - 1; i > 0; i-- {
		a, b := m.throttled[i-1], m.throttled[i]
		if !b.at.After(from) {
			break
		}
		sum += time.Duration(share(a, b) * float64(overlap(a.at, b.at, from, to)))
	}
	return sum
}

// aligned is the first multiple of period at or after t. The sampler wakes
// on this grid, as the watcher's probes do on theirs, so that both share
// wake-ups: waking an idle process costs more than the sampling.
func aligned(t time.Time, period time.Duration) time.Time {
	ns, p := t.UnixNano(), int64(period)
	return time.Unix(0, (ns+p-1)/p*p)
}

// record notes that the sampler meant to wake at want and woke at got.
// m.mu is held.
func (m *Monitor) record(want, got time.Time) {
	late := got.Sub(want)
	if late <= tolerance {
		return
	}
	m.lateTotal += late
	m.spans = appendRecent(m.spans, got, func(s span) time.Time { return s.to }, span{want, got})
}

// Starved returns how much of [from, to] fpmguard spent unable to run: the
// late spans of the sampler within it, and the lateness of a sampler that
// has not woken yet, or the time the kernel throttled its cgroup within it
// when that is more. A nil Monitor is never starved.
func (m *Monitor) Starved(from, to time.Time) time.Duration {
	if m == nil || !to.After(from) {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum time.Duration
	for i := len(m.spans) - 1; i >= 0; i-- {
		s := m.spans[i]
		if !s.to.After(from) {
			break
		}
		sum += overlap(s.from, s.to, from, to)
	}
	// The sampler itself may be waiting for a CPU right now.
	if m.running {
		if now := time.Now(); now.Sub(m.next) > tolerance {
			sum += overlap(m.next, now, from, to)
		}
	}
	// Two measures of one starvation: the larger, not their sum.
	return max(sum, m.throttledIn(from, to))
}

func overlap(a0, a1, b0, b1 time.Time) time.Duration {
	lo, hi := a0, a1
	if b0.After(lo) {
		lo = b0
	}
	if b1.Before(hi) {
		hi = b1
	}
	if !hi.After(lo) {
		return 0
	}
	return hi.Sub(lo)
}

// Judge says whether a probe that ran over [from, to] was starved for a
// large part of its time, and if so why, in words for a person.
func (m *Monitor) Judge(what string, from, to time.Time) (bool, string) {
	starved := m.Starved(from, to)
	took := to.Sub(from)
	if took <= 0 || float64(starved) < StarvedShare*float64(took) {
		return false, ""
	}
	return true, fmt.Sprintf("fpmguard could not judge the %s: it was itself starved of CPU for %s of its %s%s",
		what, starved.Round(time.Millisecond), took.Round(time.Millisecond), m.throttleNote())
}

// throttleNote says how often the cgroup was throttled, when it was.
func (m *Monitor) throttleNote() string {
	t := m.Throttling()
	if t.Throttled == 0 {
		return ""
	}
	return fmt.Sprintf(" (its cgroup was throttled %d times since start: raise its CPU limit)", t.Throttled)
}

// Throttling returns the cgroup's throttling since sampling began: zero
// without a cpu controller.
func (m *Monitor) Throttling() Throttling {
	if m == nil {
		return Throttling{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return Throttling{
		Periods:   m.last.Periods - m.first.Periods,
		Throttled: m.last.Throttled - m.first.Throttled,
		Time:      m.last.Time - m.first.Time,
	}
}

// LateTotal is the sum of the sampler's lateness since start.
func (m *Monitor) LateTotal() time.Duration {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lateTotal
}
