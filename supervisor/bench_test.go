package supervisor

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
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
			tg := fpmTargetsB(b, fpm)
			pr := &Prober{Client: fastcgi.Client{Timeout: 2 * time.Second}, Procs: SystemProcs}
			w := NewWatcher(pr, []Target{tg}, WatchConfig{Interval: time.Hour}, NewEventLog(nil))
			ctx := context.Background()

			b.Run("tick", func(b *testing.B) {
				cpu := cpuTime(b)
				for b.Loop() {
					w.tick(ctx, w.pools[0])
				}
				b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
				if r := w.pools[0].report; r == nil || len(r.Processes) != n || r.Health != HealthOK {
					b.Fatalf("report %+v", r)
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

func fpmTargetsB(b *testing.B, fpm *fpmtest.FPM) Target {
	b.Helper()
	ts, err := LoadFPMConfig(fpm.Conf)
	if err != nil || len(ts) != 1 {
		b.Fatal(err)
	}
	return ts[0]
}
