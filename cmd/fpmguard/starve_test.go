package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// starvedQuota is the share of one core fpmguard gets in the starvation
// test: 2 ms of CPU every 100 ms.
const starvedQuota = 2

// TestStarvedServeStaysCalm holds `fpmguard serve` to 2% of one core while
// it watches 20 healthy pools every second. fpmguard must not blame
// php-fpm for its own starvation: no unhealthy or down verdict, no failed
// /healthz, no action. It must say it is starved and export its lag. Then a
// pool whose workers all hang is still judged unhealthy and shown in
// /readyz, from php-fpm's own status page.
func TestStarvedServeStaysCalm(t *testing.T) {
	const pools, watchFor = 20, 60 * time.Second
	// The group is made first, so that it is removed after fpmguard stops.
	group, err := fpmtest.CPUQuota(t, starvedQuota)
	if err != nil {
		requireIntegration(t, "the starvation test needs the cgroup cpu controller and root: "+err.Error())
	}
	var specs []fpmtest.Pool
	for i := range pools {
		specs = append(specs, fpmtest.Pool{Name: fmt.Sprintf("p%d", i), StatusListen: true})
	}
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: specs, Files: map[string]string{"hang.php": hangPHP}})
	addr := freePort(t)
	cmd, _ := startBinary(t, "serve", "--fpm-config", fpm.Conf, "--interval", "1s", "--hung-after", "3s",
		"--reload-unhealthy", "--dry-run", "--web.listen-address", addr, "--opcache-dir", opcacheDir(t))
	if err := group.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, time.Duration) {
		start := time.Now()
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, err.Error(), time.Since(start)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(start)
	}
	// Wait for the first verdict of every pool.
	fpmtest.Poll(t, 60*time.Second, func() (bool, bool) {
		code, body, _ := get("/status")
		return true, code == 200 && !strings.Contains(body, "not probed yet")
	})

	// 60 s of healthy pools under the quota.
	var healthFails, readyFails, polls int
	var bad []string
	var slowest time.Duration
	for end := time.Now().Add(watchFor); time.Now().Before(end); time.Sleep(2 * time.Second) {
		polls++
		for _, path := range []string{"/healthz", "/readyz"} {
			code, body, took := get(path)
			slowest = max(slowest, took)
			if code != 200 {
				bad = append(bad, fmt.Sprintf("%s %d %s", path, code, oneLine(body)))
				if path == "/healthz" {
					healthFails++
				} else {
					readyFails++
				}
			}
		}
		if code, body, _ := get("/status"); code == 200 {
			var rep supervisor.Report
			if err := json.Unmarshal([]byte(body), &rep); err != nil {
				t.Fatalf("/status: %v", err)
			}
			for _, p := range rep.Pools {
				if p.Health == supervisor.HealthUnhealthy || p.Health == supervisor.HealthDown {
					bad = append(bad, fmt.Sprintf("pool %s %s: %s", p.Name, p.Health, strings.Join(p.Reasons, "; ")))
				}
			}
		}
	}
	_, events, _ := get("/events?n=1000")
	var got struct{ Events []event.Event }
	if err := json.Unmarshal([]byte(events), &got); err != nil {
		t.Fatalf("/events: %v %s", err, events)
	}
	kinds := map[event.Kind]int{}
	for _, e := range got.Events {
		kinds[e.Kind]++
		switch e.Kind {
		case event.KindAction, event.KindHealth, event.KindHeartbeat, event.KindMaster:
			bad = append(bad, "event "+string(e.Kind)+": "+e.Message)
		}
	}
	_, metrics, _ := get("/metrics")
	t.Logf("under %d%% of a core: %d polls, /healthz failed %d, /readyz failed %d, slowest answer %v; cgroup throttled %d times; events %v; %s; %s",
		starvedQuota, polls, healthFails, readyFails, slowest.Round(time.Millisecond), group.Throttled(), kinds,
		metricLine(metrics, "fpmguard_lag_seconds_total"), metricLine(metrics, "fpmguard_probe_interval_seconds"))
	for _, b := range bad {
		t.Error(b)
	}
	for _, name := range []string{"fpmguard_lag_seconds_total", "fpmguard_cpu_throttled_periods_total"} {
		if v := metricValue(metrics, name); v <= 0 {
			t.Errorf("%s = %v, want above 0", name, v)
		}
	}

	// Every worker of one pool hangs: php-fpm's own status page shows it,
	// whatever fpmguard's lag.
	hangStart := time.Now()
	release := hangPool(t, fpm, "p7")
	body := fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		code, body, _ := get("/readyz")
		return body, code == 503 && strings.Contains(body, "pool p7: ")
	})
	took := time.Since(hangStart)
	t.Logf("all workers of p7 hung: /readyz said so %v after the hang began: %s", took.Round(time.Millisecond), oneLine(body))
	verdict := waitUnhealthy(t, base, "p7", "all 2 workers are hung")
	t.Logf("p7 judged unhealthy %v after the hang began (--hung-after 3s): %s", time.Since(hangStart).Round(time.Millisecond), verdict)
	if others := regexp.MustCompile(`pool p\d+`).FindAllString(body, -1); slices.ContainsFunc(others, func(s string) bool { return s != "pool p7" }) {
		t.Errorf("/readyz blames other pools: %s", body)
	}

	// Starved for good: 5 ms of CPU a second, less than 20 pools need.
	// fpmguard says so, and probes less often. The first phase may
	// already have logged a starvation: one that ended does not count,
	// one that goes on does once the pacer has had time to see calm (two
	// calm windows of 5 s at each step down from 4 s) and has not.
	release()
	pacerLines := func() (lines []string) {
		_, body, _ := get("/events?n=1000")
		for _, l := range strings.Split(body, "\n") {
			if strings.Contains(l, "fpmguard is starved of CPU") || strings.Contains(l, "fpmguard has CPU again") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	starts := func(lines []string) int {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "fpmguard is starved of CPU") {
				n++
			}
		}
		return n
	}
	before := starts(pacerLines())
	if err := group.SetQuota(5*time.Millisecond, time.Second); err != nil {
		t.Fatal(err)
	}
	dropped := time.Now()
	why := fpmtest.Poll(t, 120*time.Second, func() (string, bool) {
		lines := pacerLines()
		if len(lines) == 0 {
			return "", false
		}
		last := lines[len(lines)-1]
		lasting := strings.Contains(last, "fpmguard is starved of CPU") && time.Since(dropped) > 25*time.Second
		if starts(lines) <= before && !lasting {
			return "", false
		}
		_, metrics, _ := get("/metrics")
		return last + "; " + metricLine(metrics, "fpmguard_probe_interval_seconds"),
			metricValue(metrics, "fpmguard_probe_interval_seconds") > 1
	})
	t.Logf("at 0.5%% of a core: %s", strings.TrimSpace(why))
}

// metricLine returns the line of a metric without labels, for the log.
func metricLine(metrics, name string) string {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return name + " missing"
}

func metricValue(metrics, name string) float64 {
	f := strings.Fields(metricLine(metrics, name))
	if len(f) != 2 {
		return -1
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// hangPool holds every worker of a pool, and one request more in its
// queue, in hang.php for a minute, until the returned release or the end
// of the test.
func hangPool(t *testing.T, fpm *fpmtest.FPM, pool string) (release func()) {
	t.Helper()
	p := fpm.Pools[pool]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range p.MaxChildren + 1 {
		wg.Go(func() {
			_, _ = fastcgi.Client{Timeout: 90 * time.Second}.Do(ctx, fastcgi.Address{Network: "unix", Addr: p.Listen},
				fastcgi.Request{Path: "/hang.php", Query: "s=60", Script: filepath.Join(fpm.DocRoot, "hang.php")})
		})
	}
	release = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(release)
	return release
}

// waitUnhealthy waits until serve's /status at base judges the pool
// unhealthy for a reason that holds want, and returns its reasons.
func waitUnhealthy(t *testing.T, base, pool, want string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	return fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		resp, err := client.Get(base + "/status")
		if err != nil {
			return err.Error(), false
		}
		defer resp.Body.Close()
		var rep supervisor.Report
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			return err.Error(), false
		}
		for _, p := range rep.Pools {
			if p.Name == pool {
				why := strings.Join(p.Reasons, "; ")
				return why, p.Health == supervisor.HealthUnhealthy && strings.Contains(why, want)
			}
		}
		return "no pool " + pool, false
	})
}
