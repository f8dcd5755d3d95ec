package opcache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/opcache"
)

// scriptDir installs the embedded script into a fresh directory workers can
// read.
func scriptDir(t testing.TB) string {
	t.Helper()
	path, err := opcache.Install(filepath.Join(fpmtest.Dir(t), "fpmguard"))
	if err != nil {
		t.Fatal(err)
	}
	return path
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
		script, err := opcache.Install(filepath.Join(fpm.Dir, "fpmguard"))
		if err != nil {
			t.Fatal(err)
		}
		script = fpm.InRoot(script)
		c := opcache.Client{FastCGI: patient, Script: script}
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
		// (jit.enabled), while the JIT itself stays off (jit.on).
		jit, _ := php["jit"].(map[string]any)
		if (v == "7.4") != (jit == nil) || (v == "8.4") != (st.JITBufferSize > 0) || st.JITBufferSize != num(jit["buffer_size"]) || st.JITEnabled != (jit["enabled"] == true) {
			t.Errorf("JIT: buffer %d, enabled %v; PHP says %v", st.JITBufferSize, st.JITEnabled, php["jit"])
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
	script := scriptDir(t)
	files := map[string]string{}
	for i := range 400 {
		files[fmt.Sprintf("gen/s%03d.php", i)] = fmt.Sprintf("<?php return %d;", i)
	}
	fpm, addr := startFPM(t, map[string]string{"opcache.memory_consumption": "8", "opcache.max_accelerated_files": "200", "opcache.interned_strings_buffer": "1"}, files)
	for i := range 400 {
		get(t, addr, fpm, fmt.Sprintf("gen/s%03d.php", i))
	}
	st, err := opcache.Client{FastCGI: patient, Script: script}.Read(context.Background(), addr)
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
	script := scriptDir(t)
	_, addr := startFPM(t, nil, nil)
	c := opcache.Client{FastCGI: patient, Script: script}
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
	script := scriptDir(t)
	fpm, addr := startFPM(t, map[string]string{"opcache.validate_timestamps": "0"}, map[string]string{"app.php": "<?php echo 'v1';"})
	if got := get(t, addr, fpm, "app.php"); got != "v1" {
		t.Fatalf("got %q", got)
	}
	path := fpm.WriteFile(t, "app.php", "<?php echo 'v2';")
	if got := get(t, addr, fpm, "app.php"); got != "v1" {
		t.Fatalf("before invalidate got %q, want the cached v1", got)
	}
	res, err := opcache.Client{FastCGI: patient, Script: script}.Invalidate(context.Background(), addr, []string{path}, "")
	if err != nil || !res[path] {
		t.Fatalf("invalidate: %v %v", res, err)
	}
	if got := get(t, addr, fpm, "app.php"); got != "v2" {
		t.Errorf("after invalidate got %q, want v2", got)
	}
	// A glob is expanded by PHP inside php-fpm.
	fpm.WriteFile(t, "app.php", "<?php echo 'v3';")
	res, err = opcache.Client{FastCGI: patient, Script: script}.Invalidate(context.Background(), addr, nil, filepath.Join(fpm.DocRoot, "*.php"))
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
	script := scriptDir(t)
	_, addr := startFPM(t, nil, nil)
	c := opcache.Client{FastCGI: patient, Script: script}
	before, err := c.Read(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	// What nginx would pass for a request with a forged header.
	resp, err := patient.Do(context.Background(), addr, fastcgi.Request{Path: "/x.php", Script: script,
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
	script := scriptDir(t)
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
			st, err := opcache.Client{FastCGI: patient, Script: script}.Read(context.Background(), addr)
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
		st, err := opcache.Client{FastCGI: patient, Script: script}.Read(context.Background(), addr)
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

func TestInstallAndVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path, err := opcache.Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != opcache.ScriptName() || opcache.Verify(path) != nil {
		t.Fatalf("installed %s: %v", path, opcache.Verify(path))
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %o, want 0644 so the pool user can read it", fi.Mode().Perm())
	}
	// A changed copy is caught, then replaced by the next install.
	if err := os.WriteFile(path, []byte("<?php opcache_reset();"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := opcache.Verify(path); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("Verify of a changed script: %v", err)
	}
	if again, err := opcache.Install(dir); err != nil || again != path || opcache.Verify(path) != nil {
		t.Errorf("reinstall: %v", err)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := opcache.Install(open); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("Install into a world-writable dir: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := opcache.Install(link); err == nil || !strings.Contains(err.Error(), "not a plain directory") {
		t.Errorf("Install through a symlink: %v", err)
	}
	if _, err := opcache.Install("relative/dir"); err == nil {
		t.Error("Install into a relative dir succeeded")
	}
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
	script := scriptDir(b)
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
