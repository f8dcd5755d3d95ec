package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/watch"
)

// fakeSource answers from fixed values.
type fakeSource struct {
	snap        *watch.Snapshot
	live, ready bool
	why         []string
	events      *event.Log
}

func (f fakeSource) Snapshot() *watch.Snapshot { return f.snap }
func (f fakeSource) Live() (bool, []string)    { return f.live, f.why }
func (f fakeSource) Ready() (bool, []string)   { return f.ready, f.why }
func (f fakeSource) Events() *event.Log        { return f.events }

func TestHTTPHandler(t *testing.T) {
	events := event.NewLog(nil)
	events.Add(event.Event{Pool: "pool0", Kind: event.KindHung, Message: "worker 101 hung"})
	down := fakeSource{snap: fixedSnapshot(1, 2), why: []string{"pool pool0: last heartbeat failed: timeout"}, events: events}
	up := down
	up.live, up.ready = true, true
	quiet := up
	quiet.events = event.NewLog(nil)
	for _, tt := range []struct {
		name   string
		source Source
		method string
		path   string
		code   int
		body   string
	}{
		{"live", up, http.MethodGet, "/healthz", 200, "ok"},
		{"not live", down, http.MethodGet, "/healthz", 503, "pool pool0: last heartbeat failed"},
		{"not ready", down, http.MethodGet, "/readyz", 503, "pool pool0: last heartbeat failed"},
		{"status", up, http.MethodGet, "/status", 200, `"name": "pool0"`},
		{"events", up, http.MethodGet, "/events", 200, `"message": "worker 101 hung"`},
		{"no events yet", quiet, http.MethodGet, "/events", 200, `"events": []`},
		{"metrics", up, http.MethodGet, "/metrics", 200, "phpfpm_up"},
		{"not watching", nil, http.MethodGet, "/status", 503, "not watching any pool"},
		{"read-only POST", up, http.MethodPost, "/status", 405, "read-only"},
		{"read-only PUT", up, http.MethodPut, "/healthz", 405, "read-only"},
		{"read-only DELETE", up, http.MethodDelete, "/events", 405, "read-only"},
		{"unknown path", up, http.MethodGet, "/nope", 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.source
			metrics := NewMetricsHandler(NewCollector(func() *watch.Snapshot {
				if src == nil {
					return nil
				}
				return src.Snapshot()
			}, true), nil)
			h := NewHTTPHandler(func() Source { return src }, metrics, "/metrics")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("%s %s = %d %q, want %d with %q", tt.method, tt.path, rec.Code, rec.Body.String(), tt.code, tt.body)
			}
		})
	}
}
