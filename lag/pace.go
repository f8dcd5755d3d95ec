package lag

import (
	"fmt"
	"sync"
	"time"
)

// MaxStretch bounds how far a Pacer stretches the interval: a starved
// fpmguard still looks at every pool every few seconds.
const MaxStretch = 4

// calmShare is the starved share below which a window counts as calm.
const calmShare = 0.05

// Pacer stretches the probe interval while fpmguard is starved, so that it
// probes less often instead of queueing probes it cannot run, and gives the
// interval back when the starvation ends.
type Pacer struct {
	m    *Monitor
	base time.Duration
	// OnChange, when set, is told each change of the interval with the
	// reason in words. It is called without locks held.
	OnChange func(interval time.Duration, why string)

	mu      sync.Mutex
	stretch int
	calm    int // calm windows in a row
	since   time.Time
	th      Throttling // at since
}

// NewPacer paces probes every base while m says fpmguard can run. A nil m
// never stretches.
func NewPacer(m *Monitor, base time.Duration) *Pacer {
	return &Pacer{m: m, base: base, stretch: 1, since: time.Now(), th: m.Throttling()}
}

// window is how long the Pacer looks before it changes the interval.
func (p *Pacer) window() time.Duration { return max(5*p.base, 5*time.Second) }

// Interval is the time between probes now. It only reads: a scrape or a
// liveness probe may call it as often as it likes.
func (p *Pacer) Interval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.base * time.Duration(p.stretch)
}

// Step is the time until the next probe. Once a window has passed since
// the last change of pace, it judges that window: a starved one stretches
// the interval, calm ones give it back. Only the probe loop calls it.
func (p *Pacer) Step() time.Duration {
	if p.m == nil {
		return p.base
	}
	now := time.Now()
	p.mu.Lock()
	w := p.window()
	if now.Sub(p.since) < w {
		d := p.base * time.Duration(p.stretch)
		p.mu.Unlock()
		return d
	}
	share := float64(p.m.Starved(now.Add(-w), now)) / float64(w)
	th := p.m.Throttling()
	throttled := th.Throttled - p.th.Throttled
	old := p.stretch
	switch {
	case share >= StarvedShare:
		p.calm = 0
		p.stretch = min(2*p.stretch, MaxStretch)
	case share < calmShare:
		p.calm++
		if p.calm >= 2 && p.stretch > 1 {
			p.stretch /= 2
			p.calm = 0
		}
	default:
		p.calm = 0
	}
	took := now.Sub(p.since)
	p.since, p.th = now, th
	stretch := p.stretch
	d := p.base * time.Duration(stretch)
	p.mu.Unlock()

	// Said once when the starvation begins and once when it ends: the
	// metric fpmguard_probe_interval_seconds follows every step.
	if (old == 1) != (stretch == 1) && p.OnChange != nil {
		var why string
		if stretch > old {
			why = fmt.Sprintf("fpmguard is starved of CPU: unable to run %.0f%% of the last %s", share*100, took.Round(time.Second))
			if throttled > 0 {
				why += fmt.Sprintf(", its cgroup throttled %d times", throttled)
			}
			why += fmt.Sprintf("; probing every %s instead of %s, up to %s while it lasts", d, p.base, MaxStretch*p.base)
		} else {
			why = fmt.Sprintf("fpmguard has CPU again; probing every %s", d)
		}
		p.OnChange(d, why)
	}
	return d
}

// Stretched reports whether the interval is stretched now.
func (p *Pacer) Stretched() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stretch > 1
}
