package lag

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
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

// TestStarvedByThrottling: the cgroup's throttled time between two reads
// counts as starvation over the time between them, capped there (the
// kernel adds each CPU's), and only where it is more than the sampler saw;
// the time since the last read, at the share of the second before it.
func TestStarvedByThrottling(t *testing.T) {
	base := time.Now().Add(-time.Minute)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	m := New(0)
	m.cgroup = nil
	m.mu.Lock()
	for _, r := range []struct {
		ms    int
		total time.Duration
	}{{0, 0}, {1000, 900 * time.Millisecond}, {2000, 900 * time.Millisecond}, {3000, 3 * time.Second}} {
		m.noteThrottled(at(r.ms), r.total)
	}
	// The sampler saw 300 ms of the second without throttling.
	m.record(at(1100), at(1400))
	m.mu.Unlock()
	for _, tc := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 1000, 900 * time.Millisecond},
		{500, 1000, 450 * time.Millisecond},   // spread evenly
		{1000, 2000, 300 * time.Millisecond},  // the sampler's, not throttled
		{2000, 3000, time.Second},             // 2.1 s counted over 1 s: capped
		{2500, 4000, 1500 * time.Millisecond}, // after the last read: at the share before it
		{2500, 9000, 2500 * time.Millisecond}, // for 2 s after it at most
		{-1000, 0, 0},
	} {
		if got := m.Starved(at(tc.from), at(tc.to)); got != tc.want {
			t.Errorf("Starved(%d ms, %d ms) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

// TestStarvedUnderQuota: a process held to 2% of a core while it wants a
// whole one is starved nearly all the time, and its Monitor says so,
// whatever the phase of its sampler's grid against the quota's periods.
// The process is this test binary run again, in a cgroup of the test's own.
func TestStarvedUnderQuota(t *testing.T) {
	if os.Getenv("FPMGUARD_LAG_CHILD") != "" {
		quotaChild()
		return
	}
	group, err := fpmtest.CPUQuota(t, 2)
	if err != nil {
		fpmtest.RequireIntegration(t, "a cgroup with a CPU quota: "+err.Error())
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStarvedUnderQuota$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FPMGUARD_LAG_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	if err := group.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// Only now in the group: it starts its Monitor and its work.
	fmt.Fprintln(stdin, "go")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child: %v\n%s", err, out.String())
	}
	var starved, window, sampler time.Duration
	if _, err := fmt.Sscanf(out.String(), "starved %d of %d, sampler alone %d", &starved, &window, &sampler); err != nil {
		t.Fatalf("the child said %q: %v", out.String(), err)
	}
	t.Logf("at 2%% of a core: starved %v of %v; by the sampler alone %v", starved, window, sampler)
	if window <= 0 || float64(starved) < 0.5*float64(window) {
		t.Errorf("starved %v of %v, want most of it", starved, window)
	}
}

// quotaChild is TestStarvedUnderQuota's process in the group: it waits to
// be moved there, then wants a whole CPU for 4 s and says how much of the
// time its Monitor counts starved.
func quotaChild() {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	m := New(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	start := time.Now()
	for x := 0; time.Since(start) < 4*time.Second; x++ {
	}
	// The first second goes to the Monitor's first reads.
	from, to := start.Add(time.Second), time.Now()
	cancel()
	<-done
	starved := m.Starved(from, to)
	// The same window by the sampler alone: the measure before the
	// cgroup's throttled time counted.
	m.mu.Lock()
	m.throttled = nil
	m.mu.Unlock()
	fmt.Printf("starved %d of %d, sampler alone %d\n", starved, to.Sub(from), m.Starved(from, to))
	os.Exit(0)
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

// BenchmarkSample: what one wake-up of the sampler costs, with and without
// a read of the cgroup's counters (cpu.stat).
func BenchmarkSample(b *testing.B) {
	m := New(0)
	b.Run("record", func(b *testing.B) {
		for b.Loop() {
			now := time.Now()
			m.mu.Lock()
			m.record(now, now)
			m.mu.Unlock()
		}
	})
	if m.cgroup == nil {
		return
	}
	b.Run("record+cpu.stat", func(b *testing.B) {
		for b.Loop() {
			now := time.Now()
			th, err := m.cgroup.read()
			m.mu.Lock()
			m.record(now, now)
			if err == nil {
				m.noteThrottled(now, th.Time)
			}
			m.mu.Unlock()
		}
	})
}

// TestFailedFirstRead: a cgroup whose counters cannot be read when
// sampling begins gives no base: a later read's whole total, throttled
// since the group was made, must not count as throttled in one second.
func TestFailedFirstRead(t *testing.T) {
	dir := t.TempDir()
	stat := dir + "/cpu.stat"
	// The default period: reads once a second, and no look for this
	// process's own cgroup (refind) before 5 s.
	m := New(0)
	m.cgroup = &cgroupCPU{path: stat, v2: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	// cpu.stat appears once the first read has failed: an hour throttled.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		m.mu.Lock()
		running := m.running
		m.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never started")
		}
	}
	if err := os.WriteFile(stat, []byte("nr_periods 10\nnr_throttled 10\nthrottled_usec 3600000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for deadline := start.Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		m.mu.Lock()
		n := len(m.throttled)
		m.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d throttled reads after 30 s", n)
		}
	}
	cancel()
	<-done
	// The cgroup's count alone: the sampler's own lateness is not in question.
	m.mu.Lock()
	got := m.throttledIn(start.Add(-time.Hour), time.Now())
	m.mu.Unlock()
	if got != 0 {
		t.Errorf("throttled %v: a read that failed was taken as a base of 0", got)
	}
}
