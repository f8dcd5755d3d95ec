package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
	exporterweb "github.com/prometheus/exporter-toolkit/web"
)

// Strings a client or a PHP config controls, each of which would be
// markup or script if the page let it through.
const (
	evilURI    = `/x.php/<script>alert(1)</script><img src=x onerror=alert(2)>`
	evilScript = `/var/www/"><svg onload=alert(3)>.php`
	evilPool   = `shop</th><script>alert(4)</script>`
	evilMethod = `G<b>ET`
	// evilFunction is a PHP function name as the worker's memory holds
	// it: the application's text.
	evilFunction = `x<img src=y onerror=alert(5)>`
)

// pageSnapshot is fixedSnapshot with hostile strings where clients and
// configs put theirs, a pool not probed yet, and probe times a second
// apart so that the sparklines fill: the heartbeat of probe i takes
// 0.2+i/10 ms, and every fifth fails.
func pageSnapshot(i int) *watch.Snapshot {
	s := fixedSnapshot(3, 2)
	s.Time = s.Time.Add(time.Duration(i) * time.Second)
	w := &s.Pools[0].Report.Processes[0]
	w.RequestURI, w.Script, w.RequestMethod = evilURI, evilScript, evilMethod
	w.PSSBytes = 0
	w.Stack = &supervisor.Stack{Frames: []supervisor.Frame{{Function: "sleep"}, {Function: evilFunction, File: evilScript, Line: 4}}}
	w.SlowlogTrace = []string{"sleep() " + evilScript + ":4"}
	r := s.Pools[0].Report
	supervisor.Judge(r, nil, supervisor.Thresholds{})
	r.Waits = []supervisor.WaitGroup{{Wait: *w.Wait, PIDs: []int{w.PID}, Workers: 2, Line: "worker 101 blocked reading from 10.0.0.5:3306 (MySQL) for 31s, in sleep <- " + evilFunction}}
	s.Pools[1].Report.Name = evilPool
	notYet := supervisor.NotProbed(supervisor.Target{Name: "api", PingPath: "/ping", StatusPath: "/status"}, "not probed yet")
	s.Pools[2] = watch.PoolView{Report: &notYet}
	for j := range 2 {
		p := &s.Pools[j]
		p.LastProbe = s.Time
		p.Report.Heartbeat = supervisor.Heartbeat{OK: true, LatencySeconds: (0.2 + float64(i)/10) / 1000}
		if i%5 == 4 {
			p.Report.Heartbeat = supervisor.Heartbeat{Error: "timeout", Failure: &supervisor.Failure{Error: "timeout", Class: fastcgi.ClassTimeout, NginxStatus: 504}}
		}
	}
	s.Opcache[0].Master = `/etc/php/<b>fpm</b>.conf`
	s.Opcache[0].FillRatio, s.Opcache[0].HitRate = 0.99, 0.714
	s.Self.LagSeconds = 0.01 * float64(i)
	return s
}

// pageEventsLog holds events that quote a hostile request.
func pageEventsLog() *event.Log {
	l := event.NewLog(nil)
	at := time.Date(2026, 11, 26, 8, 0, 5, 0, time.UTC)
	l.Add(event.Event{Time: at, Pool: "pool0", PID: 101, Kind: event.KindHung, Message: "worker 101 hung (blocked): GET " + evilURI + " for 45s in " + evilScript})
	l.Add(event.Event{Time: at.Add(time.Second), Kind: event.KindOpcache, Message: "opcache of master 100 is degraded: cache full"})
	return l
}

// sequence is a source whose snapshot moves on at each call, as a
// watcher's does between probes.
type sequence struct {
	n      atomic.Int64
	events *event.Log
}

func (q *sequence) Snapshot() *watch.Snapshot { return pageSnapshot(int(q.n.Add(1))) }
func (q *sequence) Live() (bool, []string)    { return true, nil }
func (q *sequence) Ready() (bool, []string)   { return true, nil }
func (q *sequence) Events() *event.Log        { return q.events }

// render serves path of the page as a client with access a sees it,
// after views earlier views (for the sparklines).
func render(t testing.TB, path string, a access, views int) *httptest.ResponseRecorder {
	t.Helper()
	src := &sequence{events: pageEventsLog()}
	h := NewHTTPHandler(func() Source { return src }, nil, "/metrics")
	var rec *httptest.ResponseRecorder
	for range views + 1 {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, withAccess(httptest.NewRequest(http.MethodGet, path, nil), a))
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec
}

// TestPageGolden pins the live part of the page as a loopback client with
// kill on sees it. go test -update writes it again.
func TestPageGolden(t *testing.T) {
	rec := render(t, pageFragmentPath, access{details: true, kill: true}, recent.Beats)
	fpmtest.Golden(t, "page.golden", rec.Body.Bytes(), *update)
}

// TestPageEscapes: what clients and configs wrote reaches the page as
// text, in every place it appears, and the SVGs hold numbers only.
func TestPageEscapes(t *testing.T) {
	body := render(t, "/", access{details: true, kill: true}, recent.Beats).Body.String()
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("%d <script> elements, want 1 (the page's own)", n)
	}
	for _, bad := range []string{"<img", "<svg onload", "<b>", "alert(1)</script>", "</th><script>"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page holds %q as markup", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;", // URI: cell, reasons, events
		"&#34;&gt;&lt;svg onload=alert(3)&gt;.php",                                // script
		"shop&lt;/th&gt;&lt;script&gt;alert(4)&lt;/script&gt;",                    // pool name
		"G&lt;b&gt;ET", // method
		`<td data-label="Pool" class="inl">shop&lt;/th&gt;&lt;script&gt;alert(4)&lt;/script&gt;</td>`, // the worker's pool
		"/etc/php/&lt;b&gt;fpm&lt;/b&gt;.conf",                                                        // opcache master
		"x&lt;img src=y onerror=alert(5)&gt; (/var/www/&#34;&gt;&lt;svg onload=alert(3)&gt;.php:4)",   // a PHP stack's frame
		"in sleep &lt;- x&lt;img src=y onerror=alert(5)&gt;</strong>",                                 // the cause of the pool's hung workers
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not hold %q", want)
		}
	}
	for _, m := range regexp.MustCompile(`<path class="\w+" d="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if !regexp.MustCompile(`^(M\d+ \d+v-\d+h\d+v\d+z)+$`).MatchString(m[1]) {
			t.Errorf("sparkline path %q is not numbers only", m[1])
		}
	}
	if !strings.Contains(body, `<path class="failed"`) || !regexp.MustCompile(`last 16 heartbeats: [^"<]+, 3 failed`).MatchString(body) {
		t.Errorf("no sparkline of 16 heartbeats with 3 failed:\n%s", body)
	}
}

// TestPageSlots: a hung worker's wait and PHP stack, once the snapshot
// carries them, are drawn under it, as text.
func TestPageSlots(t *testing.T) {
	v := buildPage(pageSnapshot(1), nil, recent.New(), access{details: true}, nil)
	v.Workers[0].Wait = "flock() on <b>/tmp/lock</b>"
	v.Workers[0].Stack = []string{"sleep", "Repo-><i>find</i>", "<main>"}
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, "live", v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flock() on &lt;b&gt;/tmp/lock&lt;/b&gt;", "<li>Repo-&gt;&lt;i&gt;find&lt;/i&gt;</li>", "<li>&lt;main&gt;</li>"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the slots do not hold %q:\n%s", want, buf.String())
		}
	}
}

// TestPageDetails: worker details follow /status's rule. A client that
// may not read /status sees verdicts, counts and sparklines, and a line
// saying why the rest is hidden; kill buttons need --web.enable-kill and
// a client that may kill.
func TestPageDetails(t *testing.T) {
	f := &fakeWatcher{snap: pageSnapshot(1)}
	src := fakeSource{snap: f.snap, events: pageEventsLog()}
	for _, tc := range []struct {
		name          string
		policy        Policy
		peer, host    string
		details, kill bool
	}{
		{"network client", Policy{Kill: true, KillFromLoopback: true}, "10.1.2.3:5000", "10.1.2.4:9253", false, false},
		{"network client naming loopback", Policy{}, "10.1.2.3:5000", "127.0.0.1:9253", false, false},
		{"loopback client", Policy{}, "127.0.0.1:5000", "127.0.0.1:9253", true, false},
		{"loopback client, kill from loopback", Policy{Kill: true, KillFromLoopback: true}, "127.0.0.1:5000", "localhost:9253", true, true},
		{"loopback client, kill for the authenticated only", Policy{Kill: true}, "127.0.0.1:5000", "127.0.0.1:9253", true, false},
		{"authenticated network client", Policy{Authenticated: true, Kill: true}, "10.1.2.3:5000", "10.1.2.4:9253", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := WithControl(NewHTTPHandler(func() Source { return src }, nil, ""), func() watch.Control { return f }, tc.policy)
			for _, path := range []string{"/", pageFragmentPath} {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.RemoteAddr, r.Host = tc.peer, tc.host
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.String()
				if rec.Code != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, rec.Code, body)
				}
				shown := map[string]bool{
					"URI":           strings.Contains(body, "onerror=alert(2)"),
					"script":        strings.Contains(body, "onload=alert(3)"),
					"pid":           strings.Contains(body, ">101<"),
					"event message": strings.Contains(body, "worker 101 hung"),
					"master pid":    strings.Contains(body, "(pid 100)"),
				}
				for what, ok := range shown {
					if ok != tc.details {
						t.Errorf("GET %s: %s shown %v, want %v", path, what, ok, tc.details)
					}
				}
				if hidden := strings.Contains(body, "Worker details (pids, request URIs, scripts, event messages) are hidden"); hidden == tc.details {
					t.Errorf("GET %s: the line saying details are hidden shown %v, want %v", path, hidden, !tc.details)
				}
				if !tc.details && !strings.Contains(body, "1 more reason names a request (worker details hidden)") {
					t.Errorf("GET %s: the reason quoting the hung request is not counted as withheld:\n%s", path, body)
				}
				if got := strings.Contains(body, `class="kill"`); got != tc.kill {
					t.Errorf("GET %s: kill buttons %v, want %v", path, got, tc.kill)
				}
				for _, want := range []string{"DEGRADED", "NOT PROBED YET", "<svg class=\"spark\"", "71.4%"} {
					if !strings.Contains(body, want) {
						t.Errorf("GET %s: no %q", path, want)
					}
				}
			}
		})
	}
}

// TestPageHeaders: every answer of the page carries the headers that keep
// a browser from running anything but fpmguard's own script, from
// sniffing types, from framing the page and from sending it elsewhere in
// a Referer; the embedded files are served with their types and
// validators, and nothing else of static/ is.
func TestPageHeaders(t *testing.T) {
	h := NewHTTPHandler(func() Source { return fakeSource{snap: pageSnapshot(1), events: event.NewLog(nil)} }, nil, "")
	for _, tc := range []struct {
		path, ctype string
		code        int
	}{
		{"/", "text/html; charset=utf-8", 200},
		{pageFragmentPath, "text/html; charset=utf-8", 200},
		{"/static/page.css", "text/css; charset=utf-8", 200},
		{"/static/page.js", "text/javascript; charset=utf-8", 200},
		{"/static/favicon.svg", "image/svg+xml", 200},
		{"/static/page.gohtml", "", 404},
		{"/static/", "", 404},
		{"/static/page.go", "", 404},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, rec.Code, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		for k, want := range map[string]string{
			"Content-Type": tc.ctype, "Content-Security-Policy": pageCSP, "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, want)
			}
		}
		if etag := rec.Header().Get("ETag"); strings.HasPrefix(tc.path, pageStaticPrefix) {
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			r.Header.Set("If-None-Match", etag)
			again := httptest.NewRecorder()
			h.ServeHTTP(again, r)
			if etag == "" || again.Code != http.StatusNotModified {
				t.Errorf("GET %s again with its ETag %q: %d, want 304", tc.path, etag, again.Code)
			}
		}
	}
	for _, d := range []string{"script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(pageCSP, d) {
			t.Errorf("CSP %q lacks %q", pageCSP, d)
		}
	}
	if strings.Contains(pageCSP, "unsafe-inline") || strings.Contains(pageCSP, "unsafe-eval") {
		t.Errorf("CSP %q allows inline script or eval", pageCSP)
	}
	page := render(t, "/", access{}, 0).Body.String()
	if !strings.Contains(page, `<noscript><meta http-equiv="refresh" content="1"></noscript>`) {
		t.Errorf("no meta refresh for browsers without the script:\n%s", page)
	}
	if regexp.MustCompile(`<script>|\sstyle=|\son[a-z]+=`).MatchString(page) {
		t.Errorf("inline script, style or handler in the page: the CSP would refuse it")
	}
}

// TestPageNotWatching: with no watcher (discovery still looking), the page
// says so instead of failing.
func TestPageNotWatching(t *testing.T) {
	h := NewHTTPHandler(func() Source { return nil }, nil, "")
	for _, path := range []string{"/", pageFragmentPath} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "not watching any pool: see fpmguard&#39;s log") {
			t.Errorf("GET %s without a watcher: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// TestPageUnknown: a pool with no verdict yet is grey, in words.
func TestPageUnknown(t *testing.T) {
	s := pageSnapshot(1)
	s.Pools[1].Report.Health = supervisor.HealthUnknown
	v := buildPage(s, nil, recent.New(), access{}, nil)
	got := map[string]string{}
	for _, p := range v.Pools {
		got[p.Name] = p.Class + " " + p.Verdict
	}
	want := map[string]string{"pool0": "degraded DEGRADED", evilPool: "unknown UNKNOWN", "api": "unknown NOT PROBED YET"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("verdicts %v, want %v", got, want)
	}
	if v.Pools[0].Name != "pool0" {
		t.Errorf("the worst pool is not first: %v", v.Pools)
	}
}

// TestKillSameOrigin: POST /kill is refused to a request a browser makes
// for another site's page, even with the JSON type a page cannot send
// across origins without asking first; the page's own request, and
// clients that are not browsers (top --from, curl), go through.
func TestKillSameOrigin(t *testing.T) {
	f := &fakeWatcher{snap: pageSnapshot(1)}
	h := WithControl(NewHTTPHandler(func() Source { return f }, nil, ""), func() watch.Control { return f }, Policy{Kill: true, KillFromLoopback: true})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		code    int
	}{
		{"another site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"}, http.StatusForbidden},
		{"another port of this host", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:8080"}, http.StatusForbidden},
		{"an old browser on another site", map[string]string{"Origin": "http://attacker.example"}, http.StatusForbidden},
		{"the page itself", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:9253"}, http.StatusOK},
		{"not a browser", nil, http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodPost, "/kill", strings.NewReader(`{"pool":"pool0","pid":101}`))
		r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:9253"
		r.Header.Set("Content-Type", "application/json")
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.code)
		}
	}
	if len(f.killed) != 2 {
		t.Errorf("%d kills reached the watcher, want 2", len(f.killed))
	}
}

// TestPageWebConfig: --web.config.file covers the page, its live part and
// its files as every endpoint: exporter-toolkit asks every request for
// the basic auth credentials before fpmguard's handlers see it.
func TestPageWebConfig(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "web.yml")
	// bcrypt of "page-test", cost 4.
	if err := os.WriteFile(conf, []byte("basic_auth_users:\n  ops: $2a$04$FUlw8LmZH4p.v9BFycv.g.DAXCZzMsfFobv6y43z8NHj7GRE91P72\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := AuthenticatesClients(conf)
	if err != nil || !auth {
		t.Fatalf("AuthenticatesClients: %v %v", auth, err)
	}
	f := &fakeWatcher{snap: pageSnapshot(1)}
	h := WithControl(NewHTTPHandler(func() Source { return fakeSource{snap: f.snap, events: pageEventsLog()} }, nil, ""), func() watch.Control { return f },
		Policy{Authenticated: auth})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h)
	addrs, systemd := []string{l.Addr().String()}, false
	go func() {
		_ = exporterweb.Serve(l, srv, &exporterweb.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &conf}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	for _, path := range []string{"/", pageFragmentPath, "/static/page.js", "/static/page.css"} {
		for _, user := range []string{"", "ops"} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr().String()+path, nil)
			if user != "" {
				req.SetBasicAuth(user, "page-test")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			want := http.StatusUnauthorized
			if user != "" {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Errorf("GET %s as %q: %d, want %d", path, user, resp.StatusCode, want)
			}
			if path == "/" && user != "" && !strings.Contains(body.String(), "onerror=alert(2)") {
				t.Errorf("an authenticated client does not see worker details")
			}
		}
	}
}

// runWatcher runs w until the test ends.
func runWatcher(t *testing.T, w *watch.Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// TestPageSendsNoProbe: viewing the page reads the watcher's snapshot and
// sends php-fpm nothing. The watcher probes once an hour here, and the
// pool has one worker, which logs each request it served before it takes
// the next: between two requests of the test's own, php-fpm's access log
// holds nothing, however often the page is viewed in between.
func TestPageSendsNoProbe(t *testing.T) {
	accessLog := filepath.Join(fpmtest.Dir(t), "access.log")
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1, Extra: []string{"access.log = " + accessLog, `access.format = "%m %r%Q%q"`}}}})
	targets, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	client := fastcgi.Client{Timeout: 10 * time.Second}
	w := watch.New(&supervisor.Prober{Client: client, Procs: supervisor.SystemProcs}, targets, watch.Config{Interval: time.Hour}, event.NewLog(nil))
	runWatcher(t, w)
	fpmtest.Poll(t, time.Minute, func() (bool, bool) { p := w.Snapshot().Pools[0].Probed(); return p, p })
	// mark sends a ping of the test's own and waits for its line: every
	// request before it is logged then.
	mark := func(name string) []string {
		if _, err := client.Do(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}, fastcgi.Request{Path: "/ping", Query: name}); err != nil {
			t.Fatal(err)
		}
		return fpmtest.Poll(t, time.Minute, func() ([]string, bool) {
			b, _ := os.ReadFile(accessLog)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			return lines, slices.Contains(lines, "GET /ping?"+name)
		})
	}
	before := mark("before")
	h := NewHTTPHandler(func() Source { return w }, nil, "")
	for range 20 {
		for _, path := range []string{"/", pageFragmentPath} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, withAccess(httptest.NewRequest(http.MethodGet, path, nil), access{details: true}))
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<th scope="row" class="name">www</th>`) {
				t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
			}
		}
	}
	after := mark("after")
	if got := after[len(before) : len(after)-1]; len(got) != 0 {
		t.Errorf("php-fpm served %q while the page was viewed 40 times, want nothing", got)
	}
	if !slices.Contains(before, "GET /status?json&full") {
		t.Errorf("the watcher's own probe is not in the access log, so the log proves nothing: %q", before)
	}
}

// TestHeartbeatText: each heartbeat in the words top uses, and marked
// only when it is worth a look.
func TestHeartbeatText(t *testing.T) {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	timeout := &supervisor.Failure{Error: "timeout", Class: fastcgi.ClassTimeout, NginxStatus: 504}
	for _, tc := range []struct {
		name        string
		view        watch.PoolView
		text, class string
	}{
		{"not probed yet", watch.PoolView{Report: &supervisor.PoolReport{}}, "–", ""},
		{"answered", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{OK: true, LatencySeconds: 0.0003}}}, "300µs", ""},
		{"status page stood in", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{OK: true, LatencySeconds: 0.0042, Via: "status page"}}}, "4.2ms (status page)", ""},
		{"no ping.path", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Skipped: true}}}, "not configured (no ping.path)", ""},
		{"not monitored, connect failed", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Skipped: true},
			Connect: &supervisor.Connect{Failure: &supervisor.Failure{Class: fastcgi.ClassRefused, NginxStatus: 502}}}}, "not configured (no ping.path); connect FAILED: " + fastcgi.ClassRefused.String() + ", nginx would answer 502", "bad"},
		{"idle ondemand pool", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Idle: true}}}, "not sent (idle ondemand pool)", ""},
		{"starved", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Inconclusive: "fpmguard was starved"}}}, "not judged (fpmguard starved)", "warn"},
		{"misconfigured", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Failure: &supervisor.Failure{Class: fastcgi.ClassNotFound, NginxStatus: 404, Misconfigured: true}}}}, "MISCONFIGURED: " + fastcgi.ClassNotFound.String(), "warn"},
		{"all hung", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{WaitsBehindHung: 2, Failure: timeout}}}, "FAILED: not sent, all 2 workers hung", "bad"},
		{"timed out", watch.PoolView{LastProbe: at, Report: &supervisor.PoolReport{Heartbeat: supervisor.Heartbeat{Failure: timeout}}}, "FAILED: " + fastcgi.ClassTimeout.String() + ", nginx would answer 504", "bad"},
	} {
		if text, class := heartbeatText(&tc.view); text != tc.text || class != tc.class {
			t.Errorf("%s: %q %q, want %q %q", tc.name, text, class, tc.text, tc.class)
		}
	}
}

// TestPageTwoMasters: pool0 under two masters is two rows, each named with
// its master, as are its requests in flight (the name the kill button
// sends) and its events.
func TestPageTwoMasters(t *testing.T) {
	const other = "/etc/php/7.4/fpm/php-fpm.conf"
	s := fixedSnapshot(2, 2)
	s.Pools[1].Report.Name, s.Pools[1].Report.MasterName = "pool0", other
	for i := range s.Pools {
		s.Pools[i].LastProbe = s.Time
	}
	events := []event.Event{{Time: s.Time, Pool: "pool0", MasterName: other, Kind: event.KindHung, Message: "worker 1101 hung"}}
	v := buildPage(s, events, recent.New(), access{details: true, kill: true}, nil)
	a, b := "pool0@"+fixedConf, "pool0@"+other
	var names, workers []string
	for _, p := range v.Pools {
		names = append(names, p.Name)
	}
	for _, w := range v.Workers {
		workers = append(workers, w.Pool)
	}
	if !slices.Contains(names, a) || !slices.Contains(names, b) || !slices.Contains(workers, a) || !slices.Contains(workers, b) {
		t.Errorf("pools %q, requests in flight of %q; want %s and %s", names, workers, a, b)
	}
	if len(v.Events) != 1 || v.Events[0].Pool != b {
		t.Errorf("events: %+v", v.Events)
	}
}
