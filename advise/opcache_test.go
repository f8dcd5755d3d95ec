package advise

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/history"
)

// TestAcceleratedFiles holds the sizes php 8.2 answered as max_cached_keys
// for each opcache.max_accelerated_files (php -d ... -r opcache_get_status).
func TestAcceleratedFiles(t *testing.T) {
	for written, real := range map[int64]int64{200: 223, 224: 463, 463: 463, 464: 983, 1000: 1979, 2000: 3907, 4000: 7963, 10000: 16229, 20000: 32531, 100000: 130987, 600000: 1048793, 1000000: 1048793} {
		if got := AcceleratedFiles(written); got != real {
			t.Errorf("AcceleratedFiles(%d) = %d, want %d", written, got, real)
		}
	}
}

func TestOpcache(t *testing.T) {
	to := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	spare := history.OpcacheSummary{Master: "m", From: to.Add(-24 * time.Hour), To: to, MemoryConsumptionBytes: 128 * MiB, UsedWastedMaxBytes: 30 * MiB,
		MaxAcceleratedFiles: 10000, MaxCachedKeys: 16229, KeysMax: 2000, ScriptsMax: 1500,
		InternedBufferBytes: 8 * MiB, InternedUsedMaxBytes: 2 * MiB, ValidateTimestamps: true, RevalidateFreqSeconds: 2}
	tests := []struct {
		name  string
		edit  func(*history.OpcacheSummary)
		fine  bool
		lines map[string]string
		note  string
	}{
		{"to spare", func(*history.OpcacheSummary) {}, true, map[string]string{"opcache.memory_consumption": "128", "opcache.max_accelerated_files": "10000", "opcache.interned_strings_buffer": "8"}, ""},
		{"keys full", func(o *history.OpcacheSummary) { o.MaxAcceleratedFiles, o.MaxCachedKeys, o.KeysMax = 200, 223, 223 }, false,
			map[string]string{"opcache.max_accelerated_files": "463"}, ""},
		{"keys near full", func(o *history.OpcacheSummary) { o.KeysMax = 14000 }, false, map[string]string{"opcache.max_accelerated_files": "32531"}, ""},
		{"memory restarts", func(o *history.OpcacheSummary) { o.UsedWastedMaxBytes, o.OOMRestarts = 127*MiB, 3 }, false,
			map[string]string{"opcache.memory_consumption": "192"}, ""},
		{"interned full", func(o *history.OpcacheSummary) { o.InternedUsedMaxBytes = 8 * MiB }, false, map[string]string{"opcache.interned_strings_buffer": "12"}, ""},
		{"stat every request", func(o *history.OpcacheSummary) { o.RevalidateFreqSeconds = 0 }, true, nil, "on every request"},
		{"JIT full", func(o *history.OpcacheSummary) { o.JITEnabled, o.JITBufferBytes, o.JITFillMax = true, 64*MiB, 0.97 }, true, nil, "raise opcache.jit_buffer_size"},
		{"a pool's own memory_consumption", func(o *history.OpcacheSummary) { o.PoolMemoryConsumptionBytes = 16 * MiB }, true,
			map[string]string{"opcache.memory_consumption": "128"}, "a pool sets opcache.memory_consumption to 16, which php-fpm ignores: the shared memory was sized at the master's start (128)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := spare
			tt.edit(&o)
			a := adviseOpcache(o, 500000)
			if a.Fine != tt.fine {
				t.Errorf("fine = %v, want %v: %+v", a.Fine, tt.fine, a.Lines)
			}
			for d, want := range tt.lines {
				if l := find(a.Lines, d); l.Value != want {
					t.Errorf("%s = %s, want %s: %v", d, l.Value, want, l.Evidence)
				}
			}
			if notes := strings.Join(a.Notes, "; "); !strings.Contains(notes, tt.note) {
				t.Errorf("notes %q, want %q", notes, tt.note)
			}
		})
	}
}

// TestOpcacheShortWindow: a window too short for settings, or one in which
// its pools served too few requests, gives its evidence and no line to
// paste, even for a cache seen full.
func TestOpcacheShortWindow(t *testing.T) {
	to := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	o := history.OpcacheSummary{Master: "m", From: to.Add(-5 * time.Second), To: to, MemoryConsumptionBytes: 128 * MiB, UsedWastedMaxBytes: 127 * MiB,
		MaxAcceleratedFiles: 10000, MaxCachedKeys: 16229, KeysMax: 2000, InternedBufferBytes: 8 * MiB, InternedUsedMaxBytes: 2 * MiB, CacheFull: true}
	a := adviseOpcache(o, 500000)
	if len(a.Lines) != 0 || a.Fine || a.NotAdvised == "" || len(a.Evidence) != 3 || !strings.Contains(a.Evidence[0], "used plus wasted peaked at 127.0MiB") {
		t.Errorf("a 5s window: %+v", a)
	}
	// A day in which its pools served nothing says nothing either.
	o.From = to.Add(-24 * time.Hour)
	if a := adviseOpcache(o, 0); len(a.Lines) != 0 || a.NotAdvised == "" {
		t.Errorf("a day without requests: %+v", a)
	}
	if a := adviseOpcache(o, minRequests); len(a.Lines) == 0 || a.NotAdvised != "" {
		t.Errorf("a day of requests: %+v", a)
	}
}
