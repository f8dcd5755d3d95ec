package top

import (
	"syscall"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/muesli/termenv"
)

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRefresh50 is one refresh of a 50-worker pool on a 120×40
// terminal with colours: a new snapshot taken in (rates, sort) and the
// screen drawn. cpu-ns/op is the CPU it costs, garbage collection
// included; the issue allows 2 ms.
func BenchmarkRefresh50(b *testing.B) {
	t0 := time.Now()
	snaps := make([]*watch.Snapshot, 8)
	for i := range snaps {
		snaps[i] = snapshot(t0.Add(time.Duration(i)*time.Second), 1, 50, float64(i))
	}
	r := lipgloss.NewRenderer(nil)
	r.SetColorProfile(termenv.ANSI256)
	i := 0
	m := newModel(Options{Snapshot: func() *watch.Snapshot { i++; return snaps[i%len(snaps)] }}, r)
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	m.Init()
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		m.Update(tickMsg(t0))
		_ = m.View()
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
