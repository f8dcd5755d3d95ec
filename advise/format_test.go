package advise

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/history"
)

// pasted is the section of text that starts with header, up to the blank
// line that ends it: what a user pastes.
func pasted(t *testing.T, text, header string) string {
	t.Helper()
	i := strings.Index(text, "\n"+header+"\n")
	if i < 0 {
		t.Fatalf("no %q in the advice:\n%s", header, text)
	}
	section := text[i+1:]
	if j := strings.Index(section, "\n\n"); j >= 0 {
		section = section[:j+1]
	}
	return section
}

// settings lists the lines of a pasted section that are not comments, as
// directive and value.
func settings(section string) [][2]string {
	var out [][2]string
	for _, line := range strings.Split(section, "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(line, ";") {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// TestWriteTextPassesConfigTest pastes what `fpmguard advise` writes for a
// pool into that pool's config and runs the version's own `php-fpm -t`,
// for every version and each shape of traffic (ondemand, static, dynamic,
// a leak, timeouts), with and without a slowlog; and pastes the opcache
// lines into a php.ini, which that version's PHP reads back. The summaries
// are made up, to reach every line advise can write; the php-fpm is real.
func TestWriteTextPassesConfigTest(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		for _, slowlog := range []bool{false, true} {
			name := "no-slowlog"
			if slowlog {
				name = "slowlog"
			}
			t.Run(name, func(t *testing.T) {
				fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Slowlog: slowlog}}})
				conf, err := os.ReadFile(fpm.Conf)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, shape := range []struct {
					name string
					edit func(*history.PoolSummary)
				}{
					{"idle", func(p *history.PoolSummary) { p.IdleShare = 0.8 }},
					{"steady", func(p *history.PoolSummary) {}},
					{"bursty-leaking", func(p *history.PoolSummary) {
						p.IdleShare, p.BusyP50, p.BusyP95, p.BusyP99, p.BusyMax = 0.3, 2, 6, 8, 9
						p.Growth, p.GrowthMedian = []history.Growth{{Requests: 100, BytesPerReq: 200 << 10}}, 200<<10
					}},
					{"queueing", func(p *history.PoolSummary) { p.QueueShare, p.BusyP99, p.BusyMax, p.QueueMax = 0.3, 2, 2, 5 }},
				} {
					p := quiet()
					p.MaxChildren = fpm.Pools["www"].MaxChildren
					p.BusyP50, p.BusyP95, p.BusyP99, p.BusyMax = 1, 2, 2, 2
					if slowlog {
						p.Slowlog, p.RequestSlowlogTimeoutSeconds = fpm.InRoot(fpm.Pools["www"].SlowlogPath), 1
					}
					shape.edit(&p)
					var b strings.Builder
					if err := WriteText(&b, Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{Source: "--memory", LimitBytes: 1 << 30, BudgetBytes: 1 << 30, CPUs: 2}, p.To)); err != nil {
						t.Fatal(err)
					}
					section := pasted(t, b.String(), "[www]")
					for _, s := range settings(section) {
						seen[s[0]+" = "+s[1]] = true
						seen[s[0]] = true
					}
					path := filepath.Join(fpm.Dir, "pasted-"+shape.name+".conf")
					if err := os.WriteFile(path, append(append(conf, '\n'), section...), 0o644); err != nil {
						t.Fatal(err)
					}
					out, err := fpm.Command(fpm.InRootArgv()[0], "-t", "-y", fpm.InRoot(path)).CombinedOutput()
					if err != nil || !strings.Contains(string(out), "test is successful") {
						t.Errorf("%s: php-fpm %s -t refuses the pool's advice pasted: %v\n%s\n%s", shape.name, fpm.PHPVersion, err, out, section)
					}
				}
				for _, want := range []string{"pm = ondemand", "pm = static", "pm = dynamic", "pm.process_idle_timeout", "pm.start_servers", "pm.max_requests", "pm.max_children", "request_terminate_timeout"} {
					if !seen[want] {
						t.Errorf("no advice wrote %q: the test pastes less than advise writes", want)
					}
				}
				if seen["request_slowlog_timeout"] != slowlog {
					t.Errorf("request_slowlog_timeout advised: %v, for a pool with a slowlog: %v", seen["request_slowlog_timeout"], slowlog)
				}
			})
		}
		t.Run("opcache", func(t *testing.T) {
			fpm := fpmtest.New(t, fpmtest.Options{Version: v})
			to := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			pool := quiet()
			full := history.OpcacheSummary{Master: pool.Master, Pools: []string{pool.Pool}, From: to.Add(-24 * time.Hour), To: to, Hits: 100000, Misses: 1000,
				MemoryConsumptionBytes: 128 * MiB, UsedWastedMaxBytes: 127 * MiB, OOMRestarts: 3,
				MaxAcceleratedFiles: 200, MaxCachedKeys: 223, KeysMax: 223, ScriptsMax: 223,
				InternedBufferBytes: 8 * MiB, InternedUsedMaxBytes: 8 * MiB, ValidateTimestamps: true, RevalidateFreqSeconds: 2}
			var b strings.Builder
			if err := WriteText(&b, Compute(&history.Summary{Pools: []history.PoolSummary{pool}, Opcache: []history.OpcacheSummary{full}}, Memory{BudgetBytes: 1 << 30}, to)); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			i := strings.Index(text, "; php.ini")
			if i < 0 {
				t.Fatalf("no php.ini section:\n%s", text)
			}
			lines := settings(text[i:])
			if len(lines) != 3 {
				t.Fatalf("opcache lines %q, want the three sizes", lines)
			}
			var ini strings.Builder
			var keys []string
			for _, l := range lines {
				ini.WriteString(l[0] + " = " + l[1] + "\n")
				keys = append(keys, l[0])
			}
			path := filepath.Join(fpm.Dir, "php.ini")
			if err := os.WriteFile(path, []byte(ini.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			keysJSON, _ := json.Marshal(keys)
			php := "/usr/bin/php" + fpm.Version
			out, err := fpm.Command(php, "-c", fpm.InRoot(path), "-r", `echo json_encode(array_map("ini_get", json_decode($argv[1])));`, string(keysJSON)).Output()
			if err != nil {
				t.Fatalf("%s: %v", php, err)
			}
			var got []any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s answered %q: %v", php, out, err)
			}
			var want []any
			for _, l := range lines {
				want = append(want, l[1])
			}
			if !slices.Equal(got, want) {
				t.Errorf("PHP %s reads the pasted php.ini as %v, want %v (false: a directive it does not have)", fpm.PHPVersion, got, want)
			}
		})
	})
}
