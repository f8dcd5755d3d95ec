package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/watch"
)

// The status page at /: what top shows, for a browser. It is rendered on
// the server from the watcher's snapshot, as /metrics and /status are;
// its script fetches the live part again from /fragment, rendered by the
// same template, every probe interval (a second at the least), and a meta
// refresh does the same without the script. The stylesheet, the script
// and the icon are fpmguard's own, embedded: the page works air-gapped.
//
// Worker details (pids, URIs, scripts, event messages) follow /status's
// rule, decided by the Policy in WithControl: a client that may not read
// /status reads a page without them, and a line saying why.
const (
	pageFragmentPath = "/fragment"
	pageStaticPrefix = "/static/"
)

//go:embed static/page.gohtml
var pageSource string

//go:embed static/page.css static/page.js static/favicon.svg
var pageStatic embed.FS

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
}).Parse(pageSource))

// pageCSP lets the page load only fpmguard's own stylesheet, script and
// icon, and fetch only from fpmguard: no inline script or style, no
// plugin, no base or form target elsewhere, and no other site may frame
// it (clickjacking a kill button).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// setPageHeaders sets the security headers of every answer of the page.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP 2
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// access is what the policy lets the client of one request see and do on
// the page. WithControl's guard puts it in the request's context; a
// request without it (the handler served alone) sees no worker detail
// and has no kill button.
type access struct {
	details bool // may read /status: pids, URIs, scripts, event messages
	kill    bool // may POST /kill
}

type accessKey struct{}

func withAccess(r *http.Request, a access) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), accessKey{}, a))
}

func accessOf(r *http.Request) access {
	a, _ := r.Context().Value(accessKey{}).(access)
	return a
}

// isPagePath reports the paths whose answer depends on the client's
// access.
func isPagePath(p string) bool { return p == "/" || p == pageFragmentPath }

// page serves the status page. Its history of heartbeats is shared by
// every viewer: each view takes in the snapshot it shows, so the
// sparklines hold the heartbeats seen while anyone looked, as top's do.
type page struct {
	current func() Source
	links   []link

	mu   sync.Mutex
	hist *recent.History
	bufs sync.Pool
}

func newPage(current func() Source, telemetryPath string) *page {
	p := &page{current: current, hist: recent.New(), bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
	for _, path := range []string{telemetryPath, "/status", "/snapshot", "/events", "/advice", "/healthz", "/readyz"} {
		// Relative, so that the page works behind a proxy that serves it
		// under a path of its own.
		p.links = append(p.links, link{Href: "." + path, Text: path})
	}
	return p
}

// view builds what the client of r sees now: it reads the snapshot and
// the events, and never probes.
func (p *page) view(r *http.Request) *pageView {
	var snap *watch.Snapshot
	var events []event.Event
	if src := p.current(); src != nil {
		snap = src.Snapshot()
		if log := src.Events(); log != nil {
			events = log.Recent(pageEvents)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if snap != nil {
		p.hist.Observe(snap)
	}
	return buildPage(snap, events, p.hist, accessOf(r), p.links)
}

// serve answers with the whole page, or with its live part alone.
func (p *page) serve(part string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if part == "page" && r.URL.Path != "/" {
			http.NotFound(rw, r)
			return
		}
		buf := p.bufs.Get().(*bytes.Buffer)
		defer p.bufs.Put(buf)
		buf.Reset()
		if err := pageTemplate.ExecuteTemplate(buf, part, p.view(r)); err != nil {
			http.Error(rw, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		setPageHeaders(rw.Header())
		rw.Header().Set("Cache-Control", "no-store")
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = rw.Write(buf.Bytes())
	}
}

// staticFile is one embedded file of the page, with its validator.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
}

var pageFiles = func() map[string]staticFile {
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
	files := map[string]staticFile{}
	entries, err := pageStatic.ReadDir("static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		body, err := pageStatic.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		files[e.Name()] = staticFile{body: body, contentType: types[path.Ext(e.Name())], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return files
}()

// serveStatic serves the page's stylesheet, script and icon. A browser
// asks again each time (no-cache) and gets 304 while they are the same:
// a new fpmguard's files are never mixed with an old page.
func serveStatic(rw http.ResponseWriter, r *http.Request) {
	f, ok := pageFiles[r.URL.Path[len(pageStaticPrefix):]]
	if !ok {
		http.NotFound(rw, r)
		return
	}
	setPageHeaders(rw.Header())
	rw.Header().Set("Content-Type", f.contentType)
	rw.Header().Set("Cache-Control", "no-cache")
	rw.Header().Set("ETag", f.etag)
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(f.body))
}
