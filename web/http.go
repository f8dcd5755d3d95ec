// Package web serves what fpmguard knows over HTTP: the health probes, the
// status and events as JSON, Prometheus metrics and the status page, all
// answered from the latest snapshot. Every route reads, but for POST /kill,
// which is off unless asked for and acts only through the watcher's own
// KillWorker (control.go).
//
// It reads watch's Snapshot and the packages its values come from
// (supervisor, fastcgi, opcache, nginxlog, history, advise, event, lag, recent, human,
// termsafe). It must not import top, runner or the command, and it never
// talks to php-fpm itself; nothing imports it but the command.
package web

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/termsafe"
	"github.com/fpmguard/fpmguard/watch"
)

// HTTP limits: every answer comes from memory, so these bound slow or
// greedy clients, never php-fpm.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// NewHTTPServer wraps h with fpmguard's timeouts and size limits.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadHeaderTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
	}
}

// Source is what the handlers read: a watcher's snapshot, its probes'
// answers and its events.
type Source interface {
	Snapshot() *watch.Snapshot
	Live() (ok bool, reasons []string)
	Ready() (ok bool, reasons []string)
	Events() *event.Log
}

// NewHTTPHandler serves the source current returns (it changes when
// SIGHUP reloads the config; nil while nothing is watched): /healthz,
// /readyz, /status, /snapshot, /events, /advice, at telemetryPath metrics
// (nil: the route answers 404 until metrics exist), and the status page at
// / (page.go). Everything is read-only and answered
// from memory. It checks no client: fpmguard serves it through
// WithControl, whose Policy decides who may read what.
func NewHTTPHandler(current func() Source, metrics http.Handler, telemetryPath string) http.Handler {
	mux := http.NewServeMux()
	watching := func(h http.HandlerFunc) http.HandlerFunc {
		return func(rw http.ResponseWriter, r *http.Request) {
			if current() == nil {
				http.Error(rw, "not watching any pool: see fpmguard's log", http.StatusServiceUnavailable)
				return
			}
			h(rw, r)
		}
	}
	mux.HandleFunc("/healthz", watching(func(rw http.ResponseWriter, _ *http.Request) {
		ok, reasons := current().Live()
		probeAnswer(rw, ok, reasons)
	}))
	mux.HandleFunc("/readyz", watching(func(rw http.ResponseWriter, _ *http.Request) {
		ok, reasons := current().Ready()
		probeAnswer(rw, ok, reasons)
	}))
	mux.HandleFunc("/status", watching(func(rw http.ResponseWriter, _ *http.Request) {
		writeJSON(rw, current().Snapshot().Report())
	}))
	mux.HandleFunc("/snapshot", watching(func(rw http.ResponseWriter, _ *http.Request) {
		writeJSON(rw, encodeSnapshot(current().Snapshot()))
	}))
	mux.HandleFunc("/events", watching(func(rw http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n <= 0 {
			n = 100
		}
		writeJSON(rw, struct {
			Events []event.Event `json:"events"`
		}{current().Events().Recent(n)})
	}))
	mux.HandleFunc("/advice", watching(adviceHandler(current)))
	if telemetryPath == "" {
		telemetryPath = "/metrics"
	}
	if metrics == nil {
		metrics = http.NotFoundHandler()
	}
	mux.Handle(telemetryPath, metrics)
	page := newPage(current, telemetryPath)
	mux.Handle("/", page.serve("page"))
	mux.Handle(pageFragmentPath, page.serve("live"))
	mux.HandleFunc(pageStaticPrefix, serveStatic)
	return readOnly(mux)
}

// readOnly refuses every method that could change something: nothing
// reachable over HTTP acts.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			http.Error(rw, "read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		rw.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(rw, r)
	})
}

// hostAllowed reports whether a request naming hostport in its Host
// header may be answered. DNS rebinding reads a server through a name the
// attacker controls, pointed at the server's address: the browser then
// sends that name. So the names fpmguard answers to are listed, and an IP
// address is always answered, whatever the listen address: no page can be
// served from an address literal but by the server at that address. That
// keeps Prometheus' scrapes by address (Host is the target, host:port) and
// the kubelet's probes (Host is the pod's IP) working. A name (a static
// scrape target, a Service) needs --web.allowed-host, or the listen
// address's own name. An empty Host is HTTP/1.0 without one, which no
// browser sends.
func hostAllowed(hostport string, names []string) bool {
	if hostport == "" {
		return true
	}
	host := hostName(hostport)
	if _, err := netip.ParseAddr(host); err == nil || host == "localhost" {
		return true
	}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if host == n || (strings.HasPrefix(n, ".") && (host == n[1:] || strings.HasSuffix(host, n))) {
			return true
		}
	}
	return false
}

// hostName is the host of a Host header, without its port, brackets or
// final dot, in lower case.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
}

// once says yes the first time it sees a key, for n keys at most: a client
// that sends a new Host each time cannot flood the log.
type once struct {
	mu   sync.Mutex
	seen map[string]bool
	n    int
}

func newOnce(n int) *once { return &once{seen: map[string]bool{}, n: n} }

func (o *once) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[key] || len(o.seen) >= o.n {
		return false
	}
	o.seen[key] = true
	return true
}

func probeAnswer(rw http.ResponseWriter, ok bool, reasons []string) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	if ok {
		fmt.Fprintln(rw, "ok")
		return
	}
	rw.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(rw, strings.Join(reasons, "\n"))
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	// DEL and C1 controls escaped too: the values stay exact, and the
	// answer is safe to show on a terminal (curl /events).
	enc := json.NewEncoder(termsafe.JSONWriter{W: rw})
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
