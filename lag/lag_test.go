package lag

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStarved(t *testing.T) {
	base := time.Now().Add(-time.Minute)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	m := New(0)
	m.cgroup = nil
	m.mu.Lock()
	// The sampler woke 1 ms late (tolerated), then 900 ms late, then 50 ms.
	m.record(at(100), at(101))
	m.record(at(200), at(1100))
	m.record(at(1200), at(1250))
	m.mu.Unlock()
	for _, tc := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 100, 0},
		{0, 2000, 950 * time.Millisecond},
		{500, 1000, 500 * time.Millisecond}, // inside one late span
		{1100, 1200, 0},                     // between spans
		{1000, 1225, 125 * time.Millisecond},
		{2000, 1000, 0}, // an empty window
	} {
		if got := m.Starved(at(tc.from), at(tc.to)); got != tc.want {
			t.Errorf("Starved(%d ms, %d ms) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	if got := m.LateTotal(); got != 950*time.Millisecond {
		t.Errorf("LateTotal = %v, want 950ms", got)
	}
}

func TestJudge(t *testing.T) {
	base := time.Now().Add(-time.Minute)
	m := New(0)
	m.cgroup = nil
	m.mu.Lock()
	m.record(base, base.Add(1900*time.Millisecond))
	m.mu.Unlock()
	if ok, why := m.Judge("heartbeat", base, base.Add(2*time.Second)); !ok || !strings.Contains(why, "starved of CPU for 1.9s of its 2s") {
		t.Errorf("a probe starved 1.9 s of 2 s: %v %q", ok, why)
	}
	if ok, why := m.Judge("heartbeat", base.Add(3*time.Second), base.Add(5*time.Second)); ok {
		t.Errorf("a probe after the starvation: %v %q", ok, why)
	}
	var none *Monitor
	if ok, _ := none.Judge("heartbeat", base, base.Add(time.Second)); ok || none.Starved(base, base.Add(time.Second)) != 0 {
		t.Error("a nil monitor must never be starved")
	}
}

// TestSamplerLateNow: a sampler that has not woken since its wake-up time
// counts as starved up to now, before it records anything.
func TestSamplerLateNow(t *testing.T) {
	m := New(time.Hour)
	m.cgroup = nil
	m.mu.Lock()
	m.running = true
	m.next = time.Now().Add(-time.Second)
	m.mu.Unlock()
	now := time.Now()
	if got := m.Starved(now.Add(-2*time.Second), now); got < 900*time.Millisecond {
		t.Errorf("Starved = %v, want about 1s", got)
	}
}

// TestSpansBounded: the ring never holds more than maxSpans.
func TestSpansBounded(t *testing.T) {
	m := New(0)
	base := time.Now()
	m.mu.Lock()
	for i := range 3 * maxSpans {
		at := base.Add(time.Duration(i) * 10 * time.Millisecond)
		m.record(at, at.Add(5*time.Millisecond))
	}
	n := len(m.spans)
	m.mu.Unlock()
	if n > maxSpans {
		t.Errorf("%d spans kept, want at most %d", n, maxSpans)
	}
}

// TestRunStops: Run ends with its context, and a second Run is a no-op.
func TestRunStops(t *testing.T) {
	m := New(time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.mu.Lock()
		running := m.running
		m.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never started")
		}
		time.Sleep(time.Millisecond)
	}
	second := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(second)
	}()
	<-second
	cancel()
	<-done
}
