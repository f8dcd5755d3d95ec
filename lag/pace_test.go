package lag

import (
	"strings"
	"testing"
	"time"
)

// starve makes m report fpmguard starved for all of the last d.
func starve(m *Monitor, d time.Duration) {
	now := time.Now()
	m.mu.Lock()
	m.record(now.Add(-d), now)
	m.mu.Unlock()
}

// elapse makes the pacer's window over.
func elapse(p *Pacer) {
	p.mu.Lock()
	p.since = p.since.Add(-2 * p.window())
	p.mu.Unlock()
}

func TestPacer(t *testing.T) {
	m := New(0)
	m.cgroup = nil
	p := NewPacer(m, time.Second)
	var changes []string
	p.OnChange = func(d time.Duration, why string) { changes = append(changes, why) }
	if d := p.Step(); d != time.Second {
		t.Fatalf("calm: %v", d)
	}
	// Starved windows double the interval up to MaxStretch.
	prev := time.Second
	for _, want := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		starve(m, 10*time.Second)
		elapse(p)
		// Reading the interval moves nothing: only Step judges a window.
		for range 3 {
			if d := p.Interval(); d != prev {
				t.Errorf("read before the step: %v, want %v still", d, prev)
			}
		}
		if d := p.Step(); d != want || p.Interval() != want {
			t.Errorf("starved: %v (read %v), want %v", d, p.Interval(), want)
		}
		prev = want
	}
	if !p.Stretched() || len(changes) != 1 || !strings.Contains(changes[0], "starved of CPU") || !strings.Contains(changes[0], "probing every 2s instead of 1s, up to 4s") {
		t.Errorf("changes: %q", changes)
	}
	// Two calm windows give back half the stretch each time.
	m.mu.Lock()
	m.spans = nil
	m.mu.Unlock()
	for _, want := range []time.Duration{4 * time.Second, 2 * time.Second, 2 * time.Second, time.Second} {
		elapse(p)
		if d := p.Step(); d != want {
			t.Errorf("calm: %v, want %v", d, want)
		}
	}
	if p.Stretched() || !strings.Contains(changes[len(changes)-1], "has CPU again; probing every 1s") {
		t.Errorf("changes: %q", changes)
	}
	if d := NewPacer(nil, time.Second).Step(); d != time.Second {
		t.Errorf("no monitor: %v", d)
	}
}
