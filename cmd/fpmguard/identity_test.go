package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// masterOf is one test master and the name fpmguard gives it.
type masterOf struct {
	f           *fpmtest.FPM
	name        string // supervisor.Target.MasterName, as discovery finds it
	maxChildren int
}

// startWWWs starts a master of each version of the matrix at once, each
// with a pool named www, as Debian names the default pool in every PHP
// version: pm.max_children 2, 3 and 4, so that no output can take one's
// figures for another's.
func startWWWs(t *testing.T) []masterOf {
	t.Helper()
	t.Log(fpmtest.MatrixLine())
	var ms []masterOf
	for i, v := range fpmtest.Versions {
		n := i + 2
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: n, StatusListen: fpmtest.HasStatusListen(v)}},
			Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		ms = append(ms, masterOf{f: f, name: f.MasterName(), maxChildren: n})
	}
	return ms
}

// discoverOurs narrows discovery to the masters of ms: other tests'
// masters, probed, would get pings queued behind their busy workers.
func discoverOurs(ms []masterOf, args ...string) []string {
	for _, m := range ms {
		args = append(args, "--discover-config", m.name)
	}
	return args
}

// ourPools maps the pools of rep whose master is one of ms by master; a
// pool of another master fails the test (--discover-config left it out).
func ourPools(t *testing.T, ms []masterOf, rep *supervisor.Report) map[string]supervisor.PoolReport {
	t.Helper()
	out := map[string]supervisor.PoolReport{}
	for _, p := range rep.Pools {
		if slices.ContainsFunc(ms, func(m masterOf) bool { return m.name == p.MasterName }) {
			if _, twice := out[p.MasterName]; twice {
				t.Errorf("master %s has two pools %s", p.MasterName, p.Name)
			}
			out[p.MasterName] = p
			continue
		}
		t.Errorf("pool %s@%s was discovered: not a master of this test", p.Name, p.MasterName)
	}
	return out
}

// perfdataOf names the pools of ms that check's line has perfdata of: the
// part of each label before its figure's name. Which figures a pool has
// depends on what its probe saw (no latency for a heartbeat fpmguard could
// not judge); its name does not.
func perfdataOf(ms []masterOf, line string) []string {
	_, perf, _ := strings.Cut(line, " | ")
	var out []string
	for _, p := range strings.Fields(perf) {
		for _, m := range ms {
			if name := "'www@" + m.name + "_"; strings.HasPrefix(p, name) && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestPoolsApartAcrossMasters: a www pool under each of three masters,
// PHP 7.4 and 8.4 in roots of their own and 8.2 on the host, found by
// discovery (narrowed to them by --discover-config), are three pools in
// status (table and JSON), check, top --once, serve's /metrics (scraped),
// /status and /events, and its log, each with its own figures. Their names survive a restart of
// every master.
func TestPoolsApartAcrossMasters(t *testing.T) {
	ms := startWWWs(t)

	// status -o json: three www, each with its own workers, and no other
	// master's. A verdict may be unknown, not ok, where fpmguard itself
	// was starved of CPU (a loaded runner): what is asserted is which pool
	// is which.
	_, out, stderr := runCLI(t, discoverOurs(ms, "status", "-o", "json", "--no-opcache", "--timeout", "10s")...)
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s\n%s", err, out, stderr)
	}
	before := ourPools(t, ms, &rep)
	for _, m := range ms {
		p, ok := before[m.name]
		if !ok || p.Name != "www" || !fine(p.Health) || len(p.Processes) != m.maxChildren || p.Master == nil || p.Master.PID != m.f.MasterPID() {
			t.Errorf("status -o json, master %s: %+v", m.name, p)
		}
	}

	// The table names each www with its master.
	_, out, _ = runCLI(t, discoverOurs(ms, "status", "--no-opcache", "--color", "never", "--timeout", "10s")...)
	for _, m := range ms {
		if !strings.Contains(out, "pool www@"+m.name+"  unix://") {
			t.Errorf("status does not name www@%s:\n%s", m.name, out)
		}
	}

	// check: a text and perfdata of each, with its own figures.
	_, out, _ = runCLI(t, discoverOurs(ms, "check", "--no-opcache", "--timeout", "10s")...)
	for _, m := range ms {
		for _, want := range []string{"www@" + m.name + " ", fmt.Sprintf("'www@%s_total'=%d;;;0;%d", m.name, m.maxChildren, m.maxChildren)} {
			if !strings.Contains(out, want) {
				t.Errorf("check does not say %q:\n%s", want, out)
			}
		}
	}
	perf := perfdataOf(ms, out)
	if len(perf) != 3 {
		t.Errorf("perfdata of our pools: %v", perf)
	}

	// top --once: each pool's line.
	_, out, _ = runCLI(t, discoverOurs(ms, "top", "--once", "--width", "600", "--interval", "200ms", "--no-opcache", "--timeout", "10s")...)
	for _, m := range ms {
		if !strings.Contains(out, "pool www@"+m.name+" ") {
			t.Errorf("top --once does not show www@%s:\n%s", m.name, out)
		}
	}

	t.Run("serve", func(t *testing.T) { serveAcrossMasters(t, ms) })

	// Every master restarted: new pids, the same names, the same perfdata
	// labels, so that a graph of each goes on.
	for _, m := range ms {
		m.f.Restart(t)
	}
	_, out, _ = runCLI(t, discoverOurs(ms, "status", "-o", "json", "--no-opcache", "--timeout", "10s")...)
	rep = supervisor.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -o json after the restarts: %v\n%s", err, out)
	}
	after := ourPools(t, ms, &rep)
	for _, m := range ms {
		b, a := before[m.name], after[m.name]
		if a.Master == nil || b.Master == nil || a.Master.PID == b.Master.PID || a.Master.PID != m.f.MasterPID() || !fine(a.Health) {
			t.Errorf("master %s after its restart: %+v", m.name, a.Master)
		}
	}
	_, out, _ = runCLI(t, discoverOurs(ms, "check", "--no-opcache", "--timeout", "10s")...)
	if again := perfdataOf(ms, out); !slices.Equal(again, perf) {
		t.Errorf("perfdata labels changed with the restarts:\nbefore %v\nafter  %v", perf, again)
	}
}

// seriesLabels reads the labels of one series of a text exposition.
var seriesLabels = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// serveAcrossMasters runs serve with discovery, no flag naming a pool, and
// a worker of each www hung in a request.
func serveAcrossMasters(t *testing.T, ms []masterOf) {
	addr := freePort(t)
	cmd, log := startBinary(t, discoverOurs(ms, "serve", "--web.listen-address", addr, "--interval", "300ms", "--no-opcache", "--hung-after", "2s", "--timeout", "5s")...)
	base := "http://" + addr
	for _, m := range ms {
		m.f.Background(t, 1, "sleep.php", "ms=600000")
	}
	// ours maps each series of ours in the exposition to its labels.
	ours := func(body string) map[string][]map[string]string {
		out := map[string][]map[string]string{}
		for _, line := range strings.Split(body, "\n") {
			m := series.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(line, "#") {
				continue
			}
			labels := map[string]string{"value": m[3]}
			for _, kv := range seriesLabels.FindAllStringSubmatch(m[2], -1) {
				labels[kv[1]] = kv[2]
			}
			if slices.ContainsFunc(ms, func(o masterOf) bool { return o.name == labels["master"] }) {
				out[m[1]] = append(out[m[1]], labels)
			}
		}
		return out
	}
	var body string
	fpmtest.Poll(t, 60*time.Second, func() (map[string][]map[string]string, bool) {
		_, body = httpGet(base + "/metrics")
		got := ours(body)
		return got, len(got["phpfpm_hung_processes"]) == 3*2 && sum(got["phpfpm_hung_processes"]) == 3
	})
	got := ours(body)
	// Three of each pool series, none dropped for another's: max_children
	// 2, 3 and 4, each with its master.
	for _, name := range []string{"phpfpm_max_children", "phpfpm_socket_listen_queue", "phpfpm_socket_listen_queue_max", "phpfpm_heartbeat_up", "phpfpm_up", "phpfpm_total_processes", "fpmguard_probe_requests_total"} {
		if len(got[name]) != 3 {
			t.Errorf("%s: %d series of our masters, want 3: %v", name, len(got[name]), got[name])
		}
	}
	if n := len(got["phpfpm_pool_health"]); n != 3*len(supervisor.Healths) {
		t.Errorf("phpfpm_pool_health: %d series of our masters, want %d", n, 3*len(supervisor.Healths))
	}
	for _, m := range ms {
		found := false
		for _, l := range got["phpfpm_max_children"] {
			if l["master"] == m.name {
				found = l["pool"] == "www" && l["value"] == fmt.Sprint(m.maxChildren)
			}
		}
		if !found {
			t.Errorf("phpfpm_max_children of www@%s: %v", m.name, got["phpfpm_max_children"])
		}
	}
	// A socket in a root is named as php-fpm sees it: no pid in a label.
	for _, l := range got["phpfpm_up"] {
		if strings.Contains(l["scrape_uri"], "/proc/") {
			t.Errorf("scrape_uri %q names a pid", l["scrape_uri"])
		}
	}
	// The shipped alert rules over our series: one hung-workers alert per
	// master, not one for www.
	var kept []string
	for _, line := range strings.Split(body, "\n") {
		for _, m := range ms {
			if strings.Contains(line, `master="`+m.name+`"`) {
				kept = append(kept, line)
			}
		}
	}
	hung := 0
	for _, a := range firingAlerts(t, strings.Join(kept, "\n"), func(string) bool { return true }) {
		if a == "PHPFPMHungWorkers{www}" {
			hung++
		}
	}
	if hung != 3 {
		t.Errorf("PHPFPMHungWorkers fired %d times over the three www, want 3", hung)
	}

	// /status: three www.
	_, st := httpGet(base + "/status")
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(st), &rep); err != nil {
		t.Fatalf("/status: %v\n%s", err, st)
	}
	if pools := ourPools(t, ms, &rep); len(pools) != 3 {
		t.Errorf("/status: %d pools of our masters: %+v", len(pools), pools)
	}

	// /events: each www's hung worker, with its master; the health
	// messages name each www with its master.
	events := fpmtest.Poll(t, 30*time.Second, func() ([]event.Event, bool) {
		_, body := httpGet(base + "/events?n=1000")
		var ev struct {
			Events []event.Event `json:"events"`
		}
		_ = json.Unmarshal([]byte(body), &ev)
		n := 0
		for _, m := range ms {
			if slices.ContainsFunc(ev.Events, func(e event.Event) bool {
				return e.Kind == event.KindHung && e.Pool == "www" && e.MasterName == m.name
			}) {
				n++
			}
		}
		return ev.Events, n == 3
	})
	for _, m := range ms {
		if !slices.ContainsFunc(events, func(e event.Event) bool {
			return e.Kind == event.KindHealth && e.MasterName == m.name && strings.HasPrefix(e.Message, "pool www@"+m.name+" is degraded")
		}) {
			t.Errorf("no health event of www@%s: %+v", m.name, events)
		}
	}

	// The log says each event's master.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	for _, m := range ms {
		if !strings.Contains(log.String(), "kind=hung pool=www master_name="+m.name+" ") {
			t.Errorf("the log names no hung worker of www@%s:\n%s", m.name, log)
		}
	}
}

// fine is a healthy pool's verdict: ok, or unknown where fpmguard itself
// was starved of CPU and judged nothing.
func fine(h supervisor.Health) bool { return h == supervisor.HealthOK || h == supervisor.HealthUnknown }

// sum adds the values of series.
func sum(series []map[string]string) float64 {
	var n float64
	for _, s := range series {
		var v float64
		fmt.Sscan(s["value"], &v)
		n += v
	}
	return n
}
