package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/advise"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// memPHP holds ?mb= MiB of private memory for ?ms= milliseconds: a worker
// of known size during a long request.
const memPHP = `<?php $s = str_repeat('x', (int)$_GET['mb'] << 20); usleep((int)$_GET['ms'] * 1000); echo strlen($s);`

// leakPHP grows with every request its worker serves, as a leak does: the
// n-th request of a worker holds n × 256 KiB (up to 300, within PHP's
// memory_limit), and PHP's allocator keeps what a worker's requests
// needed at their peak. The count lives in a file per worker in dir.
const leakPHP = `<?php $f = '%s/' . getmypid(); $n = min(300, (int)@file_get_contents($f) + 1); file_put_contents($f, $n);
$keep = []; for ($i = 0; $i < $n; $i++) { $keep[] = str_repeat('y', 256 << 10); } echo $n;`

// TestAdviseMemory samples a pool whose workers hold a known amount of
// memory while requests queue, with `advise --duration`: the advised
// pm.max_children is the memory budget over the peak PSS.
func TestAdviseMemory(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		// The status page through its own listener, and no ping to wait
		// in the queue: a sample every interval while requests queue, for
		// a window long enough for settings.
		Pools:   []fpmtest.Pool{{Name: "mem", MaxChildren: 3, StatusListen: true, PingPath: "-"}},
		Defines: map[string]string{"opcache.memory_consumption": "16"},
		Files:   map[string]string{"mem.php": memPHP},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Ten clients on three workers: requests queue, more than memory
	// allows workers for.
	load(ctx, &wg, fpm, "mem", "mem.php", "mb=64&ms=300", 10, 0)
	var peakPSS atomic.Uint64
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, pid := range fpm.WorkerPIDs("mem") {
				peakPSS.Store(max(peakPSS.Load(), supervisor.ReadPSS(pid)))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	code, out, stderr := runCLI(t, "advise", "--fpm-config", fpm.Conf, "--duration", "30s", "--timeout", "10s", "--memory", "440M", "--reserve", "1M", "-o", "json")
	cancel()
	wg.Wait()
	if code != 0 || !strings.Contains(stderr, "sampling 1 pools for 30s") {
		t.Fatalf("advise: exit %d, stderr %q", code, stderr)
	}
	var a advise.Advice
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("advise -o json: %v\n%s", err, out)
	}
	mem := pool(&a, "mem")
	mc := line(&a, "mem", "pm.max_children")
	if mc == nil {
		t.Fatalf("no pm.max_children line:\n%s", out)
	}
	got, _ := strconv.Atoi(mc.Value)
	want := float64(mem.WorkerBudgetBytes) / float64(peakPSS.Load())
	t.Logf("pm.max_children %s (%s): budget %d MiB for workers, peak PSS %d MiB, want %.1f; RSS formula %d\n%s",
		mc.Value, mc.Change, mem.WorkerBudgetBytes>>20, peakPSS.Load()>>20, want, mem.RSSFormula, strings.Join(mc.Evidence, "\n"))
	if d := float64(got) - want; d > 0.15*want || d < -0.15*want {
		t.Errorf("pm.max_children = %d, want within 15%% of %.1f (the workers' budget / the peak PSS)", got, want)
	}
	// 440M less the 1M reserve, the 16M opcache and the master.
	if b := mem.WorkerBudgetBytes >> 20; b > 423 || b < 380 {
		t.Errorf("worker budget %d MiB, want 440M less the 1M reserve, the 16M opcache and the master", b)
	}
	if len(a.Opcache) != 1 || !a.Opcache[0].Fine {
		t.Errorf("an opcache with memory and keys to spare: want it told it is fine: %+v", a.Opcache)
	}
	// The RSS formula is told beside the advice, for comparison. Which is
	// larger depends on when the workers' RSS was sampled (its mean) against
	// their peak PSS: not asserted.
	if mc.Change != advise.Raise || mem.RSSFormula == 0 || !slices.ContainsFunc(mc.Evidence, func(e string) bool { return strings.Contains(e, "the RSS formula") }) {
		t.Errorf("a queueing pool: change %q, RSS formula %d; want raise, and the RSS formula's figure beside it", mc.Change, mem.RSSFormula)
	}
}

// TestAdviseServe watches a pool far larger than its load and one whose
// worker leaks with serve, and reads the advice from /advice and with
// `advise --from`.
func TestAdviseServe(t *testing.T) {
	counts := filepath.Join(fpmtest.Dir(t), "counts")
	if err := os.Mkdir(counts, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(counts, 0o777); err != nil { // past the umask: workers run unprivileged
		t.Fatal(err)
	}
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{
			{Name: "big", MaxChildren: 10},
			{Name: "leak", MaxChildren: 1},
		},
		Files: map[string]string{"leak.php": fmt.Sprintf(leakPHP, counts), "sleep.php": fpmtest.SleepPHP},
	})
	addr := freePort(t)
	startBinary(t, "serve", "--fpm-config", fpm.Conf, "--interval", "500ms", "--web.listen-address", addr)
	waitHTTP(t, "http://"+addr+"/healthz", 200)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	load(ctx, &wg, fpm, "big", "sleep.php", "ms=200", 1, 100*time.Millisecond)
	load(ctx, &wg, fpm, "leak", "leak.php", "", 1, 100*time.Millisecond)

	get := func(query string) (*advise.Advice, string) {
		code, body := httpGet("http://" + addr + "/advice?" + query)
		var a advise.Advice
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
			return nil, fmt.Sprintf("%d %s", code, body)
		}
		return &a, body
	}
	// The leak shows once its worker's PSS was read twice, seconds apart,
	// with requests in between; each pool's lines once its window is long
	// enough, with requests enough.
	a := fpmtest.Poll(t, 120*time.Second, func() (*advise.Advice, bool) {
		a, _ := get("memory=1G")
		return a, a != nil && line(a, "leak", "pm.max_requests") != nil && line(a, "big", "pm.max_children") != nil
	})
	if l := line(a, "leak", "pm.max_requests"); !strings.Contains(l.Evidence[0], "per request served") {
		t.Errorf("leak: want the growth per request: %+v", l)
	} else {
		t.Logf("leak: pm.max_requests = %s: %s", l.Value, strings.Join(l.Evidence, "; "))
	}
	if l := line(a, "big", "pm.max_children"); l == nil || l.Change != advise.Lower {
		t.Errorf("big: want pm.max_children lowered: %+v", l)
	} else {
		t.Logf("big: pm.max_children = %s: %s", l.Value, strings.Join(l.Evidence, "; "))
	}
	if _, body := get("memory=lots"); !strings.Contains(body, `400 memory: size "lots"`) {
		t.Errorf("/advice?memory=lots: %s", body)
	}

	code, out, stderr := runCLI(t, "advise", "--from", "http://"+addr, "--memory", "1G")
	if code != 0 || !strings.Contains(out, "[big]\n") || !strings.Contains(out, "\npm.max_children = ") || !strings.Contains(out, "the RSS formula") {
		t.Errorf("advise --from: exit %d, stderr %q\n%s", code, stderr, out)
	}
}

// TestAdviseOpcacheInCgroup runs php-fpm in a cgroup with a memory limit
// and fills an opcache whose max_accelerated_files is small: the budget
// is the cgroup's limit, and the advised max_accelerated_files is a size
// from php's table above the keys the scripts needed.
func TestAdviseOpcacheInCgroup(t *testing.T) {
	files := map[string]string{}
	var all strings.Builder
	all.WriteString("<?php $n = 0;\n")
	for i := range 300 {
		name := fmt.Sprintf("f%03d.php", i)
		files[name] = fmt.Sprintf("<?php return %d;", i)
		fmt.Fprintf(&all, "$n += include __DIR__ . '/%s';\n", name)
	}
	all.WriteString("echo $n;")
	files["all.php"] = all.String()
	fpm := fpmtest.Start(t, fpmtest.Options{
		Defines: map[string]string{"opcache.max_accelerated_files": "200", "opcache.file_update_protection": "0"},
		Files:   files,
	})
	const limit = 300 << 20
	group, err := fpmtest.MemoryLimit(t, limit)
	if err != nil {
		requireIntegration(t, err.Error())
	}
	if err := group.Add(fpm.MasterPID()); err != nil {
		t.Fatal(err)
	}
	if err := fpm.Request(context.Background(), "all.php", ""); err != nil {
		t.Fatal(err)
	}
	// Long enough a window for settings, with requests.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	load(ctx, &wg, fpm, "www", "all.php", "", 1, 50*time.Millisecond)
	code, out, stderr := runCLI(t, "advise", "--fpm-config", fpm.Conf, "--duration", "20s", "--interval", "500ms", "--timeout", "10s", "-o", "json")
	if code != 0 {
		t.Fatalf("advise: exit %d, stderr %q", code, stderr)
	}
	var a advise.Advice
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("advise -o json: %v\n%s", err, out)
	}
	if a.Memory.LimitBytes != limit || !strings.Contains(a.Memory.Source, "cgroup") {
		t.Errorf("memory limit %d from %q, want %d from the cgroup", a.Memory.LimitBytes, a.Memory.Source, limit)
	}
	if len(a.Opcache) != 1 {
		t.Fatalf("want one opcache advice:\n%s", out)
	}
	o := a.Opcache[0]
	var keys *advise.Line
	for i := range o.Lines {
		if o.Lines[i].Directive == "opcache.max_accelerated_files" {
			keys = &o.Lines[i]
		}
	}
	if keys == nil {
		t.Fatalf("no max_accelerated_files line:\n%s", out)
	}
	t.Logf("opcache.max_accelerated_files = %s (%s): %s", keys.Value, keys.Change, strings.Join(keys.Evidence, "; "))
	v, _ := strconv.ParseInt(keys.Value, 10, 64)
	if keys.Change != advise.Raise || o.Fine || v <= 300 || advise.AcceleratedFiles(v) != v {
		t.Errorf("max_accelerated_files = %d (%s), want raised above the 300 scripts, to a size php really uses", v, keys.Change)
	}
}

// load sends requests for script to pool from clients clients, each
// pausing between requests, until ctx ends.
func load(ctx context.Context, wg *sync.WaitGroup, fpm *fpmtest.FPM, pool, script, query string, clients int, pause time.Duration) {
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = fastcgi.Client{Timeout: time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: fpm.Pools[pool].Listen},
					fastcgi.Request{Path: "/" + script, Query: query, Script: filepath.Join(fpm.DocRoot, script)})
				time.Sleep(pause)
			}
		})
	}
}

func pool(a *advise.Advice, name string) *advise.PoolAdvice {
	for i := range a.Pools {
		if a.Pools[i].Pool == name {
			return &a.Pools[i]
		}
	}
	return &advise.PoolAdvice{}
}

func line(a *advise.Advice, poolName, directive string) *advise.Line {
	p := pool(a, poolName)
	for i := range p.Lines {
		if p.Lines[i].Directive == directive {
			return &p.Lines[i]
		}
	}
	return nil
}

// TestAdviseIdlePool: advise on a pool that serves nothing but fpmguard's
// own probes (status reads, pings that php-fpm shows as "-", opcache
// reads through the pool's own socket) counts no request and no duration,
// and prints its evidence without a line to paste, although its window
// is long enough for settings.
func TestAdviseIdlePool(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	code, out, stderr := runCLI(t, "advise", "--fpm-config", fpm.Conf, "--duration", "16s", "--interval", "200ms", "--timeout", "10s",
		"--opcache-dir", opcacheDir(t), "-o", "json")
	if code != 0 {
		t.Fatalf("advise: exit %d, stderr %q", code, stderr)
	}
	var a advise.Advice
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("advise -o json: %v\n%s", err, out)
	}
	p := pool(&a, "www")
	var text strings.Builder
	if err := advise.WriteText(&text, &a); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	if p.Window.Requests != 0 || p.Window.Samples < 20 || len(p.Lines) != 0 || p.NotAdvised == "" {
		t.Errorf("an idle pool: %d requests in %d samples, %d lines, not advised %q", p.Window.Requests, p.Window.Samples, len(p.Lines), p.NotAdvised)
	}
	for _, l := range strings.Split(text.String(), "\n") {
		if strings.Contains(l, "finished requests") || strings.HasPrefix(l, "[www]") || (l != "" && !strings.HasPrefix(l, ";") && !strings.HasPrefix(l, "[")) {
			t.Errorf("an idle pool's advice has %q", l)
		}
	}
}
