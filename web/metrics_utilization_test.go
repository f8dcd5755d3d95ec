package web

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// TestUtilization: the ratio of each pool, and no series where it was not
// measured.
func TestUtilization(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(r *supervisor.PoolReport)
		want string // the series' value, "" for none
	}{
		// fixedSnapshot: 2 of 3 workers busy, 1 connection in the kernel's
		// queue.
		{"busy and queued", func(*supervisor.PoolReport) {}, "1"},
		{"php-fpm's own queue count, on a TCP socket", func(r *supervisor.PoolReport) {
			r.SocketQueue = nil
			r.Counters.ListenQueue = 4
		}, "2"},
		{"idle", func(r *supervisor.PoolReport) {
			r.SocketQueue.Length = 0
			for i := range r.Processes {
				r.Processes[i].State = "Idle"
			}
		}, "0"},
		{"ondemand pool with no worker", func(r *supervisor.PoolReport) {
			r.Status = supervisor.StatusRead{Idle: true}
			r.Counters, r.Processes = nil, nil
			r.SocketQueue.Length = 0
		}, "0"},
		{"status page not read", func(r *supervisor.PoolReport) { r.Status = supervisor.StatusRead{Error: "timeout"} }, ""},
		{"pm.max_children unknown", func(r *supervisor.PoolReport) { r.Config.MaxChildren = 0 }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap := fixedSnapshot(1, 3)
			tt.edit(snap.Pools[0].Report)
			out := scrape(t, NewMetricsHandler(NewCollector(fixed(snap), false), nil))
			line := `phpfpm_pool_utilization_ratio{master="` + fixedConf + `",pool="pool0"} ` + tt.want
			if tt.want == "" {
				line = `phpfpm_pool_utilization_ratio{`
				if strings.Contains(out, line) {
					t.Errorf("a series without a measurement:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, line+"\n") {
				t.Errorf("want %s in:\n%s", line, out)
			}
		})
	}
}

// TestUtilizationAgainstPHPFPM: against a real pool read through its main
// socket, the worker serving fpmguard's own status request is not load;
// and on a saturated pool the requests waiting in the kernel's queue are.
func TestUtilizationAgainstPHPFPM(t *testing.T) {
	t.Run("own status request", func(t *testing.T) {
		fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		fpm.Background(t, 1, "sleep.php", "ms=600000")
		// No ping: the status read is the one probe, served by a worker of
		// the pool as the request is.
		w := watching(t, fpm, 30*time.Second, func(t *supervisor.Target) { t.PingPath = "" })
		snap := fpmtest.Poll(t, 30*time.Second, func() (*watch.Snapshot, bool) {
			snap := w.Snapshot()
			busy, _ := snap.Pools[0].Report.Busy()
			return snap, busy == 1
		})
		running := 0
		for _, p := range snap.Pools[0].Report.Processes {
			if !p.Idle() {
				running++
			}
		}
		if running != 2 {
			t.Fatalf("%d workers running, want the sleeping one and the one serving the status page", running)
		}
		out := scrape(t, NewMetricsHandler(NewCollector(fixed(snap), false), nil))
		if got := metricValue(t, out, "phpfpm_pool_utilization_ratio", `pool="www"`); got != 1.0/3 {
			t.Errorf("utilization %v, want 1/3: one request of 3 workers, not counting the status read", got)
		}
	})
	t.Run("queued", func(t *testing.T) {
		fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1, StatusListen: true}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		w := watching(t, fpm, 30*time.Second, func(t *supervisor.Target) { t.PingPath = "" })
		// The requests hold the worker and the queue until the test ends.
		fpm.Background(t, 3, "sleep.php", "ms=600000")
		fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			out := scrape(t, NewMetricsHandler(NewCollector(w.Snapshot, false), nil))
			line, ok := findSeries(out, "phpfpm_pool_utilization_ratio", `pool="www"`)
			return out, ok && strings.HasSuffix(line, " 3")
		})
	})
}
