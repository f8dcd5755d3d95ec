package watch

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// cpuTime is this process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick measures one watch tick of one pool (status page,
// heartbeat, OS view of every worker and the master, verdict, detection)
// for pools of 5, 50 and 200 workers, in wall time and in fpmguard's own
// CPU time per tick. statusOnly is the baseline: the status page read and
// parsed, nothing else.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{5, 50, 200} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: n, StatusListen: true}}})
			tg := fpmTargets(b, fpm)["www"]
			pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 2 * time.Second}, Procs: supervisor.SystemProcs}
			w := New(pr, []supervisor.Target{tg}, Config{Interval: time.Hour}, event.NewLog(nil))
			ctx := context.Background()

			b.Run("tick", func(b *testing.B) {
				cpu := cpuTime(b)
				for b.Loop() {
					w.tick(ctx, w.pools[0])
				}
				b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
				if v := w.pools[0].view.Load(); v == nil || len(v.Report.Processes) != n || v.Report.Health != supervisor.HealthOK {
					b.Fatalf("view %+v", v)
				}
			})
			b.Run("statusOnly", func(b *testing.B) {
				cpu := cpuTime(b)
				for b.Loop() {
					if _, err := pr.Client.Status(ctx, tg.StatusVia(), tg.StatusPath); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		})
	}
}
