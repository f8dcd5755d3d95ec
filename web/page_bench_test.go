package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/watch"
)

// BenchmarkPage measures one view of the status page for 100 pools of 2
// workers (one hung, one busy, each), as a loopback client with kill on
// sees it: the snapshot taken in, the view built and the template
// rendered, through the handler. "page" is the whole document, "fragment"
// the live part the script fetches every interval; "snapshot" is GET
// /snapshot of the same snapshot, the JSON a page rendered in the browser
// would fetch instead, for comparison. The sparklines are full (16
// heartbeats), and each view shows a snapshot newer than the last, as
// after every probe. cpu-ns/op counts garbage collection too; the issue
// allows 5 ms.
func BenchmarkPage(b *testing.B) {
	const pools, workers = 100, 2
	snaps := make([]*watch.Snapshot, recent.Beats+2)
	for i := range snaps {
		s := fixedSnapshot(pools, workers)
		s.Time = s.Time.Add(time.Duration(i) * time.Second)
		for j := range s.Pools {
			s.Pools[j].LastProbe = s.Time
			s.Pools[j].Report.Heartbeat.LatencySeconds = float64(1+(i+j)%7) / 10000
		}
		snaps[i] = s
	}
	events := event.NewLog(nil)
	for i := range 20 {
		events.Add(event.Event{Pool: fmt.Sprintf("pool%d", i), PID: 101, Kind: event.KindHung, Message: "worker 101 hung (blocked): GET /report.php for 45s in /var/www/report.php"})
	}
	for _, path := range []string{"/", pageFragmentPath, "/snapshot"} {
		b.Run(map[string]string{"/": "page", pageFragmentPath: "fragment", "/snapshot": "snapshot"}[path], func(b *testing.B) {
			n := 0
			src := fakeSource{events: events}
			h := NewHTTPHandler(func() Source {
				src.snap = snaps[n%len(snaps)]
				n++
				return src
			}, nil, "")
			req := withAccess(httptest.NewRequest(http.MethodGet, path, nil), access{details: true, kill: true})
			for range len(snaps) {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
			b.ReportAllocs()
			start := fpmtest.CPUTime()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
			b.ReportMetric(float64(fpmtest.CPUTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
