package opcache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzAnswer feeds the script's answer, as (Client).Read decodes it, to the
// verdict: whatever a php-fpm (or something in its place) answers must give
// a verdict, never a panic.
func FuzzAnswer(f *testing.F) {
	capture, err := os.ReadFile(filepath.Join("testdata", "php82_status.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(capture)
	// Variants of the capture answer: each changes what the script writes in
	// one situation, or what a broken one might.
	variants := []func(m map[string]any){
		func(m map[string]any) { m["status"] = nil },        // opcache.enable=0
		func(m map[string]any) { m["configuration"] = nil }, // opcache_get_configuration() failed
		func(m map[string]any) { m["status"], m["configuration"] = nil, nil },
		func(m map[string]any) { m["status"] = false }, // what opcache_get_status() returns on failure, passed through
		func(m map[string]any) { m["error"] = "opcache_get_status() failed: no shared memory" },
		func(m map[string]any) {
			m["loaded"], m["error"] = false, "the Zend OPcache extension is not loaded in this php-fpm"
			delete(m, "status")
			delete(m, "configuration")
		},
		func(m map[string]any) {
			m["restricted"], m["error"] = true, "opcache.restrict_api=/srv refuses scripts outside it"
			delete(m, "status")
			delete(m, "configuration")
		},
		func(m map[string]any) {
			st := m["status"].(map[string]any)
			st["cache_full"], st["restart_pending"], st["restart_in_progress"] = true, true, true
			stats := st["opcache_statistics"].(map[string]any)
			stats["oom_restarts"], stats["hash_restarts"] = 3, 2
			stats["num_cached_keys"] = stats["max_cached_keys"]
			st["jit"] = map[string]any{"enabled": true, "buffer_size": 1 << 26, "buffer_free": 0}
		},
		func(m map[string]any) { // the largest int64
			st := m["status"].(map[string]any)
			st["memory_usage"] = map[string]any{"used_memory": int64(1<<63 - 1), "free_memory": int64(1<<63 - 1), "wasted_memory": int64(1<<63 - 1)}
			st["interned_strings_usage"] = map[string]any{"buffer_size": int64(1<<63 - 1), "used_memory": 0, "free_memory": 0}
			stats := st["opcache_statistics"].(map[string]any)
			stats["start_time"], stats["last_restart_time"] = int64(1<<63-1), int64(1<<63-1)
			stats["oom_restarts"], stats["num_cached_keys"], stats["max_cached_keys"] = int64(1<<63-1), int64(1<<63-1), int64(1<<63-1)
			st["cache_full"] = true
			m["configuration"].(map[string]any)["directives"].(map[string]any)["opcache.memory_consumption"] = int64(1<<63 - 1)
		},
		func(m map[string]any) { // negative numbers
			st := m["status"].(map[string]any)
			st["memory_usage"] = map[string]any{"used_memory": -1, "free_memory": -1 << 40, "wasted_memory": int64(-1 << 63)}
			st["interned_strings_usage"] = map[string]any{"buffer_size": -8, "used_memory": -1, "free_memory": -1}
			stats := st["opcache_statistics"].(map[string]any)
			stats["start_time"], stats["last_restart_time"], stats["oom_restarts"] = -1, int64(-1<<63), -5
			stats["max_cached_keys"], stats["num_cached_keys"] = -1, -1
			st["cache_full"] = true
			d := m["configuration"].(map[string]any)["directives"].(map[string]any)
			d["opcache.max_wasted_percentage"], d["opcache.interned_strings_buffer"] = -0.5, -1
		},
		func(m map[string]any) { m["cfg_memory_consumption"] = "48" }, // a pool's own value, 128, ignored
		func(m map[string]any) { m["cfg_memory_consumption"] = "99999999999999999999" },
		func(m map[string]any) { m["cfg_memory_consumption"] = []any{1} },
		func(m map[string]any) { // file_cache_only, and a JIT that is not a string
			m["configuration"].(map[string]any)["directives"].(map[string]any)["opcache.file_cache_only"] = true
			m["configuration"].(map[string]any)["directives"].(map[string]any)["opcache.jit"] = map[string]any{"x": []any{1, nil}}
		},
	}
	for _, change := range variants {
		var m map[string]any
		if err := json.Unmarshal(capture, &m); err != nil {
			f.Fatal(err)
		}
		change(m)
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`,
		`null`,
		`{"schema":1,"loaded":true,"status":{},"configuration":{}}`,
		`{"schema":1,"loaded":true,"status":{"opcache_enabled":true,"memory_usage":{"used_memory":1e300}}}`,
		`{"schema":1,"loaded":true,"status":{"opcache_enabled":true,"memory_usage":{"used_memory":9223372036854775808}}}`,
		`{"schema":1,"loaded":true,"configuration":{"directives":{"opcache.max_wasted_percentage":1e308}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a answer
		if json.Unmarshal(b, &a) != nil {
			return // (Client).Read refuses it before any verdict
		}
		st := a.status()
		for _, v := range []Verdict{Judge(st, nil, 0), Judge(st, st, time.Minute)} {
			switch v.Health {
			case OK, Degraded, Unhealthy:
			default:
				t.Fatalf("health %q", v.Health)
			}
			// The report writes reasons as a JSON list: never null.
			if v.Reasons == nil {
				t.Fatalf("nil reasons with health %q", v.Health)
			}
			if (v.Health == OK) != (len(v.Reasons) == 0) {
				t.Fatalf("health %q with reasons %q", v.Health, v.Reasons)
			}
		}
	})
}

// TestSegmentBytes: the size of the shared memory, from what
// get_cfg_var('opcache.memory_consumption') gave the script.
func TestSegmentBytes(t *testing.T) {
	for _, tt := range []struct {
		cfg  any
		want int64
	}{
		{"48", 48 << 20},
		{"256M", 256 << 20}, // PHP reads the digits (atoi)
		{" 64", 64 << 20},
		{false, 128 << 20}, // not set: PHP's default
		{"4", 0},           // below PHP's 8 MB: left as PHP says
		{"lots", 0},
		{nil, 0}, // an answer without it
		{float64(64), 0},
		{"99999999999", 0}, // more digits than any memory: not trusted
	} {
		a := answer{CfgMemoryConsumption: tt.cfg}
		if got := a.segmentBytes(); got != tt.want {
			t.Errorf("cfg %#v: %d bytes, want %d", tt.cfg, got, tt.want)
		}
	}
}
