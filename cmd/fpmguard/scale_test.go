package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestScale measures what `fpmguard serve` costs, and what it costs
// php-fpm, at 10, 100 and 1,000 pools, static and ondemand, with and
// without pm.status_listen (make bench). It runs only with FPMGUARD_SCALE
// set: it takes minutes. Environment:
//   - FPMGUARD_SCALE=10,100,1000: pool counts;
//   - SCALE_PM=static,ondemand;
//   - SCALE_CONFIG=plain,listen: every pool without pm.status_listen, or
//     every pool with it (but for the one pool hung without it);
//   - SCALE_SECONDS=60: each measuring window;
//   - SCALE_RUNS=3: runs per row, for medians;
//   - SCALE_SCRAPES=200: scrapes of /metrics per run, for their p50 and p99;
//   - FPMGUARD_SCALE_BASELINE=PATH: another fpmguard binary (the old code)
//     measured the same way on the same php-fpm in every run, in turns
//     with the one built from this tree.
//
// Each row is printed as a SCALE line per binary, with the commit each
// was built from.
func TestScale(t *testing.T) {
	counts := os.Getenv("FPMGUARD_SCALE")
	if counts == "" {
		t.Skip("FPMGUARD_SCALE not set: the scale table takes minutes (make bench)")
	}
	window := time.Duration(envInt("SCALE_SECONDS", 60)) * time.Second
	runs := envInt("SCALE_RUNS", 3)
	scrapes := envInt("SCALE_SCRAPES", 200)
	bins := []scaleBinary{{name: "new", path: buildBinary(t)}}
	if base := os.Getenv("FPMGUARD_SCALE_BASELINE"); base != "" {
		bins = append(bins, scaleBinary{name: "baseline", path: base})
	}
	for i := range bins {
		bins[i].commit = binaryCommit(bins[i].path)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("SCALE-HOST cpus=%d loadavg_before=%q\n", runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	for _, pm := range strings.Split(envOr("SCALE_PM", "static,ondemand"), ",") {
		for _, config := range strings.Split(envOr("SCALE_CONFIG", "plain,listen"), ",") {
			if config != "plain" && config != "listen" {
				t.Fatalf("SCALE_CONFIG=%q: want plain, listen or both", config)
			}
			for _, c := range strings.Split(counts, ",") {
				n, err := strconv.Atoi(c)
				if err != nil || n < 2 {
					t.Fatalf("FPMGUARD_SCALE=%q: want pool counts of 2 or more, like 10,100,1000", counts)
				}
				res := make([][]scaleResult, len(bins))
				for run := range runs {
					for i, r := range measureScale(t, pm, config, n, window, scrapes, bins, run) {
						res[i] = append(res[i], r)
					}
				}
				for i, b := range bins {
					line := medianScale(res[i]).line(b, pm, config, n)
					t.Log(line)
					fmt.Println(line)
				}
			}
		}
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("SCALE-HOST loadavg_after=%q\n", strings.Join(strings.Fields(string(load))[:3], " "))
}

// scaleBinary is an fpmguard binary the scale table measures.
type scaleBinary struct {
	name   string // "new": built from this tree; "baseline": FPMGUARD_SCALE_BASELINE
	path   string
	commit string // the commit it was built from, "-dirty" when changed
}

// binaryCommit is the version a binary says it is (make builds name the
// commit), or for one built by the tests from this tree ("dev"), this
// tree's commit, "-dirty" when it has changes.
func binaryCommit(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if f := strings.Fields(string(out)); err == nil && len(f) > 1 && f[1] != "dev" {
		return f[1]
	}
	desc, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(desc))
}

type scaleResult struct {
	cpuPerTick             time.Duration
	coreShare, rssMB       float64
	rssFirstMB, rssMaxMB   float64
	scrapes                int
	scrapeP50, scrapeP99   time.Duration
	fpmShare, fpmBaseShare float64
	workers, baseWorkers   int
	// Each on its own clock, from the moment the hang began to the event
	// that judged its pool unhealthy.
	listenHungJudged time.Duration // the pool with pm.status_listen, less --hung-after
	plainHungJudged  time.Duration // the pool without it
}

func (r scaleResult) line(b scaleBinary, pm, config string, n int) string {
	return fmt.Sprintf("SCALE binary=%s commit=%s pm=%s config=%s pools=%d cpu_per_pool_tick_us=%.0f core_share_pct=%.1f rss_mb=%.1f rss_first_mb=%.1f rss_max_mb=%.1f scrapes=%d scrape_p50_ms=%.2f scrape_p99_ms=%.2f fpm_probe_cpu_pct=%.2f fpm_cpu_pct=%.2f fpm_baseline_cpu_pct=%.2f workers=%d baseline_workers=%d listen_hung_judged_after_threshold_s=%.2f plain_hung_unhealthy_s=%.2f",
		b.name, b.commit, pm, config, n, r.cpuPerTick.Seconds()*1e6, r.coreShare*100, r.rssMB, r.rssFirstMB, r.rssMaxMB, r.scrapes, r.scrapeP50.Seconds()*1e3, r.scrapeP99.Seconds()*1e3,
		(r.fpmShare-r.fpmBaseShare)*100, r.fpmShare*100, r.fpmBaseShare*100, r.workers, r.baseWorkers, r.listenHungJudged.Seconds(), r.plainHungJudged.Seconds())
}

// scaleHungAfter is serve's --hung-after: short, for the all-hung pool
// at the end of each run to be caught soon.
const scaleHungAfter = 3 * time.Second

// poolsPerMaster keeps each master within its open-file limit: a pool
// holds a few descriptors.
const poolsPerMaster = 200

// measureScale starts n pools, measures php-fpm alone, then each binary in
// turn on the same pools (the order alternates with run), and returns one
// result per binary, in the order of bins.
func measureScale(t *testing.T, pm, config string, n int, window time.Duration, scrapes int, bins []scaleBinary, run int) []scaleResult {
	t.Helper()
	var masters []*fpmtest.FPM
	for first := 0; first < n; first += poolsPerMaster {
		var pools []fpmtest.Pool
		for i := first; i < min(n, first+poolsPerMaster); i++ {
			p := fpmtest.Pool{Name: fmt.Sprintf("site%d", i), PM: pm, MaxChildren: 2}
			if pm == "ondemand" {
				p.Extra = []string{"pm.process_idle_timeout = 3s"}
			}
			// The last two pools are hung at the end of each measurement:
			// the last with pm.status_listen, whose status page answers
			// while all its workers hang, and the one before without.
			p.StatusListen = (config == "listen" && i != n-2) || i == n-1
			pools = append(pools, p)
		}
		masters = append(masters, fpmtest.Start(t, fpmtest.Options{Pools: pools, Files: map[string]string{"hang.php": hangPHP}}))
	}
	defer func() {
		for _, m := range masters {
			m.Stop(t)
		}
	}()
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
	fpmBase, baseWorkers := float64(fpmCPU()-base0)/float64(window), workers()

	out := make([]scaleResult, len(bins))
	for k := range bins {
		i := (k + run) % len(bins)
		res := measureServe(t, bins[i], masters, n, window, scrapes, fpmCPU, workers)
		res.fpmBaseShare, res.baseWorkers = fpmBase, baseWorkers
		out[i] = res
		if pm == "ondemand" {
			time.Sleep(5 * time.Second) // let the workers the hang started idle out
		}
	}
	return out
}

// measureServe runs one fpmguard binary's serve on the pools for a
// window, then hangs the last two pools and times their verdicts.
func measureServe(t *testing.T, bin scaleBinary, masters []*fpmtest.FPM, n int, window time.Duration, scrapes int, fpmCPU func() time.Duration, workers func() int) scaleResult {
	t.Helper()
	var res scaleResult
	addr := freePort(t)
	args := []string{"serve", "--interval", "1s", "--hung-after", scaleHungAfter.String(), "--web.listen-address", addr, "--opcache-dir", opcacheDir(t)}
	for _, m := range masters {
		args = append(args, "--fpm-config", m.Conf)
	}
	cmd := exec.Command(bin.path, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s fpmguard's output:\n%s", bin.name, log.String())
		}
	}()
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
	res.scrapes = scrapes
	res.scrapeP50, res.scrapeP99 = scrapeTimes(t, base, scrapes)

	// Every worker of the last two pools hangs, at once. The last one's
	// status page answers through pm.status_listen: how long after
	// --hung-after does serve judge it all hung? The other's is served by
	// the hung workers: how long until its failed heartbeats make it
	// unhealthy? Each is timed by the event that judged it, on its own.
	last := masters[len(masters)-1]
	listen, plain := fmt.Sprintf("site%d", n-1), fmt.Sprintf("site%d", n-2)
	hangStart := time.Now()
	releaseListen, releasePlain := hangPool(t, last, listen), hangPool(t, last, plain)
	judged := waitJudged(t, base, hangStart, listen, plain)
	res.listenHungJudged = judged[listen].Sub(hangStart) - scaleHungAfter
	res.plainHungJudged = judged[plain].Sub(hangStart)
	releaseListen()
	releasePlain()
	restartWorkers(t, last, listen, plain)
	return res
}

// scrapeTimes scrapes /metrics count times and returns the median and the
// 99th percentile (nearest rank) of their durations. The scrapes are
// 120 ms apart: more than the probe loop's 100 ms slot, so that each one
// sees new probes (for 10 pools and more) and none is served the last
// one's render.
func scrapeTimes(t *testing.T, base string, count int) (p50, p99 time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	took := make([]time.Duration, 0, count)
	for i := range count {
		if i > 0 {
			time.Sleep(120 * time.Millisecond)
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
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(took))+0.999999) - 1
		return took[max(0, min(i, len(took)-1))]
	}
	return rank(0.50), rank(0.99)
}

// waitJudged waits until serve at base has judged, after since, every
// worker of pool allHung hung, and pool unhealthy unhealthy, and returns
// the time of the event that said each: the second hung worker's, and the
// pool's first unhealthy verdict.
func waitJudged(t *testing.T, base string, since time.Time, allHung, unhealthy string) map[string]time.Time {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	return fpmtest.Poll(t, 60*time.Second, func() (map[string]time.Time, bool) {
		at := map[string]time.Time{}
		resp, err := client.Get(base + "/events?n=1000")
		if err != nil {
			return at, false
		}
		defer resp.Body.Close()
		var got struct{ Events []event.Event }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			return at, false
		}
		hung := map[int]time.Time{}
		for _, e := range got.Events {
			if !e.Time.After(since) {
				continue
			}
			switch {
			case e.Pool == allHung && e.Kind == event.KindHung:
				hung[e.PID] = e.Time
			case e.Pool == unhealthy && e.Kind == event.KindHealth && strings.Contains(e.Message, " is unhealthy: "):
				if first, ok := at[unhealthy]; !ok || e.Time.Before(first) {
					at[unhealthy] = e.Time
				}
			}
		}
		// The pools have 2 workers each (MaxChildren).
		if len(hung) >= 2 {
			for _, t := range hung {
				at[allHung] = later(at[allHung], t)
			}
		}
		return at, len(at) == 2
	})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// restartWorkers ends the workers of pools that run hang.php (which goes
// on after its client left, and a request left in the queue starts it
// again in the next worker) with SIGTERM, as php-fpm's own
// request_terminate_timeout would, until each pool's status page, read
// through its own socket, shows none: the next binary meets the pools as
// the first did.
func restartWorkers(t *testing.T, fpm *fpmtest.FPM, pools ...string) {
	t.Helper()
	for _, pool := range pools {
		for _, pid := range fpm.WorkerPIDs(pool) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		at := fastcgi.Address{Network: "unix", Addr: fpm.Pools[pool].Listen}
		fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
			st, err := fastcgi.Client{Timeout: time.Second}.Status(context.Background(), at, fpm.Pools[pool].StatusPath)
			if err != nil {
				return err.Error(), false
			}
			var hung []string
			for _, p := range st.Processes {
				if !p.Idle() && strings.HasPrefix(p.RequestURI, "/hang.php") && slices.Contains(fpm.WorkerPIDs(pool), p.PID) {
					_ = syscall.Kill(p.PID, syscall.SIGTERM)
					hung = append(hung, strconv.Itoa(p.PID))
				}
			}
			return "workers still in hang.php: " + strings.Join(hung, " "), len(hung) == 0
		})
	}
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
	dur := func(f func(scaleResult) time.Duration) time.Duration {
		return time.Duration(med(func(r scaleResult) float64 { return float64(f(r)) }))
	}
	return scaleResult{
		cpuPerTick:       dur(func(r scaleResult) time.Duration { return r.cpuPerTick }),
		coreShare:        med(func(r scaleResult) float64 { return r.coreShare }),
		rssMB:            med(func(r scaleResult) float64 { return r.rssMB }),
		rssFirstMB:       med(func(r scaleResult) float64 { return r.rssFirstMB }),
		rssMaxMB:         med(func(r scaleResult) float64 { return r.rssMaxMB }),
		scrapes:          rs[0].scrapes,
		scrapeP50:        dur(func(r scaleResult) time.Duration { return r.scrapeP50 }),
		scrapeP99:        dur(func(r scaleResult) time.Duration { return r.scrapeP99 }),
		fpmShare:         med(func(r scaleResult) float64 { return r.fpmShare }),
		fpmBaseShare:     med(func(r scaleResult) float64 { return r.fpmBaseShare }),
		workers:          int(med(func(r scaleResult) float64 { return float64(r.workers) })),
		baseWorkers:      int(med(func(r scaleResult) float64 { return float64(r.baseWorkers) })),
		listenHungJudged: dur(func(r scaleResult) time.Duration { return r.listenHungJudged }),
		plainHungJudged:  dur(func(r scaleResult) time.Duration { return r.plainHungJudged }),
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
