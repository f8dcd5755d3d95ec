package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
	"go.yaml.in/yaml/v3"
)

// series is one line of a text exposition: a series and its value.
var series = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// poolLabel finds a series' pool.
var poolLabel = regexp.MustCompile(`\bpool="([^"]*)"`)

// firingAlerts evaluates the shipped alert rules with promtool over an
// hour in which every series of exposition that keep accepts holds its
// value, and returns the alerts that fire, each as "alert{pool}".
func firingAlerts(t *testing.T, exposition string, keep func(pool string) bool) []string {
	t.Helper()
	rules := alertRules(t)
	type input struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	}
	var inputs []input
	for _, line := range strings.Split(exposition, "\n") {
		m := series.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		pool := ""
		if p := poolLabel.FindStringSubmatch(m[2]); p != nil {
			pool = p[1]
		}
		if !keep(pool) {
			continue
		}
		inputs = append(inputs, input{Series: m[1] + m[2], Values: strings.TrimSpace(strings.Repeat(m[3]+" ", 70))})
	}
	// Every rule is expected silent: promtool names each alert that fires
	// instead.
	var data struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	type expect struct {
		EvalTime  string `yaml:"eval_time"`
		Alertname string `yaml:"alertname"`
		ExpAlerts []any  `yaml:"exp_alerts"`
	}
	var expects []expect
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			expects = append(expects, expect{EvalTime: "60m", Alertname: r.Alert, ExpAlerts: []any{}})
		}
	}
	res, err := testAlertRules(t, rules, inputs, expects)
	if err == nil {
		return nil
	}
	// promtool lists what fired as alertname: X, ... got:[ ... labels:{... pool="p" ...} ].
	var fired []string
	name := regexp.MustCompile(`alertname: (\w+)`)
	for _, block := range strings.Split(string(res), "alertname: ")[1:] {
		alert := name.FindStringSubmatch("alertname: " + block)[1]
		for _, p := range poolLabel.FindAllStringSubmatch(block, -1) {
			fired = append(fired, alert+"{"+p[1]+"}")
		}
		if !poolLabel.MatchString(block) {
			fired = append(fired, alert)
		}
	}
	if len(fired) == 0 {
		t.Fatalf("promtool test rules: %v\n%s", err, res)
	}
	return fired
}

// alertRules is the path of the shipped alert rules, once promtool, which
// tests them, is known to be there.
func alertRules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		requireIntegration(t, "promtool not found: run make deps")
	}
	rules, err := filepath.Abs(filepath.Join("..", "..", "examples", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// testAlertRules runs promtool test rules on rules, evaluated every minute
// over inputs, each a series and its values a minute apart, with the
// alerts expected at given times: promtool's output, and an error when
// they were not.
func testAlertRules(t *testing.T, rules string, inputs, expects any) ([]byte, error) {
	t.Helper()
	doc := map[string]any{
		"rule_files":          []string{rules},
		"evaluation_interval": "1m",
		"tests":               []any{map[string]any{"interval": "1m", "input_series": inputs, "alert_rule_test": expects}},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "alerts_test.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command("promtool", "test", "rules", file).CombinedOutput()
}

// nobody runs cmd as the unprivileged user nobody.
func nobody(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if os.Geteuid() != 0 {
		requireIntegration(t, "switching to an unprivileged user needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// TestCannotProbeIsNeverOK runs fpmguard as a user who may not connect to
// a pool's socket: a pool with ping.path and Debian's stock kind of pool
// (no ping.path, no pm.status_path) are both unhealthy in status, check and
// /metrics, never ok; a stock pool fpmguard may connect to is unknown, not
// monitored. No series claims a heartbeat or a status read that was never
// made, and the shipped alerts do not page on a pool for what fpmguard
// could not see.
func TestCannotProbeIsNeverOK(t *testing.T) {
	closed := []string{"listen.owner = root", "listen.group = root", "listen.mode = 0600"}
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{
		{Name: "pinged", MaxChildren: 1, Extra: closed},
		{Name: "stock", MaxChildren: 1, StatusPath: "-", PingPath: "-", Extra: closed},
		{Name: "open", MaxChildren: 1, StatusPath: "-", PingPath: "-"},
	}})
	bin := buildBinary(t)
	run := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		nobody(t, cmd)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}

	_, out := run("status", "-o", "json", "--fpm-config", fpm.Conf, "--no-opcache")
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	want := map[string]supervisor.Health{"pinged": supervisor.HealthUnhealthy, "stock": supervisor.HealthUnhealthy, "open": supervisor.HealthUnknown}
	for _, p := range rep.Pools {
		if p.Health != want[p.Name] {
			t.Errorf("pool %s: %s %q, want %s", p.Name, p.Health, p.Reasons, want[p.Name])
		}
	}
	code, out := run("status", "--fpm-config", fpm.Conf, "--no-opcache")
	for _, s := range []string{"pool stock  unix://" + fpm.Pools["stock"].Listen + "  UNHEALTHY", "connect: FAILED (permission denied, nginx would answer 502)",
		"run fpmguard as root or as the pool's listen.owner", "pool open  unix://" + fpm.Pools["open"].Listen + "  UNKNOWN", "  - not monitored: "} {
		if !strings.Contains(out, s) {
			t.Errorf("status (exit %d) lacks %q:\n%s", code, s, out)
		}
	}
	code, out = run("check", "--fpm-config", fpm.Conf, "--no-opcache")
	if code != supervisor.CheckCritical || !strings.Contains(out, "stock unhealthy (cannot connect") || !strings.Contains(out, "open unknown (not monitored") {
		t.Errorf("check: exit %d %q", code, out)
	}

	addr := freePort(t)
	cmd := exec.Command(bin, "serve", "--fpm-config", fpm.Conf, "--no-opcache", "--interval", "200ms", "--web.listen-address", addr)
	nobody(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	m := `master="` + fpm.Conf + `",`
	metrics := fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		code, body := httpGet("http://" + addr + "/metrics")
		return body, code == 200 && strings.Contains(body, `health="ok",`+m+`pool="pinged"} 0`) &&
			!strings.Contains(body, `health="unknown",`+m+`pool="pinged"} 1`) && !strings.Contains(body, `health="unknown",`+m+`pool="stock"} 1`)
	})
	for _, s := range []string{`phpfpm_pool_health{health="unhealthy",` + m + `pool="stock"} 1`, `phpfpm_pool_health{health="unknown",` + m + `pool="open"} 1`,
		`phpfpm_heartbeat_up{` + m + `pool="pinged"} 0`, `phpfpm_up{` + m + `pool="pinged",`} {
		if !strings.Contains(metrics, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	for _, pool := range []string{"stock", "open"} {
		for _, name := range []string{"phpfpm_heartbeat_up", "phpfpm_up", "phpfpm_hung_processes", "phpfpm_total_processes"} {
			if hasPoolSeries(metrics, name, pool) {
				t.Errorf("/metrics has %s for pool %s, which has no such probe", name, pool)
			}
		}
	}

	// The alerts page on the heartbeat that failed, and on nothing
	// fpmguard did not see.
	fired := firingAlerts(t, metrics, func(string) bool { return true })
	if strings.Join(fired, " ") != "PHPFPMHeartbeatFailing{pinged}" {
		t.Errorf("alerts firing: %v, want the failing heartbeat of pool pinged only", fired)
	}
}

// hasPoolSeries reports a series of name for pool in an exposition.
func hasPoolSeries(exposition, name, pool string) bool {
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `pool="`+pool+`"`) {
			return true
		}
	}
	return false
}

// TestNoPoolDownAtStart: serve watching 200 healthy pools at --interval 5s,
// scraped from the moment it answers, until every pool was probed: no
// scrape shows a pool down or unhealthy, a heartbeat or status page down,
// or an alert; /status agrees, and /readyz says not ready until every
// pool was probed, while /healthz says alive.
func TestNoPoolDownAtStart(t *testing.T) {
	var pools []fpmtest.Pool
	for i := range 200 {
		pools = append(pools, fpmtest.Pool{Name: fmt.Sprintf("p%03d", i), MaxChildren: 1})
	}
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: pools})
	addr := freePort(t)
	startBinary(t, "serve", "--fpm-config", fpm.Conf, "--interval", "5s", "--timeout", "10s", "--web.listen-address", addr, "--opcache-dir", opcacheDir(t))
	base := "http://" + addr
	unprobed := regexp.MustCompile(`phpfpm_pool_health\{health="unknown",master="[^"]*",pool="p\d+"\} 1`)
	bad := regexp.MustCompile(`phpfpm_pool_health\{health="(down|unhealthy)",master="[^"]*",pool="[^"]*"\} 1|phpfpm_heartbeat_up\{[^}]*\} 0|phpfpm_up\{[^}]*\} 0`)
	scrapes, sawUnknown, first := 0, 0, ""
	fpmtest.Poll(t, 120*time.Second, func() (bool, bool) {
		// Readiness first: once ready, every scrape after it has every
		// pool probed.
		ready, _ := httpGet(base + "/readyz")
		code, body := httpGet(base + "/metrics")
		if code != 200 {
			return false, false // not answering yet
		}
		scrapes++
		if first == "" {
			first = body
		}
		if m := bad.FindString(body); m != "" {
			t.Fatalf("scrape %d: %s", scrapes, m)
		}
		n := unprobed.FindAllStringIndex(body, -1)
		sawUnknown = max(sawUnknown, len(n))
		_, status := httpGet(base + "/status")
		if strings.Contains(status, `"health": "down"`) || strings.Contains(status, `"health": "unhealthy"`) {
			t.Fatalf("/status calls a healthy pool down or unhealthy:\n%s", status)
		}
		if code, body := httpGet(base + "/healthz"); code != 200 {
			t.Fatalf("/healthz: %d %s", code, body)
		}
		if len(n) > 0 && ready == 200 {
			t.Fatalf("/readyz was ready before a scrape that has %d pools not probed yet", len(n))
		}
		return true, len(n) == 0 && ready == 200
	})
	t.Logf("%d scrapes until every pool was probed; at most %d of 200 pools not probed yet in one", scrapes, sawUnknown)
	if fired := firingAlerts(t, first, func(string) bool { return true }); len(fired) > 0 {
		t.Errorf("alerts fire on the first scrape: %v", fired)
	}
}

// TestWrongPingResponseIsMisconfigured: a ping answered with another text
// than the ping.response fpmguard was given is a misconfiguration, as a
// 404 on the ping is: the pool serves every real request.
func TestWrongPingResponseIsMisconfigured(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
	p := fpm.Pools["www"]
	code, out, stderr := runCLI(t, "status", "--no-opcache", "--pool", "unix://"+p.Listen+",pm.status_listen="+p.StatusSocket+",ping.response=PONG")
	for _, want := range []string{"  DEGRADED\n", "  - heartbeat misconfigured: ", `ping answered "pong", want "PONG"`, "heartbeat: MISCONFIGURED (bad response: a worker answered)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status (exit %d, %q) lacks %q:\n%s", code, stderr, want, out)
		}
	}
	code, out, _ = runCLI(t, "check", "--no-opcache", "--pool", "unix://"+p.Listen+",pm.status_listen="+p.StatusSocket+",ping.response=PONG")
	if code != supervisor.CheckWarning {
		t.Errorf("check: exit %d %q, want WARNING", code, out)
	}
}
