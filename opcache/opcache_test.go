package opcache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/fpmguard/fpmguard/opcache"
)

// newClient installs the status script into a fresh directory workers can
// read, where the client also writes the scripts of its actions.
func newClient(t testing.TB) opcache.Client {
	t.Helper()
	place := opcache.Place{Dir: filepath.Join(fpmtest.Dir(t), "fpmguard")}
	path, err := place.Install()
	if err != nil {
		t.Fatal(err)
	}
	return opcache.Client{FastCGI: patient, Script: path, Actions: place}
}

// newClientIn is newClient for php-fpm fpm of any version: the script is
// placed in fpm's directory, through its master's root when it has one.
func newClientIn(t testing.TB, fpm *fpmtest.FPM) opcache.Client {
	t.Helper()
	place := opcache.Place{Dir: fpm.InRoot(filepath.Join(fpm.Dir, "fpmguard"))}
	if fpm.Root != "" {
		place.Root.MasterPID = fpm.MasterPID()
	}
	path, err := place.Install()
	if err != nil {
		t.Fatal(err)
	}
	return opcache.Client{FastCGI: patient, Script: path, Actions: place}
}

// patient is the client of calls that must get php-fpm's answer: its timeout
// is far above what an answer takes on a loaded runner, so that it never
// decides a test. A call returns with the answer, so it costs nothing.
var patient = fastcgi.Client{Timeout: 30 * time.Second}

func startFPM(t *testing.T, defines map[string]string, files map[string]string) (*fpmtest.FPM, fastcgi.Address) {
	t.Helper()
	return startFPMOf(t, "", defines, files)
}

// startFPMOf is startFPM with PHP version v; the address is the pool's own
// socket where v has no pm.status_listen.
func startFPMOf(t *testing.T, v string, defines map[string]string, files map[string]string) (*fpmtest.FPM, fastcgi.Address) {
	t.Helper()
	if defines == nil {
		defines = map[string]string{}
	}
	// Freshly written test files would otherwise wait 2s to be cached.
	if _, ok := defines["opcache.file_update_protection"]; !ok {
		defines["opcache.file_update_protection"] = "0"
	}
	fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}}, Defines: defines, Files: files})
	if !fpmtest.HasStatusListen(v) {
		return fpm, fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}
	}
	return fpm, fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}
}

func get(t *testing.T, addr fastcgi.Address, fpm *fpmtest.FPM, name string) string {
	t.Helper()
	resp, err := patient.Do(context.Background(), addr, fastcgi.Request{Path: "/" + name, Script: fpm.Script(name)})
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	return string(resp.Body)
}

// ownStatusPHP is the test's own view of opcache_get_status(), to compare
// with what fpmguard reports.
const ownStatusPHP = `<?php header('Content-Type: application/json'); echo json_encode(opcache_get_status(false));`

// TestReadMatchesPHP compares what fpmguard reads with what PHP itself
// reports, on every PHP version.
func TestReadMatchesPHP(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm, addr := startFPMOf(t, v, nil, map[string]string{"own.php": ownStatusPHP, "a.php": "<?php echo 1;"})
		c := newClientIn(t, fpm)
		get(t, addr, fpm, "a.php")
		// Cache both scripts first so that nothing changes between the reads
		// but the hit counter.
		if _, err := c.Read(context.Background(), addr); err != nil {
			t.Fatal(err)
		}
		get(t, addr, fpm, "own.php")

		raw := get(t, addr, fpm, "own.php")
		var php map[string]any
		if err := json.Unmarshal([]byte(raw), &php); err != nil {
			t.Fatalf("own status: %v: %s", err, raw)
		}
		st, err := c.Read(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		mem := php["memory_usage"].(map[string]any)
		stats := php["opcache_statistics"].(map[string]any)
		interned := php["interned_strings_usage"].(map[string]any)
		for _, tt := range []struct {
			name      string
			got, want int64
		}{
			{"used_memory", st.MemoryUsed, num(mem["used_memory"])},
			{"free_memory", st.MemoryFree, num(mem["free_memory"])},
			{"wasted_memory", st.MemoryWasted, num(mem["wasted_memory"])},
			{"num_cached_scripts", st.CachedScripts, num(stats["num_cached_scripts"])},
			{"num_cached_keys", st.CachedKeys, num(stats["num_cached_keys"])},
			{"max_cached_keys", st.MaxCachedKeys, num(stats["max_cached_keys"])},
			{"oom_restarts", st.OOMRestarts, num(stats["oom_restarts"])},
			{"hash_restarts", st.HashRestarts, num(stats["hash_restarts"])},
			{"manual_restarts", st.ManualRestarts, num(stats["manual_restarts"])},
			{"misses", st.Misses, num(stats["misses"])},
			{"interned buffer_size", st.InternedSize, num(interned["buffer_size"])},
			{"start_time", st.StartTime.Unix(), num(stats["start_time"])},
			// The script's own request is one more hit.
			{"hits", st.Hits, num(stats["hits"]) + 1},
		} {
			if tt.got != tt.want {
				t.Errorf("%s = %d, PHP says %d", tt.name, tt.got, tt.want)
			}
		}
		if st.CachedScripts < 3 || !st.Enabled || st.Config.MemoryConsumption == 0 {
			t.Errorf("status %+v", st)
		}
		// PHP 8.0 brought the JIT; 8.4 gives it a 64 MB buffer by default
		// (jit.enabled), while the JIT itself stays off (jit.on): off is
		// what fpmguard says.
		jit, _ := php["jit"].(map[string]any)
		if (v == "7.4") != (jit == nil) || (v == "8.4") != (st.JITBufferSize > 0) || st.JITBufferSize != num(jit["buffer_size"]) || st.JITEnabled || jit["on"] == true {
			t.Errorf("JIT: buffer %d, enabled %v; PHP says %v", st.JITBufferSize, st.JITEnabled, php["jit"])
		}
	})
}

// TestPoolMemoryConsumptionIgnored: a pool's own opcache.memory_consumption
// (php_admin_value) does not resize the shared memory the master made at
// its start, yet PHP takes used_memory as the pool's value less the free
// and wasted memory: with 16 MB in the pool and 48 MB at the master's start,
// PHP says -24 MB used, in each version. fpmguard gives the figures of the
// 48 MB the cache has, and names the pool's value.
func TestPoolMemoryConsumptionIgnored(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 1, Extra: []string{"php_admin_value[opcache.memory_consumption] = 16"}}},
			Defines: map[string]string{"opcache.memory_consumption": "48"}, Files: map[string]string{"own.php": ownStatusPHP}})
		addr := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}
		var php map[string]any
		if err := json.Unmarshal([]byte(get(t, addr, fpm, "own.php")), &php); err != nil {
			t.Fatal(err)
		}
		if used := num(php["memory_usage"].(map[string]any)["used_memory"]); used >= 0 {
			t.Fatalf("PHP says %d bytes used: the pool's value was not taken, nothing to correct", used)
		}
		st, err := newClientIn(t, fpm).Read(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if st.Config.MemoryConsumption != 48<<20 || st.PoolMemoryConsumption != 16<<20 {
			t.Errorf("memory_consumption %d, the pool's %d; want 48 MB and 16 MB", st.Config.MemoryConsumption, st.PoolMemoryConsumption)
		}
		if st.MemoryUsed <= 0 || st.MemoryUsed+st.MemoryFree+st.MemoryWasted != 48<<20 || st.FillRatio() <= 0 || st.FillRatio() >= 1 {
			t.Errorf("used %d, free %d, wasted %d (fill %.3f): want the 48 MB segment's", st.MemoryUsed, st.MemoryFree, st.MemoryWasted, st.FillRatio())
		}
	})
}

// TestJITOn: with opcache.jit=tracing and a buffer, the JIT is on in each
// version that has one, and its buffer is read.
func TestJITOn(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		if v == "7.4" {
			return // no JIT before PHP 8.0
		}
		fpm, addr := startFPMOf(t, v, map[string]string{"opcache.jit": "tracing", "opcache.jit_buffer_size": "32M"}, nil)
		st, err := newClientIn(t, fpm).Read(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if !st.JITEnabled || st.JITBufferSize < 32<<20-1024 || st.JITBufferFree <= 0 || st.JITBufferFree > st.JITBufferSize {
			t.Errorf("JIT on %v, buffer %d, free %d", st.JITEnabled, st.JITBufferSize, st.JITBufferFree)
		}
	})
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// TestFullCacheWithoutRestart fills a tiny cache with generated scripts and
// expects the "full and no restart coming" verdict with advice.
func TestFullCacheWithoutRestart(t *testing.T) {
	c := newClient(t)
	files := map[string]string{}
	for i := range 400 {
		files[fmt.Sprintf("gen/s%03d.php", i)] = fmt.Sprintf("<?php return %d;", i)
	}
	fpm, addr := startFPM(t, map[string]string{"opcache.memory_consumption": "8", "opcache.max_accelerated_files": "200", "opcache.interned_strings_buffer": "1"}, files)
	for i := range 400 {
		get(t, addr, fpm, fmt.Sprintf("gen/s%03d.php", i))
	}
	st, err := c.Read(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if !st.CacheFull || !st.KeysFull() || st.MemoryWasted != 0 || st.RestartPending {
		t.Fatalf("want a full key table, no waste, no restart: %+v", st)
	}
	v := opcache.Judge(st, nil, 0)
	reasons := strings.Join(v.Reasons, "\n")
	want := fmt.Sprintf("cache full (keys %d/%d) and no restart will come: wasted 0%% < max_wasted_percentage 5%%", st.MaxCachedKeys, st.MaxCachedKeys)
	if v.Health != opcache.Degraded || !strings.Contains(reasons, want) || !strings.Contains(reasons, "raise opcache.max_accelerated_files to at least") {
		t.Errorf("verdict %s %q, want degraded with %q", v.Health, v.Reasons, want)
	}
}

func TestResetCountsAManualRestart(t *testing.T) {
	c := newClient(t)
	_, addr := startFPM(t, nil, nil)
	before, err := c.Read(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := c.Reset(context.Background(), addr)
	if err != nil || !ok {
		t.Fatalf("reset: %v %v", ok, err)
	}
	// php counts the restart when it happens: at a later request, once no
	// worker still uses the old cache.
	deadline := time.Now().Add(patient.Timeout)
	for {
		after, err := c.Read(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if after.ManualRestarts == before.ManualRestarts+1 && !after.RestartPending {
			break
		}
		if after.ManualRestarts > before.ManualRestarts+1 || time.Now().After(deadline) {
			t.Fatalf("manual_restarts %d -> %d (pending %v), want +1", before.ManualRestarts, after.ManualRestarts, after.RestartPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInvalidateRecompiles: with validate_timestamps off php-fpm keeps
// serving the old code after a deploy until the file is invalidated.
func TestInvalidateRecompiles(t *testing.T) {
	c := newClient(t)
	fpm, addr := startFPM(t, map[string]string{"opcache.validate_timestamps": "0"}, map[string]string{"app.php": "<?php echo 'v1';"})
	if got := get(t, addr, fpm, "app.php"); got != "v1" {
		t.Fatalf("got %q", got)
	}
	path := fpm.WriteFile(t, "app.php", "<?php echo 'v2';")
	if got := get(t, addr, fpm, "app.php"); got != "v1" {
		t.Fatalf("before invalidate got %q, want the cached v1", got)
	}
	res, err := c.Invalidate(context.Background(), addr, []string{path}, "")
	if err != nil || !res[path] {
		t.Fatalf("invalidate: %v %v", res, err)
	}
	if got := get(t, addr, fpm, "app.php"); got != "v2" {
		t.Errorf("after invalidate got %q, want v2", got)
	}
	// A glob is expanded by PHP inside php-fpm.
	fpm.WriteFile(t, "app.php", "<?php echo 'v3';")
	res, err = c.Invalidate(context.Background(), addr, nil, filepath.Join(fpm.DocRoot, "*.php"))
	if err != nil || !res[path] {
		t.Fatalf("invalidate --glob: %v %v", res, err)
	}
	if got := get(t, addr, fpm, "app.php"); got != "v3" {
		t.Errorf("after glob invalidate got %q, want v3", got)
	}
}

// TestScriptRefusesWithoutGuard: a copy of the script reached without the
// guard parameter, as nginx would reach one in a web root, answers 404 and
// does nothing.
func TestScriptRefusesWithoutGuard(t *testing.T) {
	c := newClient(t)
	_, addr := startFPM(t, nil, nil)
	before, err := c.Read(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	// What nginx would pass for a request with a forged header.
	resp, err := patient.Do(context.Background(), addr, fastcgi.Request{Path: "/x.php", Script: c.Script,
		Params: map[string]string{"HTTP_FPMGUARD_OPCACHE": "reset", "QUERY_STRING": "FPMGUARD_OPCACHE=reset"}, Query: "FPMGUARD_OPCACHE=reset"})
	if fastcgi.ClassOf(err) != fastcgi.ClassNotFound || resp == nil || resp.Status != 404 || bytes.Contains(resp.Body, []byte("opcache")) {
		t.Fatalf("without the guard: %v %+v", err, resp)
	}
	after, err := c.Read(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if after.ManualRestarts != before.ManualRestarts {
		t.Errorf("a request without the guard reset the cache")
	}
}

func TestOpcacheStates(t *testing.T) {
	c := newClient(t)
	tests := []struct {
		name    string
		defines map[string]string
		check   func(*opcache.Status) bool
		reason  string
	}{
		{"disabled", map[string]string{"opcache.enable": "0"}, func(s *opcache.Status) bool { return s.Loaded && !s.Enabled }, "the opcache is disabled"},
		{"restrict_api", map[string]string{"opcache.restrict_api": "/nonexistent/"}, func(s *opcache.Status) bool { return s.Restricted }, "opcache.restrict_api=/nonexistent/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startFPM(t, tt.defines, nil)
			st, err := c.Read(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(st) {
				t.Errorf("status %+v", st)
			}
			v := opcache.Judge(st, nil, 0)
			if v.Health != opcache.Degraded || !strings.Contains(strings.Join(v.Reasons, "\n"), tt.reason) {
				t.Errorf("verdict %s %q, want degraded naming %q", v.Health, v.Reasons, tt.reason)
			}
		})
	}
	t.Run("file_cache_only", func(t *testing.T) {
		cache := t.TempDir()
		if err := os.Chmod(cache, 0o777); err != nil {
			t.Fatal(err)
		}
		_, addr := startFPM(t, map[string]string{"opcache.file_cache": cache, "opcache.file_cache_only": "1"}, nil)
		st, err := c.Read(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if !st.FileCacheOnly {
			t.Errorf("status %+v, want file_cache_only", st)
		}
		if v := opcache.Judge(st, nil, 0); v.Health != opcache.OK {
			t.Errorf("verdict %+v", v)
		}
	})
}

// TestExampleIsTheEmbeddedScript: examples/php holds the same file, not a
// copy that could drift.
func TestExampleIsTheEmbeddedScript(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "php", "fpmguard-opcache.php"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, opcache.Script) {
		t.Error("examples/php/fpmguard-opcache.php differs from the embedded script")
	}
}

func TestJudgeRestartPending(t *testing.T) {
	st := &opcache.Status{Loaded: true, Enabled: true, RestartPending: true, Config: opcache.Config{ForceRestartTimeout: 180}}
	if v := opcache.Judge(st, nil, 0); v.Health != opcache.Degraded {
		t.Errorf("just pending: %+v", v)
	}
	v := opcache.Judge(st, nil, 95*time.Second)
	if v.Health != opcache.Unhealthy || !strings.Contains(v.Reasons[0], "restart pending for 1m35s (force_restart_timeout 180s)") {
		t.Errorf("pending 95s: %+v", v)
	}
	prev := &opcache.Status{OOMRestarts: 2}
	st = &opcache.Status{Loaded: true, Enabled: true, OOMRestarts: 2, Config: opcache.Config{MemoryConsumption: 64 << 20}}
	if v := opcache.Judge(st, prev, 0); v.Health != opcache.OK {
		t.Errorf("no new OOM restart: %+v", v)
	}
	st.OOMRestarts = 3
	if v := opcache.Judge(st, prev, 0); v.Health != opcache.Degraded || !strings.Contains(v.Reasons[0], "1 OOM restarts") || !strings.Contains(v.Reasons[0], "memory_consumption to at least 128") {
		t.Errorf("a new OOM restart: %+v", v)
	}
}

// BenchmarkRead measures reading the opcache status: one FastCGI request
// to the embedded script and one JSON decode. ping is the baseline: the
// same round trip to php-fpm's own ping, which runs no PHP.
func BenchmarkRead(b *testing.B) {
	script := newClient(b).Script
	fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
	addr := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}
	ctx := context.Background()
	b.Run("opcacheStatus", func(b *testing.B) {
		c := opcache.Client{Script: script}
		for b.Loop() {
			if _, err := c.Read(ctx, addr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pingBaseline", func(b *testing.B) {
		for b.Loop() {
			if _, err := (fastcgi.Client{}).Ping(ctx, addr, "/ping", "pong"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestMain lets the test binary stand in for cgi-fcgi: run with
// FPMGUARD_TEST_FASTCGI set, it sends that one FastCGI request and prints
// the answer. The tests start it as a pool's user.
func TestMain(m *testing.M) {
	if req := os.Getenv("FPMGUARD_TEST_FASTCGI"); req != "" {
		os.Exit(fastcgiRequest(req))
	}
	os.Exit(m.Run())
}

type clientRequest struct {
	Socket, Script string
	Params         map[string]string
}

func fastcgiRequest(raw string) int {
	var r clientRequest
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		fmt.Println(err)
		return 2
	}
	resp, err := patient.Do(context.Background(), fastcgi.Address{Network: "unix", Addr: r.Socket},
		fastcgi.Request{Path: "/" + filepath.Base(r.Script), Script: r.Script, Params: r.Params})
	if resp != nil {
		fmt.Printf("%d\n%s", resp.Status, resp.Body)
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// asPoolUser sends one FastCGI request from a process of the user php-fpm's
// workers run as (the test's own user when it is not root), and returns
// what it printed.
func asPoolUser(t *testing.T, req clientRequest) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	// The go command keeps its binaries in a directory of mode 0700.
	bin := filepath.Join(fpmtest.Dir(t), "client")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(req)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FPMGUARD_TEST_FASTCGI="+string(raw))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("running the client as the pool user: %v", err)
	}
	return string(out)
}

// TestPoolUserCannotReset reproduces finding 5 of issue 18. With
// opcache.restrict_api keeping the application's own code away from the
// opcache API, the pool user reached fpmguard's installed script through
// the pool's socket, as cgi-fcgi would, with FPMGUARD_OPCACHE=reset, and
// reset the cache every pool of the master shares (manual restarts 0 to
// 1); with FPMGUARD_OPCACHE=invalidate it ran glob() on any pattern. The
// script now only reads. fpmguard itself still resets, under the same
// restrict_api.
func TestPoolUserCannotReset(t *testing.T) {
	c := newClient(t)
	fpm, addr := startFPM(t, map[string]string{"opcache.restrict_api": filepath.Dir(c.Script) + "/"}, map[string]string{
		"own.php": `<?php header('Content-Type: text/plain'); var_export(@opcache_reset());`,
		"app.php": `<?php echo 1;`,
	})
	ctx := context.Background()
	// unchanged checks that no restart happened, nor is pending.
	unchanged := func(when string) {
		t.Helper()
		for range 2 {
			st, err := c.Read(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if st.ManualRestarts != 0 || st.RestartPending {
				t.Fatalf("%s: manual restarts %d, restart pending %v: the cache was reset", when, st.ManualRestarts, st.RestartPending)
			}
		}
	}
	unchanged("at start")

	// restrict_api is in force: the application's own call is refused.
	if got := get(t, addr, fpm, "own.php"); got != "false" {
		t.Fatalf("the application's own opcache_reset() returned %q, want false under restrict_api", got)
	}
	unchanged("after the application's own opcache_reset()")

	out := asPoolUser(t, clientRequest{Socket: fpm.Pools["www"].Listen, Script: c.Script, Params: map[string]string{opcache.Guard: "reset"}})
	if !strings.Contains(out, "only reads") {
		t.Errorf("the script answered the pool user's reset with %q", out)
	}
	unchanged("after the pool user's FPMGUARD_OPCACHE=reset")

	out = asPoolUser(t, clientRequest{Socket: fpm.Pools["www"].Listen, Script: c.Script,
		Params: map[string]string{opcache.Guard: "invalidate", "FPMGUARD_GLOB": filepath.Join(fpm.DocRoot, "*.php")}})
	if strings.Contains(out, "app.php") {
		t.Errorf("the script ran the pool user's glob: %q", out)
	}

	ok, _, err := c.Reset(ctx, addr)
	if err != nil || !ok {
		t.Fatalf("fpmguard's own reset under restrict_api: %v %v", ok, err)
	}
	fpmtest.Poll(t, patient.Timeout, func() (int64, bool) {
		st, err := c.Read(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		return st.ManualRestarts, st.ManualRestarts == 1
	})
}
