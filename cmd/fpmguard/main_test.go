package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// update rewrites the golden files under testdata: go test -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// fixedReport is a report with one of everything, for golden output.
func fixedReport() *supervisor.Report {
	rep := &supervisor.Report{
		Version: supervisor.ReportVersion,
		Time:    time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		Pools: []supervisor.PoolReport{
			{
				Name: "www", MasterName: "/etc/php/8.2/fpm/php-fpm.conf", Address: "unix:///run/php/www.sock", StatusAddress: "unix:///run/php/www-status.sock",
				Heartbeat: supervisor.Heartbeat{Error: "heartbeat of pool www: GET /ping on unix:///run/php/www.sock: timeout after 2s",
					Failure: &supervisor.Failure{Error: "GET /ping on unix:///run/php/www.sock: timeout after 2s", Reason: "timeout", Class: fastcgi.ClassTimeout, NginxStatus: 504, Hint: "no answer in time"}},
				Status: supervisor.StatusRead{OK: true, Via: "status_listen"},
				Master: &supervisor.MasterReport{PID: 100, Alive: true, OSState: supervisor.OSSleeping, Config: "/etc/php/8.2/fpm/php-fpm.conf"},
				Counters: &supervisor.Counters{ProcessManager: "static", StartTime: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC), StartSinceSeconds: 3600,
					AcceptedConn: 1234, IdleProcesses: 0, ActiveProcesses: 2, TotalProcesses: 2, MaxActiveProcesses: 2, MaxChildrenReached: 3, SlowRequests: 1},
				// php-fpm counts 0 on a unix socket; the kernel knows better.
				SocketQueue: &supervisor.SocketQueue{Length: 3, Max: 511},
				Config:      supervisor.PoolLimits{PM: "static", MaxChildren: 2, MinWorkers: 2},
				Processes: []supervisor.ProcessState{
					{PID: 101, State: "Running", OSState: supervisor.OSSleeping, ParentOK: true, RequestDurationSeconds: 45.2, RequestMethod: "GET", RequestURI: "/report.php", Script: "/var/www/report.php", Requests: 10, CPUSeconds: 0.12, RSSBytes: 24 << 20},
					{PID: 102, State: "Running", OSState: supervisor.OSRunning, ParentOK: true, RequestDurationSeconds: 1.5, RequestMethod: "POST", RequestURI: "/api/save", Script: "/var/www/index.php", Requests: 99, CPUSeconds: 3.4, RSSBytes: 30 << 20},
				},
			},
			{
				// Given by --pool: its master is named by its address.
				Name: "api", MasterName: "tcp://127.0.0.1:9000", Address: "tcp://127.0.0.1:9000",
				Heartbeat: supervisor.Heartbeat{Error: "heartbeat of pool api: connection refused",
					Failure: &supervisor.Failure{Error: "dial: connection refused", Reason: "refused", Class: fastcgi.ClassRefused, NginxStatus: 502, Hint: "nothing listens there"}},
				Status:    supervisor.StatusRead{Skipped: true},
				Processes: []supervisor.ProcessState{},
			},
			{
				// Debian's stock pool: no ping.path, no pm.status_path.
				Name: "stock", MasterName: "/etc/php/8.2/fpm/php-fpm.conf", Address: "unix:///run/php/php8.2-fpm.sock",
				Heartbeat: supervisor.Heartbeat{Skipped: true}, Status: supervisor.StatusRead{Skipped: true}, Connect: &supervisor.Connect{OK: true},
				SocketQueue: &supervisor.SocketQueue{Length: 0, Max: 4096},
				Master:      &supervisor.MasterReport{PID: 100, Alive: true, OSState: supervisor.OSSleeping, Config: "/etc/php/8.2/fpm/php-fpm.conf"},
				Processes:   []supervisor.ProcessState{},
				Advice:      []string{"add `pm.status_path = /status` to pool [stock] so fpmguard can see its workers", "add `ping.path = /ping` to pool [stock] so fpmguard can send a heartbeat through a worker"},
			},
		},
	}
	supervisor.Mark(&rep.Pools[0], supervisor.Thresholds{HungAfter: 30 * time.Second})
	supervisor.Judge(&rep.Pools[0], nil, supervisor.Thresholds{HungAfter: 30 * time.Second})
	supervisor.Mark(&rep.Pools[1], supervisor.Thresholds{})
	supervisor.Judge(&rep.Pools[1], nil, supervisor.Thresholds{})
	rep.Pools[1].Advice = []string{"add `pm.status_path = /status` to pool [api] so fpmguard can see its workers"}
	supervisor.Judge(&rep.Pools[2], nil, supervisor.Thresholds{})
	start := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	rep.Opcache = []supervisor.OpcacheReport{{
		MasterPID: 100, Master: "/etc/php/8.2/fpm/php-fpm.conf", Pools: []string{"www"}, Via: "unix:///run/php/www-status.sock", Script: "/var/lib/fpmguard/fpmguard-opcache-0123456789ab.php",
		Enabled: true, CacheFull: true, MemoryUsedBytes: 8 << 20, MemoryFreeBytes: 16 << 10, FillRatio: 0.998, MaxWastedRatio: 0.05,
		CachedScripts: 222, CachedKeys: 223, MaxCachedKeys: 223, InternedStringsUsedBytes: 1 << 20, InternedStringsBufferBytes: 8 << 20,
		Hits: 1000, Misses: 400, HitRate: 1000.0 / 1400, StartTime: &start, Health: supervisor.HealthDegraded,
		JITBufferSizeBytes: 64 << 20, JITBufferFreeBytes: 64<<20 - 2500, // a buffer made, the JIT off (8.4's default)
		Reasons: []string{"cache full (keys 223/223) and no restart will come: wasted 0% < max_wasted_percentage 5%; new scripts compile on every request — raise opcache.max_accelerated_files to at least 446"},
	}}
	return rep
}

// twoMasters is fixedReport with a www pool of another master, PHP 7.4's
// in a root of its own: Debian names the default pool www in every version.
func twoMasters() *supervisor.Report {
	rep := fixedReport()
	const master = "/srv/php74//etc/php/7.4/fpm/php-fpm.conf"
	www := supervisor.PoolReport{
		Name: "www", MasterName: master, Address: "unix:///proc/200/root/run/php/php7.4-fpm.sock",
		Heartbeat: supervisor.Heartbeat{OK: true, LatencySeconds: 0.0004},
		Status:    supervisor.StatusRead{OK: true, Via: "main"},
		// Found through its workers: the pool user wrote over the pid file.
		Master: &supervisor.MasterReport{PID: 200, Alive: true, OSState: supervisor.OSSleeping, Config: "/etc/php/7.4/fpm/php-fpm.conf",
			Error: "php-fpm pid file /run/php/php7.4-fpm.pid does not hold a pid"},
		Counters:  &supervisor.Counters{ProcessManager: "dynamic", AcceptedConn: 17, TotalProcesses: 1},
		Config:    supervisor.PoolLimits{PM: "dynamic", MaxChildren: 5},
		Processes: []supervisor.ProcessState{{PID: 201, State: "Idle", OSState: supervisor.OSSleeping, ParentOK: true, RequestMethod: "-", RequestURI: "-", Requests: 17, RSSBytes: 12 << 20}},
	}
	supervisor.Judge(&www, nil, supervisor.Thresholds{})
	rep.Pools = append(rep.Pools, www)
	rep.Opcache = append(rep.Opcache, supervisor.OpcacheReport{MasterPID: 200, Master: master, Pools: []string{"www"}, Enabled: true,
		MemoryUsedBytes: 9 << 20, MemoryFreeBytes: 119 << 20, FillRatio: 0.07, MaxWastedRatio: 0.05, Hits: 90, Misses: 10, HitRate: 0.9, Health: supervisor.HealthOK, Reasons: []string{}})
	return rep
}

// TestStatusOutputTwoMasters: two pools www under two masters are told
// apart in status and check by their masters' names; a pool whose name is
// its own is named alone, as with one master.
func TestStatusOutputTwoMasters(t *testing.T) {
	var table bytes.Buffer
	writeTable(&table, twoMasters(), false)
	fpmtest.Golden(t, "status-masters.txt", table.Bytes(), *update)
	res := supervisor.Check(twoMasters(), supervisor.CheckThresholds{})
	fpmtest.Golden(t, "check-masters.txt", []byte(res.Line+"\n"), *update)
}

func TestStatusOutputGolden(t *testing.T) {
	var table, colored, js bytes.Buffer
	writeTable(&table, fixedReport(), false)
	fpmtest.Golden(t, "status.txt", table.Bytes(), *update)
	writeTable(&colored, fixedReport(), true)
	fpmtest.Golden(t, "status-color.txt", colored.Bytes(), *update)
	if err := writeJSON(&js, fixedReport()); err != nil {
		t.Fatal(err)
	}
	fpmtest.Golden(t, "status.json", js.Bytes(), *update)

	res := supervisor.Check(fixedReport(), supervisor.CheckThresholds{})
	fpmtest.Golden(t, "check.txt", []byte(res.Line+"\n"), *update)
	if res.Code != supervisor.CheckCritical {
		t.Errorf("check code %d, want CRITICAL", res.Code)
	}
}

// runCLI runs the command in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadInputIsOneClearLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(cfg, []byte("timeout: 2s\ncolour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A php-fpm binary the pool user could change.
	theirs := filepath.Join(t.TempDir(), "php-fpm")
	if err := os.WriteFile(theirs, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--pool", "www.sock"}, 2, `bad FastCGI address "www.sock"`},
		{[]string{"status", "--pool", "/run/a.sock,pm=lazy"}, 2, `pm "lazy" must be static, dynamic or ondemand`},
		{[]string{"status", "--timeout", "soon"}, 2, `soon`},
		{[]string{"status", "-o", "xml"}, 2, `xml`},
		{[]string{"check", "--pool", "nope"}, 3, `bad FastCGI address "nope"`},
		{[]string{"check", "--warning-queue", "x"}, 3, `"x"`},
		{[]string{"status", "--config", cfg}, 2, `unknown key "colour"`},
		{[]string{"status", "--config", "/nonexistent.yaml"}, 2, `no such file`},
		{[]string{"status", "--fpm-config", "/nonexistent.conf"}, 2, `/nonexistent.conf`},
		{[]string{"frobnicate"}, 2, `frobnicate`},
		{[]string{"status", "--fpm-master-user", "no-such-user-here"}, 2, `"no-such-user-here" is neither a user name nor a uid`},
		{[]string{"serve", "--php-fpm-binary", theirs}, 2, `--php-fpm-binary "` + theirs + `": not running php-fpm's binary for the config test: open ` + theirs + `: not owned by a user fpmguard trusts for it: owned by uid 33`},
		{[]string{"serve", "--php-fpm-binary", "/nonexistent/php-fpm"}, 2, `no such file`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "fpmguard: error: ") || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: stderr %q, want one line with %q", tt.args, stderr, tt.want)
		}
		if strings.Contains(stderr+stdout, "goroutine ") {
			t.Errorf("%q: stack trace in output", tt.args)
		}
	}
}

// TestStatusAndCheckAgainstPHPFPM runs status and check against a
// php-fpm of each version, with their exit codes: OK, CRITICAL over a
// limit, CRITICAL once the master is gone.
func TestStatusAndCheckAgainstPHPFPM(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}}})
		g := newGuard(t, fpm)
		p := fpm.Pools["www"]
		spec := "unix://" + g.path(p.Listen) + ",pm=static,pm.max_children=2"
		if p.StatusSocket != "" {
			spec += ",pm.status_listen=" + g.path(p.StatusSocket)
		}
		ocDir := "--opcache-dir=" + g.opcacheDir(t)

		code, out, stderr := g.run(t, "status", "-o", "json", "--pool", spec, ocDir)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var rep supervisor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
		}
		if len(rep.Pools) != 1 || rep.Pools[0].Health != supervisor.HealthOK || len(rep.Pools[0].Processes) != 2 || rep.Pools[0].Master.PID != fpm.MasterPID() {
			t.Errorf("report: %s", out)
		}
		if len(rep.Opcache) != 1 || rep.Opcache[0].MasterPID != fpm.MasterPID() || !rep.Opcache[0].Enabled || rep.Opcache[0].Health != supervisor.HealthOK {
			t.Errorf("opcache in report: %+v", rep.Opcache)
		}
		// The documented schema's field names are there.
		for _, field := range []string{`"pools"`, `"name"`, `"address"`, `"health"`, `"reasons"`, `"heartbeat"`, `"latency_seconds"`, `"processes"`,
			`"pid"`, `"state"`, `"os_state"`, `"request_duration_seconds"`, `"request_method"`, `"request_uri"`, `"script"`, `"requests"`, `"cpu_seconds"`, `"rss_bytes"`, `"hung"`} {
			if !strings.Contains(out, field) {
				t.Errorf("JSON lacks %s", field)
			}
		}

		code, out, _ = g.run(t, "status", "--pool", spec, ocDir)
		if code != 0 || !strings.Contains(out, "pool www  unix://"+g.path(p.Listen)+"  OK") || strings.Contains(out, "\x1b[") ||
			!strings.Contains(out, "opcache of unix://"+g.path(p.Listen)+" (master "+strconv.Itoa(fpm.MasterPID())+", pools www)  OK") {
			t.Errorf("table (exit %d):\n%s", code, out)
		}

		code, out, _ = g.run(t, "check", "--pool", spec, ocDir)
		// A pool given by --pool names no config: its address names its
		// master.
		if code != supervisor.CheckOK || !strings.HasPrefix(out, "FPMGUARD OK - www ok, opcache of unix://"+g.path(p.Listen)+" (master "+strconv.Itoa(fpm.MasterPID())+") ok | 'www_latency'=") {
			t.Errorf("check exit %d: %q", code, out)
		}
		code, out, _ = g.run(t, "check", "--pool", spec, "--no-opcache", "--critical-latency", "1ns")
		if code != supervisor.CheckCritical || !strings.HasPrefix(out, "FPMGUARD CRITICAL - www ok heartbeat") {
			t.Errorf("check with a latency limit: exit %d: %q", code, out)
		}

		// The same through a config file, pools as maps.
		cfg := filepath.Join(fpm.Dir, "fpmguard.yaml")
		yaml := "timeout: 1s\nno-opcache: true\npool:\n  - listen: unix://" + g.path(p.Listen) + "\n    name: fromfile\n"
		if p.StatusSocket != "" {
			yaml += "    pm.status_listen: " + g.path(p.StatusSocket) + "\n"
		}
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, stderr = g.run(t, "check", "--config", g.path(cfg))
		if code != supervisor.CheckOK || !strings.HasPrefix(out, "FPMGUARD OK - fromfile ok") {
			t.Errorf("check --config: exit %d: %q %q", code, out, stderr)
		}

		if err := fpm.Signal(syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		<-fpm.Exited()
		code, out, _ = g.run(t, "check", "--pool", spec, ocDir)
		if code != supervisor.CheckCritical || !strings.HasPrefix(out, "FPMGUARD CRITICAL - www down") {
			t.Errorf("check after master stop: exit %d: %q", code, out)
		}
		// status exits as systemctl status does: 3 for a pool that is
		// down, with the report all the same.
		code, out, _ = g.run(t, "status", "--pool", spec, ocDir)
		if code != statusFailing || !strings.Contains(out, "DOWN") {
			t.Errorf("status after master stop: exit %d, want %d:\n%s", code, statusFailing, out)
		}
	})
}

// TestStatusExitCode: 0 while every pool serves, 3 when a pool or an
// opcache fails, 1 when there is nothing to look at.
func TestStatusExitCode(t *testing.T) {
	rep := fixedReport() // www unhealthy, api down
	if code := statusCode(rep); code != statusFailing {
		t.Errorf("unhealthy and down pools: exit %d", code)
	}
	rep.Pools = rep.Pools[:1]
	rep.Pools[0].Health = supervisor.HealthDegraded
	if code := statusCode(rep); code != statusServing {
		t.Errorf("a degraded pool: exit %d", code)
	}
	rep.Opcache[0].Health = supervisor.HealthUnhealthy
	if code := statusCode(rep); code != statusFailing {
		t.Errorf("an unhealthy opcache: exit %d", code)
	}
	conf := filepath.Join(t.TempDir(), "php-fpm.conf")
	if err := os.WriteFile(conf, []byte("[www\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "status", "--fpm-config", conf); code != 1 || !strings.Contains(stderr, "syntax error") {
		t.Errorf("a config that cannot be read: exit %d %q", code, stderr)
	}
}

// TestPermissionDenied runs the real binary as an unprivileged user against
// a socket only root may use.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		requireIntegration(t, "switching to an unprivileged user needs root")
	}
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Extra: []string{"listen.owner = root", "listen.group = root", "listen.mode = 0600"}}}})
	bin := buildBinary(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	cmd := exec.Command(bin, "status", "--pool", fpm.Pools["www"].Listen)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, _ := cmd.CombinedOutput()
	for _, want := range []string{"UNHEALTHY", "permission denied", "run fpmguard as root or as the pool's listen.owner"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// opcacheDir is a directory for the opcache script that workers can read.
func opcacheDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(fpmtest.Dir(t), "fpmguard")
}

// TestOpcacheCommands reads, resets and invalidates the opcache of a
// php-fpm of each version.
func TestOpcacheCommands(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{
			Version: v,
			Pools:   []fpmtest.Pool{{Name: "a", StatusListen: fpmtest.HasStatusListen(v)}, {Name: "b"}},
			Defines: map[string]string{"opcache.file_update_protection": "0"},
			Files:   map[string]string{"app.php": "<?php echo 1;"},
		})
		g := newGuard(t, fpm)
		args := []string{"--fpm-config", g.path(fpm.Conf), "--opcache-dir", g.opcacheDir(t)}
		code, out, stderr := g.run(t, append([]string{"opcache", "status", "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var doc struct {
			Opcache []map[string]any `json:"opcache"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Opcache) != 1 {
			t.Fatalf("opcache status -o json: %v\n%s", err, out)
		}
		o := doc.Opcache[0]
		for _, k := range []string{"master_pid", "pools", "enabled", "cache_full", "restart_pending", "memory_used_bytes", "memory_free_bytes",
			"memory_wasted_bytes", "cached_scripts", "cached_keys", "max_cached_keys", "hits", "misses", "oom_restarts", "hash_restarts",
			"manual_restarts", "health", "reasons"} {
			if _, ok := o[k]; !ok {
				t.Errorf("opcache JSON lacks %q", k)
			}
		}
		if int(o["master_pid"].(float64)) != fpm.MasterPID() || len(o["pools"].([]any)) != 2 {
			t.Errorf("opcache JSON %v", o)
		}
		before := o["manual_restarts"].(float64)

		code, out, stderr = g.run(t, append([]string{"opcache", "reset"}, args...)...)
		via := fpm.Pools["a"].StatusSocket
		if via == "" {
			via = fpm.Pools["a"].Listen
		}
		want := fmt.Sprintf("master %d (pools a, b) via unix://%s: opcache_reset() done; manual restarts now %d", fpm.MasterPID(), g.path(via), int(before)+1)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("opcache reset: exit %d %q %q, want %q", code, out, stderr, want)
		}

		app := fpm.Script("app.php")
		code, out, _ = g.run(t, append([]string{"opcache", "invalidate", app}, args...)...)
		if code != 0 || !strings.Contains(out, app+"  invalidated") {
			t.Errorf("opcache invalidate: exit %d %q", code, out)
		}
		code, _, stderr = g.run(t, append([]string{"opcache", "invalidate", "relative.php"}, args...)...)
		if code != 2 || stderr != "fpmguard: error: <path> \"relative.php\": must be an absolute path, e.g. /var/www/app/index.php\n" {
			t.Errorf("opcache invalidate of a relative path: exit %d %q", code, stderr)
		}
		code, _, stderr = g.run(t, append([]string{"opcache", "invalidate"}, args...)...)
		if code != 2 || !strings.Contains(stderr, "needs paths or --glob") {
			t.Errorf("opcache invalidate without paths: exit %d %q", code, stderr)
		}
	})
}

func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(fpmtest.Dir(t), "fpmguard")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// requireIntegration skips a test that cannot run here, but fails it when
// make test asked for every integration test to run.
func requireIntegration(t *testing.T, why string) {
	t.Helper()
	fpmtest.RequireIntegration(t, why)
}

func freePort(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + fpmtest.FreePort(t)
}

// httpGet returns the status and body of a GET, or 0 when nothing answers.
func httpGet(url string) (int, string) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitHTTP(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q, want %d", url, code, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startBinary starts fpmguard with args and stops it with SIGTERM at the
// end of the test, unless the test did.
func startBinary(t testing.TB, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startCommand(t, exec.Command(buildBinary(t), args...))
}

func TestServeBinary(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}}})
	addr := freePort(t)
	nginxLog := filepath.Join(t.TempDir(), "error.log") // nginx is yet to create it
	cmd, out := startBinary(t, "serve", "--fpm-config", fpm.Conf, "--web.listen-address", addr, "--interval", "200ms", "--opcache-dir", opcacheDir(t), "--nginx-error-log", nginxLog)
	base := "http://" + addr
	waitHTTP(t, base+"/healthz", 200)
	waitHTTP(t, base+"/readyz", 200)
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(waitHTTP(t, base+"/status", 200)), &rep); err != nil || len(rep.Pools) != 1 || rep.Pools[0].Master.PID != fpm.MasterPID() {
		t.Errorf("/status: %v %+v", err, rep)
	}
	if body := waitHTTP(t, base+"/events", 200); !strings.Contains(body, `"events"`) {
		t.Errorf("/events: %s", body)
	}
	resp, err := http.Post(base+"/status", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status = %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	// The start line names what it watches, and what it cannot follow yet.
	for _, want := range []string{"msg=watching pools=1 names=www ", `msg="nginx error log not there yet: followed once nginx creates it" path=` + nginxLog} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestRunBinary: fpmguard run owns a php-fpm of each version (inside its
// root for 7.4 and 8.4, as a container's entrypoint); SIGTERM stops
// php-fpm gracefully, leaves no process behind and passes on its exit
// status.
func TestRunBinary(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.New(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{StatusListen: fpmtest.HasStatusListen(v)}}})
		g := newGuard(t, fpm)
		addr := freePort(t)
		args := append([]string{"run", "--web.listen-address", addr, "--interval", "200ms", "--opcache-dir", g.opcacheDir(t), "--"}, fpm.InRootArgv()...)
		cmd, out := g.start(t, args...)
		base := "http://" + addr
		waitHTTP(t, base+"/healthz", 200)
		// The first probe comes one interval after php-fpm starts.
		waitHTTP(t, base+"/readyz", 200)
		var rep supervisor.Report
		if err := json.Unmarshal([]byte(waitHTTP(t, base+"/status", 200)), &rep); err != nil || len(rep.Pools) != 1 || rep.Pools[0].Master == nil {
			t.Fatalf("/status: %v %+v", err, rep)
		}
		master := rep.Pools[0].Master.PID
		workers := fpmtest.ChildrenTitled(master, "php-fpm: pool www")
		if len(workers) == 0 {
			t.Fatalf("no workers under master %d", master)
		}
		stopRun(t, cmd, append([]int{master}, workers...))
		if !strings.Contains(fpm.Log(), "exiting, bye-bye") {
			t.Errorf("php-fpm did not stop gracefully:\n%s", fpm.Log())
		}
		if !strings.Contains(out.String(), "stopping php-fpm master") {
			t.Errorf("no stop event in the log:\n%s", out)
		}
	})
}

// TestRunSignals: SIGUSR2 to fpmguard run reaches php-fpm (a graceful
// reload), and SIGHUP reloads fpmguard's own config.
func TestRunSignals(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}}})
	addr := freePort(t)
	args := append([]string{"run", "--web.listen-address", addr, "--interval", "200ms", "--no-opcache", "--"}, fpm.Argv()...)
	cmd, _ := startBinary(t, args...)
	base := "http://" + addr
	waitHTTP(t, base+"/readyz", 200)

	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 5*time.Second, func() (string, bool) {
		log := fpm.Log()
		return log, strings.Contains(log, "Reloading in progress")
	})
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 5*time.Second, func() (string, bool) {
		_, body := httpGet(base + "/events")
		return body, strings.Contains(body, "SIGHUP: configuration reloaded")
	})
	waitHTTP(t, base+"/readyz", 200)
}
