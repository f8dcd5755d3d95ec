package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestScale measures what `fpmguard serve` costs, and what it costs
// php-fpm, at 10, 100 and 1,000 pools, static and ondemand (make bench).
// It runs only with FPMGUARD_SCALE set: it takes minutes. Environment:
// FPMGUARD_SCALE=10,100,1000 (pool counts), SCALE_PM=static,ondemand,
// SCALE_SECONDS=60 (each measuring window), SCALE_RUNS=3 (medians).
func TestScale(t *testing.T) {
	counts := os.Getenv("FPMGUARD_SCALE")
	if counts == "" {
		t.Skip("FPMGUARD_SCALE not set: the scale table takes minutes (make bench)")
	}
	window := time.Duration(envInt("SCALE_SECONDS", 60)) * time.Second
	runs := envInt("SCALE_RUNS", 3)
	pms := strings.Split(envOr("SCALE_PM", "static,ondemand"), ",")
	for _, pm := range pms {
		for _, c := range strings.Split(counts, ",") {
			n, err := strconv.Atoi(c)
			if err != nil {
				t.Fatalf("FPMGUARD_SCALE=%q: want pool counts like 10,100,1000", counts)
			}
			var res []scaleResult
			for range runs {
				res = append(res, measureScale(t, pm, n, window))
			}
			row := medianScale(res)
			line := fmt.Sprintf("SCALE pm=%s pools=%d cpu_per_pool_tick_us=%.0f core_share_pct=%.1f rss_mb=%.1f rss_first_mb=%.1f rss_max_mb=%.1f scrape_p50_ms=%.2f scrape_p99_ms=%.2f fpm_probe_cpu_pct=%.2f fpm_cpu_pct=%.2f fpm_baseline_cpu_pct=%.2f workers=%d baseline_workers=%d hung_caught_s=%.1f plain_hung_unhealthy_s=%.1f",
				pm, n, row.cpuPerTick.Seconds()*1e6, row.coreShare*100, row.rssMB, row.rssFirstMB, row.rssMaxMB, row.scrapeP50.Seconds()*1e3, row.scrapeP99.Seconds()*1e3,
				(row.fpmShare-row.fpmBaseShare)*100, row.fpmShare*100, row.fpmBaseShare*100, row.workers, row.baseWorkers, row.caughtAfterThreshold.Seconds(), row.plainCaught.Seconds())
			t.Log(line)
			fmt.Println(line)
		}
	}
}

type scaleResult struct {
	cpuPerTick             time.Duration
	coreShare, rssMB       float64
	rssFirstMB, rssMaxMB   float64
	scrapeP50, scrapeP99   time.Duration
	fpmShare, fpmBaseShare float64
	workers, baseWorkers   int
	caughtAfterThreshold   time.Duration // an all-hung pool's verdict, after --hung-after
	plainCaught            time.Duration // an all-hung pool without pm.status_listen unhealthy, after the hang began
}

// scaleHungAfter is serve's --hung-after: short, for the all-hung pool
// at the end of each run to be caught soon.
const scaleHungAfter = 3 * time.Second

// poolsPerMaster keeps each master within its open-file limit: a pool
// holds a few descriptors.
const poolsPerMaster = 200

func measureScale(t *testing.T, pm string, n int, window time.Duration) scaleResult {
	t.Helper()
	var masters []*fpmtest.FPM
	for first := 0; first < n; first += poolsPerMaster {
		var pools []fpmtest.Pool
		for i := first; i < min(n, first+poolsPerMaster); i++ {
			p := fpmtest.Pool{Name: fmt.Sprintf("site%d", i), PM: pm, MaxChildren: 2}
			if pm == "ondemand" {
				p.Extra = []string{"pm.process_idle_timeout = 3s"}
			}
			// The last pool has pm.status_listen: its status page answers
			// while all its workers hang, so their age can be judged.
			p.StatusListen = i == n-1
			pools = append(pools, p)
		}
		masters = append(masters, fpmtest.Start(t, fpmtest.Options{Pools: pools, Files: map[string]string{"hang.php": hangPHP}}))
	}
	fpmCPU := func() time.Duration {
		var sum time.Duration
		for _, m := range masters {
			sum += treeCPU(m.MasterPID())
		}
		return sum
	}
	workers := func() int {
		w := 0
		for _, m := range masters {
			w += len(children(m.MasterPID()))
		}
		return w
	}
	// The baseline: php-fpm alone for a window.
	if pm == "ondemand" {
		time.Sleep(5 * time.Second) // let workers forked at start idle out
	}
	base0 := fpmCPU()
	time.Sleep(window)
	res := scaleResult{fpmBaseShare: float64(fpmCPU()-base0) / float64(window), baseWorkers: workers()}

	addr := freePort(t)
	args := []string{"serve", "--interval", "1s", "--hung-after", scaleHungAfter.String(), "--web.listen-address", addr, "--opcache-dir", opcacheDir(t)}
	for _, m := range masters {
		args = append(args, "--fpm-config", m.Conf)
	}
	cmd, _ := startBinary(t, args...)
	base := "http://" + addr
	waitHTTP(t, base+"/status", 200)
	time.Sleep(5 * time.Second) // the first probes, the first opcache reads
	self0, fpm0 := procCPU(cmd.Process.Pid), fpmCPU()
	// RSS through the window, for its trend: the first and the last
	// reading, and the largest.
	res.rssFirstMB = vmRSS(t, cmd.Process.Pid) / (1 << 20)
	for end := time.Now().Add(window); time.Now().Before(end); {
		time.Sleep(min(10*time.Second, time.Until(end)))
		res.rssMaxMB = max(res.rssMaxMB, vmRSS(t, cmd.Process.Pid)/(1<<20))
	}
	self1, fpm1 := procCPU(cmd.Process.Pid), fpmCPU()
	res.workers = workers()
	ticks := float64(n) * window.Seconds() // one probe of each pool a second
	res.cpuPerTick = time.Duration(float64(self1-self0) / ticks)
	res.coreShare = float64(self1-self0) / float64(window)
	res.fpmShare = float64(fpm1-fpm0) / float64(window)
	res.rssMB = vmRSS(t, cmd.Process.Pid) / (1 << 20)
	var took []time.Duration
	client := &http.Client{Timeout: 30 * time.Second}
	// A second apart: every scrape sees new probes, so none is a copy of
	// the last one's render.
	for i := range 11 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		start := time.Now()
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	res.scrapeP50, res.scrapeP99 = took[len(took)/2], took[len(took)-1]

	// Every worker of the last two pools hangs. The last one's status
	// page answers through pm.status_listen: how long after --hung-after
	// does serve judge it all hung? The other's is served by the hung
	// workers: how long until its failed heartbeats make it unhealthy?
	last := masters[len(masters)-1]
	listen, plain := fmt.Sprintf("site%d", n-1), fmt.Sprintf("site%d", n-2)
	hangStart := time.Now()
	releaseListen, releasePlain := hangPool(t, last, listen), hangPool(t, last, plain)
	waitUnhealthy(t, base, plain, "heartbeat failed")
	res.plainCaught = time.Since(hangStart)
	waitUnhealthy(t, base, listen, "all 2 workers are hung")
	res.caughtAfterThreshold = time.Since(hangStart) - scaleHungAfter
	releaseListen()
	releasePlain()
	for _, m := range masters {
		m.Stop(t)
	}
	_ = cmd.Process.Kill()
	return res
}

func medianScale(rs []scaleResult) scaleResult {
	med := func(f func(scaleResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return scaleResult{
		cpuPerTick:           time.Duration(med(func(r scaleResult) float64 { return float64(r.cpuPerTick) })),
		coreShare:            med(func(r scaleResult) float64 { return r.coreShare }),
		rssMB:                med(func(r scaleResult) float64 { return r.rssMB }),
		rssFirstMB:           med(func(r scaleResult) float64 { return r.rssFirstMB }),
		rssMaxMB:             med(func(r scaleResult) float64 { return r.rssMaxMB }),
		scrapeP50:            time.Duration(med(func(r scaleResult) float64 { return float64(r.scrapeP50) })),
		scrapeP99:            time.Duration(med(func(r scaleResult) float64 { return float64(r.scrapeP99) })),
		fpmShare:             med(func(r scaleResult) float64 { return r.fpmShare }),
		fpmBaseShare:         med(func(r scaleResult) float64 { return r.fpmBaseShare }),
		workers:              int(med(func(r scaleResult) float64 { return float64(r.workers) })),
		baseWorkers:          int(med(func(r scaleResult) float64 { return float64(r.baseWorkers) })),
		caughtAfterThreshold: time.Duration(med(func(r scaleResult) float64 { return float64(r.caughtAfterThreshold) })),
		plainCaught:          time.Duration(med(func(r scaleResult) float64 { return float64(r.plainCaught) })),
	}
}

// procCPU is a process's user + system CPU time, from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ is 100
}

// treeCPU is the CPU time of a master and its children now, and of the
// children it has reaped (cutime, cstime): workers that came and went.
func treeCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var sum int64
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		sum += v
	}
	total := time.Duration(sum) * 10 * time.Millisecond
	for _, c := range children(pid) {
		total += procCPU(c)
	}
	return total
}

// children lists a process's children, from the kernel's own list.
func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, s := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(s); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
