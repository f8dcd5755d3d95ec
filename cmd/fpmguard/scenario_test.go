package main

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// BenchmarkRecovery is the end-to-end scenario of `make bench`, through a
// real nginx: four workers, four requests that hang for 20 s, and a client
// sending a normal request every 100 ms. It reports the nginx 5xx answers
// and the seconds from the hang to the first normal request served again:
//   - none: nothing acts (nginx's fastcgi_read_timeout is 10 s);
//   - fpmguard: fpmguard run --kill-hung-after 3s;
//   - request_terminate_timeout: php-fpm's own kill at the same 3 s.
//
// It takes about a minute, so it runs only with FPMGUARD_SCENARIO=1.
func BenchmarkRecovery(b *testing.B) {
	if os.Getenv("FPMGUARD_SCENARIO") == "" {
		b.Skip("set FPMGUARD_SCENARIO=1 (make bench does) to run the nginx scenario")
	}
	const threshold = "3s"
	pool := func(extra ...string) fpmtest.Pool {
		return fpmtest.Pool{MaxChildren: 4, StatusListen: true, Extra: extra}
	}
	files := map[string]string{"index.php": indexPHP, "hang.php": hangPHP}
	modes := []struct {
		name  string
		start func(b *testing.B) *fpmtest.Nginx
	}{
		{"none", func(b *testing.B) *fpmtest.Nginx {
			fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{pool()}, Files: files})
			return fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second})
		}},
		{"fpmguard", func(b *testing.B) *fpmtest.Nginx {
			fpm := fpmtest.New(b, fpmtest.Options{Pools: []fpmtest.Pool{pool()}, Files: files})
			args := append([]string{"run", "--web.listen-address", freePort(b), "--opcache-dir", opcacheDir(b), "--kill-hung-after", threshold, "--"}, fpm.Argv()...)
			startBinary(b, args...)
			if err := fpm.WaitSockets(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			return fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second})
		}},
		{"request_terminate_timeout", func(b *testing.B) *fpmtest.Nginx {
			fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{pool("request_terminate_timeout = " + threshold)}, Files: files})
			return fpmtest.StartNginx(b, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second})
		}},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				n := m.start(b)
				fivexx, recovery := scenario(n)
				b.ReportMetric(float64(fivexx), "nginx-5xx")
				b.ReportMetric(recovery.Seconds(), "recovery-s")
			}
		})
	}
}

// scenario hangs every worker and measures what the client sees.
func scenario(n *fpmtest.Nginx) (fivexx int, recovery time.Duration) {
	var mu sync.Mutex
	count := func(code int) {
		if code >= 500 || code == 0 {
			mu.Lock()
			fivexx++
			mu.Unlock()
		}
	}
	start := time.Now()
	ended := hang(n, 4, 20)
	var recovered time.Time
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !recovered.IsZero() && time.Since(recovered) > 2*time.Second
	}
	var wg sync.WaitGroup
	// A normal request every 100 ms, each on its own, as independent users.
	for time.Since(start) < 25*time.Second && !done() {
		time.Sleep(100 * time.Millisecond)
		sent := time.Now()
		wg.Go(func() {
			code := n.Get("/index.php", 15*time.Second)
			count(code)
			mu.Lock()
			defer mu.Unlock()
			if code == 200 && sent.Sub(start) > 200*time.Millisecond && (recovered.IsZero() || time.Now().Before(recovered)) {
				recovered = time.Now()
			}
		})
	}
	wg.Wait()
	codes, _ := ended()
	for _, c := range codes {
		count(c)
	}
	mu.Lock()
	defer mu.Unlock()
	if recovered.IsZero() {
		return fivexx, time.Since(start)
	}
	return fivexx, recovered.Sub(start)
}
