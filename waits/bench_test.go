package waits

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// BenchmarkRead50HungWorkers reads the waits of 50 workers blocked reading
// from a silent TCP peer, the dearest kind: the poll's memory, the socket's
// protocol, one dump of the TCP table shared by all; then again, as on
// every tick they stay hung. The baseline, in the same run, is what every
// probe already reads of the same 50 workers: one /proc/PID/stat each.
// cpu-ns/op is the CPU fpmguard spent, from getrusage.
func BenchmarkRead50HungWorkers(b *testing.B) {
	const n = 50
	addr := silentTCP(b, "127.0.0.1:0")
	f := fpmtest.Start(b, fpmtest.Options{
		Pools:   []fpmtest.Pool{{MaxChildren: n, StatusListen: true}},
		Files:   map[string]string{"net.php": `<?php $s = stream_socket_client("tcp://` + addr + `"); fread($s, 1);`},
		Defines: map[string]string{"default_socket_timeout": "600", "max_execution_time": "0"},
	})
	f.Background(b, n, "net.php", "")
	r := NewReader()
	targets := make([]Target, 0, n)
	fpmtest.Poll(b, 120*time.Second, func() (int, bool) {
		targets = targets[:0]
		for _, pid := range f.WorkerPIDs("www") {
			targets = append(targets, Target{PID: pid, PPID: f.MasterPID()})
		}
		hung := 0
		for _, w := range r.Read(context.Background(), targets) {
			if w.Kind == KindNetRead && !w.FDGuessed {
				hung++
			}
		}
		return hung, hung == n
	})
	b.Run("baseline-stat", func(b *testing.B) {
		measure(b, func() {
			for _, t := range targets {
				if _, err := os.ReadFile("/proc/" + strconv.Itoa(t.PID) + "/stat"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	// The first reading of each worker: everything is read.
	b.Run("waits-first", func(b *testing.B) {
		measure(b, func() {
			for _, w := range NewReader().Read(context.Background(), targets) {
				if w.Kind != KindNetRead {
					b.Fatalf("%+v", w)
				}
			}
		})
	})
	// Every later reading, while they stay hung: three small files each.
	b.Run("waits-again", func(b *testing.B) {
		r := NewReader()
		r.Read(context.Background(), targets)
		measure(b, func() {
			for _, w := range r.Read(context.Background(), targets) {
				if w.Kind != KindNetRead {
					b.Fatalf("%+v", w)
				}
			}
		})
	})
}

// measure runs fn b.N times and reports the CPU time this process spent
// per run, beside the wall time.
func measure(b *testing.B, fn func()) {
	before := fpmtest.CPUTime()
	b.ResetTimer()
	for b.Loop() {
		fn()
	}
	b.StopTimer()
	b.ReportMetric(float64((fpmtest.CPUTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
