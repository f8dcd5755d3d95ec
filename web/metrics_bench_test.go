package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fpmguard/fpmguard/watch"
)

// BenchmarkScrape measures a whole /metrics scrape, per-worker series
// included, for one pool of 50 workers, 100 pools of 2 and of 50 workers,
// and 1000 pools of 2. "new" scrapes a snapshot other than the last one
// every time, as after each probe; "same" scrapes one snapshot again, as a
// second Prometheus of an HA pair does. gzip is what Prometheus asks for.
func BenchmarkScrape(b *testing.B) {
	for _, tt := range []struct{ pools, workers int }{{1, 50}, {100, 2}, {100, 50}, {1000, 2}} {
		snaps := []*watch.Snapshot{fixedSnapshot(tt.pools, tt.workers), fixedSnapshot(tt.pools, tt.workers)}
		for _, sc := range []struct{ snapshot, encoding string }{{"new", "identity"}, {"same", "identity"}, {"new", "gzip"}, {"same", "gzip"}} {
			b.Run(fmt.Sprintf("pools=%d/workers=%d/snapshot=%s/encoding=%s", tt.pools, tt.workers, sc.snapshot, sc.encoding), func(b *testing.B) {
				n := 0
				source := func() *watch.Snapshot {
					if sc.snapshot == "new" {
						n++
					}
					return snaps[n%2]
				}
				h := NewMetricsHandler(NewCollector(source, true), nil)
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept-Encoding", sc.encoding)
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatal(rec.Code)
					}
				}
			})
		}
	}
}
