package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// BenchmarkRecovery is the end-to-end scenario of `make bench`, through a
// real nginx: four workers, four requests that hang for 20 s, and a client
// sending a normal request every 100 ms. It reports the nginx 5xx answers,
// the seconds from the hang to the first normal request served again, and
// the seconds until the last hung request ended, as its client saw:
//   - none: nothing acts (nginx's fastcgi_read_timeout is 10 s);
//   - fpmguard-interval-1s, fpmguard-interval-5s: fpmguard run
//     --kill-hung-after 3s, probing every 1 s or 5 s (--max-kill-ratio 0.5:
//     two workers go, then the other two once those are gone);
//   - request_terminate_timeout: php-fpm's own kill at the same 3 s;
//   - baseline-interval-1s, baseline-interval-5s: another fpmguard binary
//     (FPMGUARD_SCENARIO_BASELINE=PATH, the old code) as fpmguard.
//
// For fpmguard it also reports its SIGTERMs, and kill-late-ms: how long
// after the hang began plus --kill-hung-after the last one went, from its
// own events (the hang begins when the test sends the requests, a little
// before php-fpm starts them, so this overstates the lateness, never
// understates it).
//
// It takes about two minutes, so it runs only with FPMGUARD_SCENARIO=1.
func BenchmarkRecovery(b *testing.B) {
	if os.Getenv("FPMGUARD_SCENARIO") == "" {
		b.Skip("set FPMGUARD_SCENARIO=1 (make bench does) to run the nginx scenario")
	}
	const threshold = 3 * time.Second
	pool := func(extra ...string) fpmtest.Pool {
		return fpmtest.Pool{MaxChildren: 4, StatusListen: true, Extra: extra}
	}
	files := map[string]string{"index.php": indexPHP, "hang.php": hangPHP}
	withFpmguard := func(bin, interval string) func(b *testing.B) (*fpmtest.Nginx, string) {
		return func(b *testing.B) (*fpmtest.Nginx, string) {
			fpm := fpmtest.New(b, fpmtest.Options{Pools: []fpmtest.Pool{pool()}, Files: files})
			addr := freePort(b)
			args := append([]string{"run", "--web.listen-address", addr, "--opcache-dir", opcacheDir(b),
				"--interval", interval, "--kill-hung-after", threshold.String(), "--"}, fpm.Argv()...)
			path := bin
			if path == "" {
				path = buildBinary(b) // in this run's directory, removed with it
			}
			cmd := exec.Command(path, args...)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			})
			if err := fpm.WaitSockets(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			n := fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second})
			// Every pool probed once: fpmguard watches before the hang.
			fpmtest.Poll(b, 30*time.Second, func() (int, bool) { code, _ := httpGet("http://" + addr + "/readyz"); return code, code == 200 })
			return n, "http://" + addr
		}
	}
	modes := []struct {
		name  string
		start func(b *testing.B) (n *fpmtest.Nginx, fpmguard string)
	}{
		{"none", func(b *testing.B) (*fpmtest.Nginx, string) {
			fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{pool()}, Files: files})
			return fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second}), ""
		}},
		{"fpmguard-interval-1s", withFpmguard("", "1s")},
		{"fpmguard-interval-5s", withFpmguard("", "5s")},
		{"request_terminate_timeout", func(b *testing.B) (*fpmtest.Nginx, string) {
			fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{pool("request_terminate_timeout = " + threshold.String())}, Files: files})
			return fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second}), ""
		}},
	}
	// Another fpmguard binary (the old code), measured the same way in the
	// same run: FPMGUARD_SCENARIO_BASELINE=PATH.
	if base := os.Getenv("FPMGUARD_SCENARIO_BASELINE"); base != "" {
		modes = append(modes, []struct {
			name  string
			start func(b *testing.B) (n *fpmtest.Nginx, fpmguard string)
		}{
			{"baseline-interval-1s", withFpmguard(base, "1s")},
			{"baseline-interval-5s", withFpmguard(base, "5s")},
		}...)
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				n, fpmguard := m.start(b)
				res := scenario(n)
				b.ReportMetric(float64(res.fivexx), "nginx-5xx")
				b.ReportMetric(res.recovery.Seconds(), "recovery-s")
				b.ReportMetric(res.hungEnded.Seconds(), "hung-ended-s")
				if fpmguard != "" {
					// Four, unless nginx's fastcgi_read_timeout ended some
					// hung requests first (504, in nginx-5xx).
					kills := sigterms(b, fpmguard, res.start)
					b.ReportMetric(float64(len(kills)), "sigterms")
					if len(kills) > 0 {
						b.ReportMetric(float64((slices.MaxFunc(kills, time.Time.Compare).Sub(res.start) - threshold).Milliseconds()), "kill-late-ms")
					}
				}
			}
		})
	}
}

// scenarioResult is what the client of a scenario saw.
type scenarioResult struct {
	start     time.Time     // when the hung requests were sent
	fivexx    int           // nginx's 5xx answers, to the normal and the hung requests
	recovery  time.Duration // from start to the first normal request served again
	hungEnded time.Duration // from start to the end of the last hung request
}

// scenario hangs every worker and measures what the client sees.
func scenario(n *fpmtest.Nginx) scenarioResult {
	var mu sync.Mutex
	var res scenarioResult
	count := func(code int) {
		if code >= 500 || code == 0 {
			mu.Lock()
			res.fivexx++
			mu.Unlock()
		}
	}
	res.start = time.Now()
	ended := hang(n, 4, 20)
	var recovered time.Time
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !recovered.IsZero() && time.Since(recovered) > 2*time.Second
	}
	var wg sync.WaitGroup
	// A normal request every 100 ms, each on its own, as independent users.
	for time.Since(res.start) < 25*time.Second && !done() {
		time.Sleep(100 * time.Millisecond)
		sent := time.Now()
		wg.Go(func() {
			code := n.Get("/index.php", 15*time.Second)
			count(code)
			mu.Lock()
			defer mu.Unlock()
			if code == 200 && sent.Sub(res.start) > 200*time.Millisecond && (recovered.IsZero() || time.Now().Before(recovered)) {
				recovered = time.Now()
			}
		})
	}
	wg.Wait()
	codes, took := ended()
	for _, c := range codes {
		count(c)
	}
	mu.Lock()
	defer mu.Unlock()
	res.hungEnded = slices.Max(took)
	res.recovery = time.Since(res.start)
	if !recovered.IsZero() {
		res.recovery = recovered.Sub(res.start)
	}
	return res
}

// sigterms returns the times of the SIGTERMs fpmguard at base sent to
// workers after since, from its events.
func sigterms(b *testing.B, base string, since time.Time) []time.Time {
	b.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/events?n=1000")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Events []event.Event }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		b.Fatal(err)
	}
	var out []time.Time
	for _, e := range got.Events {
		if e.Kind == event.KindAction && strings.HasPrefix(e.Message, "SIGTERM worker") && e.Time.After(since) {
			out = append(out, e.Time)
		}
	}
	return out
}
