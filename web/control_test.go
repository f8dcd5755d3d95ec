package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/safefile"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// fakeWatcher answers the handlers from a fixed snapshot and records kills.
type fakeWatcher struct {
	snap   *watch.Snapshot
	killed []string
}

func (f *fakeWatcher) Snapshot() *watch.Snapshot { return f.snap }
func (f *fakeWatcher) Live() (bool, []string)    { return true, nil }
func (f *fakeWatcher) Ready() (bool, []string)   { return true, nil }
func (f *fakeWatcher) Events() *event.Log        { return event.NewLog(nil) }

// find looks pool up among the snapshot's pools as the watcher does.
func (f *fakeWatcher) find(pool string) (supervisor.PoolID, error) {
	var ids []supervisor.PoolID
	for _, p := range f.snap.Pools {
		ids = append(ids, p.Report.ID())
	}
	return supervisor.FindPool(ids, pool)
}

func (f *fakeWatcher) KillWorker(_ context.Context, pool string, pid int, who string) (watch.KillResult, error) {
	if id, err := f.find(pool); err != nil {
		return watch.KillResult{}, err
	} else if id.Pool != "pool0" {
		return watch.KillResult{}, watch.ErrUnknownPool
	}
	f.killed = append(f.killed, who)
	if pid == 102 {
		return watch.KillResult{Result: watch.ResultRefused, Message: "not killing worker 102: it is idle"}, nil
	}
	return watch.KillResult{Result: watch.ResultOK, Message: "SIGTERM worker 101"}, nil
}
func (f *fakeWatcher) Slowlog(_ context.Context, pool string, pid int) (string, error) {
	if _, err := f.find(pool); err != nil {
		return "", err
	}
	switch pid {
	case 102:
		return "", &supervisor.SlowlogError{Pool: pool, Path: "/var/log/www.slow", PID: pid, Reason: supervisor.SlowlogNoEntry}
	case 103:
		return "", &supervisor.SlowlogError{Pool: pool, Path: "/proc/self/fd/2", PID: pid, Reason: supervisor.SlowlogUnreadable, Err: safefile.ErrNotRegular}
	}
	return "[pool " + pool + "] pid 101\nscript_filename = /var/www/report.php", nil
}
func (f *fakeWatcher) Stack(_ context.Context, pool string, pid int) (*supervisor.Stack, error) {
	if pid != 101 {
		return nil, fmt.Errorf("pid %d: the latest status page of pool %s does not name it: %w", pid, pool, watch.ErrNotAWorker)
	}
	return &supervisor.Stack{Frames: []supervisor.Frame{{Function: "sleep"}, {Function: "wait_db", File: "/var/www/db.php", Line: 4}}}, nil
}

func serveFake(t *testing.T, policy Policy) (*fakeWatcher, *Remote) {
	t.Helper()
	snap := fixedSnapshot(2, 3)
	snap.Nginx = map[nginxlog.Key]uint64{{Pool: snap.Pools[0].Report.ID(), Status: 502, Cause: nginxlog.CauseReset}: 4}
	snap.Pools[0].Report.Processes[0].RequestURI = "/a\x1b]0;x\a\u009b"
	f := &fakeWatcher{snap: snap}
	h := WithControl(NewHTTPHandler(func() Source { return f }, nil, ""), func() watch.Control { return f }, policy)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r, err := NewRemote(srv.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return f, r
}

// TestSnapshotOverHTTP: /snapshot carries the snapshot exactly, control
// characters in URIs included, as JSON escapes; no raw control byte.
func TestSnapshotOverHTTP(t *testing.T) {
	f, r := serveFake(t, Policy{})
	got, err := r.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(encodeSnapshot(f.snap))
	have, _ := json.Marshal(encodeSnapshot(got))
	if !bytes.Equal(want, have) {
		t.Errorf("snapshot changed on the way:\n%s\n%s", want, have)
	}
	body, _, err := r.do(context.Background(), http.MethodGet, r.url("/snapshot", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(body, func(c rune) bool { return (c < 0x20 && c != '\n') || (c >= 0x7f && c <= 0x9f) }); i >= 0 {
		t.Errorf("raw control character in /snapshot at %d: %q", i, body[max(0, i-20):i+5])
	}
}

// TestSnapshotKeepsFailures: a pool whose heartbeat failed reads back
// from /snapshot's JSON with its failure class, as top --from shows it.
func TestSnapshotKeepsFailures(t *testing.T) {
	s := fixedSnapshot(1, 2)
	s.Pools[0].Report.Heartbeat = supervisor.Heartbeat{Failure: &supervisor.Failure{Error: "timeout", Reason: fastcgi.ReasonTimeout, Class: fastcgi.ClassTimeout, NginxStatus: 504}}
	body, err := json.Marshal(encodeSnapshot(s))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if f := got.Pools[0].Report.Heartbeat.Failure; f == nil || f.Class != fastcgi.ClassTimeout || f.NginxStatus != 504 {
		t.Errorf("heartbeat failure read back as %+v", f)
	}
}

// TestKillOverHTTP: off unless enabled; on, a loopback client may kill
// when kills from loopback are allowed, and hears refusals in plain words;
// slowlog is read-only and there for loopback clients.
func TestKillOverHTTP(t *testing.T) {
	ctx := context.Background()
	f, r := serveFake(t, Policy{})
	res, err := r.KillWorker(ctx, "pool0", 101, "")
	if err != nil || res.Done() || !strings.Contains(res.Message, "--web.enable-kill") || len(f.killed) != 0 {
		t.Errorf("kill while off: %+v %v %v", res, err, f.killed)
	}
	entry, err := r.Slowlog(ctx, "pool0", 101)
	if err != nil || !strings.Contains(entry, "script_filename") {
		t.Errorf("slowlog: %q %v", entry, err)
	}
	// A slowlog without an entry, or one fpmguard cannot read, is an
	// error that says why and what to do, not an empty entry.
	if entry, err := r.Slowlog(ctx, "pool0", 102); err == nil || entry != "" || !strings.Contains(err.Error(), "has no entry for worker 102") || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("slowlog without an entry: %q %v", entry, err)
	}
	if _, err := r.Slowlog(ctx, "pool0", 103); err == nil || !strings.Contains(err.Error(), "php-fpm's own output") || !strings.Contains(err.Error(), "HTTP 500") {
		t.Errorf("slowlog that cannot be read: %v", err)
	}
	if st, err := r.Stack(ctx, "pool0", 101); err != nil || st.Places() != "sleep <- wait_db (/var/www/db.php:4)" {
		t.Errorf("stack: %+v %v", st, err)
	}
	if _, err := r.Stack(ctx, "pool0", 999); err == nil || !strings.Contains(err.Error(), "does not name it") || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("stack of a pid that is no worker: %v", err)
	}

	f, r = serveFake(t, Policy{Kill: true})
	if res, err := r.KillWorker(ctx, "pool0", 101, ""); err != nil || res.Done() || !strings.Contains(res.Message, "--web.kill-from-loopback is not given") || len(f.killed) != 0 {
		t.Errorf("kill from loopback without --web.kill-from-loopback: %+v %v %v", res, err, f.killed)
	}
	f, r = serveFake(t, Policy{Kill: true, KillFromLoopback: true})
	if res, err := r.KillWorker(ctx, "pool0", 101, ""); err != nil || res.Result != watch.ResultOK || len(f.killed) != 1 || !strings.HasPrefix(f.killed[0], "HTTP client 127.0.0.1:") {
		t.Errorf("kill: %+v %v %v", res, err, f.killed)
	}
	if res, _ := r.KillWorker(ctx, "pool0", 102, ""); res.Result != watch.ResultRefused || !strings.Contains(res.Message, "idle") {
		t.Errorf("refused kill: %+v", res)
	}
	if res, _ := r.KillWorker(ctx, "nope", 101, ""); res.Result != watch.ResultRefused || !strings.Contains(res.Message, "HTTP 404") {
		t.Errorf("unknown pool: %+v", res)
	}
	// A second pool0, under another master: pool0 alone names neither,
	// and the answer says how to name each.
	other := f.snap.Pools[1].Report
	other.Name, other.MasterName = "pool0", "/etc/php/7.4/fpm/php-fpm.conf"
	if res, _ := r.KillWorker(ctx, "pool0", 101, ""); res.Result != watch.ResultRefused || !strings.Contains(res.Message, "HTTP 400") ||
		!strings.Contains(res.Message, "pool0@/etc/php/7.4/fpm/php-fpm.conf") || !strings.Contains(res.Message, "pool0@"+fixedConf) {
		t.Errorf("pool0 under two masters: %+v", res)
	}
	if _, err := r.Slowlog(ctx, "pool0", 101); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("slowlog of pool0 under two masters: %v", err)
	}
	if res, err := r.KillWorker(ctx, "pool0@"+fixedConf, 101, ""); err != nil || res.Result != watch.ResultOK {
		t.Errorf("kill of pool0@%s: %+v %v", fixedConf, res, err)
	}
	// GET and a form post (what a web page can send) do nothing.
	resp, err := http.Get(r.url("/kill", nil))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /kill: %v %v", resp, err)
	}
	resp, err = http.Post(r.url("/kill", nil), "application/x-www-form-urlencoded", strings.NewReader(`{"pool":"pool0","pid":101}`))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusUnsupportedMediaType || len(f.killed) != 3 {
		t.Errorf("form POST /kill: %v %v (kills %v)", resp, err, f.killed)
	}
	// The rest stays read-only.
	resp, err = http.Post(r.url("/status", nil), "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %v %v", resp, err)
	}
}

func TestKillPolicy(t *testing.T) {
	loop := Policy{Kill: true, KillFromLoopback: true}
	for _, tc := range []struct {
		policy     Policy
		peer, host string
		ok         bool
	}{
		{Policy{}, "127.0.0.1:5000", "127.0.0.1:9253", false},
		{Policy{Kill: true}, "127.0.0.1:5000", "127.0.0.1:9253", false}, // loopback is not enough by default
		{loop, "127.0.0.1:5000", "127.0.0.1:9253", true},
		{loop, "[::1]:5000", "[::1]:9253", true},
		{loop, "127.0.0.1:5000", "localhost:9253", true},
		{loop, "10.1.2.3:5000", "10.1.2.4:9253", false},
		{loop, "127.0.0.1:5000", "evil.example:9253", false}, // DNS rebinding
		{Policy{Kill: true, Authenticated: true}, "10.1.2.3:5000", "fpm.example:9253", true},
		{Policy{Authenticated: true}, "127.0.0.1:5000", "127.0.0.1:9253", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/kill", nil)
		r.RemoteAddr, r.Host = tc.peer, tc.host
		if why := tc.policy.refuseKill(r); (why == "") != tc.ok {
			t.Errorf("%+v from %s to %s: refused %q, want ok %v", tc.policy, tc.peer, tc.host, why, tc.ok)
		}
	}
}

// guarded serves the fake watcher under policy, as serve does.
func guarded(policy Policy) (*fakeWatcher, http.Handler) {
	f := &fakeWatcher{snap: fixedSnapshot(1, 2)}
	metrics := NewMetricsHandler(NewCollector(f.Snapshot, true), nil)
	return f, WithControl(NewHTTPHandler(func() Source { return f }, metrics, "/metrics"), func() watch.Control { return f }, policy)
}

var everyPath = []string{"/", "/healthz", "/readyz", "/status", "/snapshot", "/events", "/advice", "/metrics", "/slowlog?pool=pool0&pid=101"}

// TestHostAllowList reproduces the DNS rebinding of finding 6 of issue 18:
// a page on attacker.example, whose name the attacker points at 127.0.0.1,
// reads what it likes through the visitor's browser; the browser sends the
// page's own name as Host. Every path must refuse that Host, through a real
// server, on loopback; while scrapes and probes by IP address, and names
// the operator allows, are answered.
func TestHostAllowList(t *testing.T) {
	_, h := guarded(Policy{Hosts: []string{"fpm.example", ".fleet.example"}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path, host string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"attacker.example", "attacker.example:" + port, "fpm.example.attacker.example", "evilfleet.example", "localhost.attacker.example", "127.0.0.1.nip.io:" + port} {
		for _, path := range everyPath {
			if code, body := get(path, host); code != http.StatusForbidden || strings.Contains(body, "pool0") {
				t.Errorf("GET %s with Host %s: %d %q, want 403", path, host, code, body)
			}
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST.", "[::1]:" + port, "10.1.2.3:9253", "[fd00::1]:9253", "fpm.example:" + port, "fleet.example", "a.fleet.example:9253"} {
		if code, body := get("/metrics", host); code != http.StatusOK || !strings.Contains(body, "phpfpm_up") {
			t.Errorf("GET /metrics with Host %s: %d %q, want 200", host, code, body)
		}
	}
}

// TestWorkerDetails reproduces the rest of finding 6: without a web
// config, /slowlog served PHP stack traces, and /status, /snapshot and
// /events request URIs and scripts, to any client on the network. They go
// to loopback clients now, or to authenticated ones; the rest stays open.
func TestWorkerDetails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policy     Policy
		peer, host string
		details    bool
	}{
		{"network client", Policy{}, "10.1.2.3:5000", "10.1.2.4:9253", false},
		{"network client, loopback Host", Policy{}, "10.1.2.3:5000", "127.0.0.1:9253", false},
		{"loopback client", Policy{}, "127.0.0.1:5000", "127.0.0.1:9253", true},
		{"loopback client, allowed name", Policy{Hosts: []string{"fpm.example"}}, "127.0.0.1:5000", "fpm.example:9253", false},
		{"authenticated network client", Policy{Authenticated: true}, "10.1.2.3:5000", "10.1.2.4:9253", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, h := guarded(tc.policy)
			for _, path := range everyPath {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.RemoteAddr, r.Host = tc.peer, tc.host
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				holds := slices.Contains(detailPaths, r.URL.Path)
				// (/advice answers 404 here: the fake keeps no history.)
				if want := !holds || tc.details; (rec.Code != http.StatusForbidden) != want {
					t.Errorf("GET %s: %d %q, want answered %v", path, rec.Code, rec.Body.String(), want)
				}
				if rec.Code == http.StatusForbidden && (strings.Contains(rec.Body.String(), "report.php") || strings.Contains(rec.Body.String(), "pool0")) {
					t.Errorf("GET %s: the refusal holds details: %q", path, rec.Body.String())
				}
			}
		})
	}
}

func TestAuthenticatesClients(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"basic_auth_users:\n  alice: $2y$10$abcdefghijklmnopqrstuv\n", true},
		{"tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", false},
		{"tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n", true},
		{"tls_server_config:\n  client_auth_type: VerifyClientCertIfGiven\n", false},
	} {
		p := filepath.Join(dir, "web.yml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := AuthenticatesClients(p); err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.yaml, got, err, tc.want)
		}
	}
	if got, err := AuthenticatesClients(""); got || err != nil {
		t.Errorf("no file: %v %v", got, err)
	}
}

// BenchmarkSnapshotDecode50 is the part of a refresh of top --from that
// standalone top does not have: reading /snapshot of a 50-worker pool.
func BenchmarkSnapshotDecode50(b *testing.B) {
	body, err := json.Marshal(encodeSnapshot(fixedSnapshot(1, 50)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeSnapshot(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}
