package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// End-to-end tests: a real nginx in front of a real php-fpm, with the
// fpmguard binary beside them, as users run it.

const (
	indexPHP = `<?php echo "ok";`
	hangPHP  = `<?php sleep((int)($_GET['s'] ?? 60)); echo "woke";`
)

// stack is nginx + php-fpm under `fpmguard run`.
type stack struct {
	fpm     *fpmtest.FPM
	nginx   *fpmtest.Nginx
	metrics string // fpmguard's base URL
}

// runStack starts php-fpm under `fpmguard run` with extra flags, then nginx
// in front of it.
func runStack(t *testing.T, pool fpmtest.Pool, readTimeout time.Duration, flags ...string) stack {
	t.Helper()
	return runStackOf(t, "", pool, readTimeout, flags...)
}

// runStackOf is runStack with php-fpm of PHP version v, owned by
// fpmguard run inside its root when it has one; nginx runs on the host.
func runStackOf(t *testing.T, v string, pool fpmtest.Pool, readTimeout time.Duration, flags ...string) stack {
	t.Helper()
	fpm := fpmtest.New(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{pool}, Files: map[string]string{"index.php": indexPHP, "hang.php": hangPHP}})
	g := newGuard(t, fpm)
	addr := freePort(t)
	// nginx's error log path is known before nginx starts: it lives in the
	// php-fpm test directory. Its directory exists, as a package makes
	// /var/log/nginx: fpmguard refuses a log path whose directory is
	// missing, and follows the file once nginx creates it.
	if err := os.MkdirAll(fpm.Dir+"/nginx", 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--web.listen-address", addr, "--opcache-dir", g.opcacheDir(t), "--nginx-error-log", g.path(fpm.Dir + "/nginx/error.log")}, flags...)
	args = append(append(args, "--"), fpm.InRootArgv()...)
	g.start(t, args...)
	if err := fpm.WaitSockets(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := stack{fpm: fpm, metrics: "http://" + addr}
	s.nginx = fpmtest.StartNginx(t, fpm, "www", fpmtest.NginxOptions{ReadTimeout: readTimeout})
	waitHTTP(t, s.metrics+"/readyz", 200)
	return s
}

// hang sends n requests that sleep through nginx and returns their statuses
// and durations when they end.
func hang(n *fpmtest.Nginx, count int, seconds int) func() ([]int, []time.Duration) {
	var wg sync.WaitGroup
	codes := make([]int, count)
	took := make([]time.Duration, count)
	for i := range count {
		wg.Go(func() {
			start := time.Now()
			codes[i] = n.Get(fmt.Sprintf("/hang.php?s=%d&token=secret", seconds), 90*time.Second)
			took[i] = time.Since(start)
		})
	}
	return func() ([]int, []time.Duration) {
		wg.Wait()
		return codes, took
	}
}

// waitBusy waits until php-fpm reports count busy workers. Without
// pm.status_listen (PHP 7.4) no status page answers then: it waits until
// a ping gets no answer within 3 s, far longer than a free worker takes
// to take it.
func waitBusy(t *testing.T, fpm *fpmtest.FPM, count int) {
	t.Helper()
	if fpm.Pools["www"].StatusSocket == "" {
		fpmtest.Poll(t, 30*time.Second, func() (error, bool) {
			_, err := fastcgi.Client{Timeout: 3 * time.Second}.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}, "/ping", "pong")
			return err, fastcgi.ClassOf(err) == fastcgi.ClassTimeout
		})
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ := runCLI(t, "check", "--no-opcache", "--pool", "unix://"+fpm.Pools["www"].Listen+",pm.status_listen="+fpm.Pools["www"].StatusSocket)
		if strings.Contains(out, fmt.Sprintf("'www_busy'=%d;", count)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers never all busy: %d %s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2EHealthyStack(t *testing.T) {
	s := runStack(t, fpmtest.Pool{MaxChildren: 2, StatusListen: true}, 0, "--interval", "200ms")
	if code := s.nginx.Get("/index.php", 5*time.Second); code != 200 {
		t.Errorf("nginx answered %d", code)
	}
	waitHTTP(t, s.metrics+"/healthz", 200)
	waitHTTP(t, s.metrics+"/readyz", 200)
}

// TestE2EHungWithoutFpmguard: four workers asleep for a minute behind
// fastcgi_read_timeout 5s: a normal request fails with 504, whatever the
// PHP version, the host's nginx reaching a pool in a root through the
// socket's host path.
func TestE2EHungWithoutFpmguard(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 4, StatusListen: fpmtest.HasStatusListen(v)}}, Files: map[string]string{"index.php": indexPHP, "hang.php": hangPHP}})
		n := fpmtest.StartNginx(t, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 5 * time.Second})
		if code := n.Get("/index.php", 30*time.Second); code != 200 {
			t.Fatalf("normal request before the hang: %d, want 200", code)
		}
		hang(n, 4, 60)
		waitBusy(t, fpm, 4)
		start := time.Now()
		if code := n.Get("/index.php", 30*time.Second); code != 504 {
			t.Errorf("normal request while every worker hangs: %d, want 504", code)
		}
		t.Logf("without fpmguard: a normal request failed with 504 after %v", time.Since(start).Round(time.Millisecond))
	})
}

// TestE2EHungWithFpmguard: with --kill-hung-after 2s, fpmguard kills the
// hung workers: the hung requests end in 502 (the kill's reset) long
// before nginx's fastcgi_read_timeout would have ended them in 504, normal
// requests succeed again, and the nginx log correlation counts the resets.
// How soon is a figure for the benchmarks (BenchmarkRecovery).
//
// PHP 7.4 has no pm.status_listen: with every worker hung no status page
// answers, and fpmguard cannot tell which worker hangs. What it has is the
// failing heartbeat: with --reload-unhealthy it reloads the wedged pool
// once the heartbeat failed --unhealthy-after times, and the reload ends
// the hung requests, before the same fastcgi_read_timeout.
func TestE2EHungWithFpmguard(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		const interval, after, grace, readTimeout = 500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 60 * time.Second
		flags := []string{"--interval", interval.String(), "--kill-hung-after", after.String(), "--kill-grace", grace.String(), "--max-kill-ratio", "1"}
		if !fpmtest.HasStatusListen(v) {
			flags = append(flags, "--timeout", "1s", "--reload-unhealthy", "--unhealthy-after", "2")
		}
		s := runStackOf(t, v, fpmtest.Pool{MaxChildren: 4, StatusListen: fpmtest.HasStatusListen(v)}, readTimeout, flags...)
		hungStart := time.Now()
		codes, took := hang(s.nginx, 4, 120)()
		t.Logf("with fpmguard: the hung requests ended %v %v", codes, took)
		for i := range codes {
			// A reload stops the workers with SIGQUIT first: a sleep()
			// returns early and the script may answer before it is
			// killed, a 200 cut short. What counts is that no hung request
			// waits for nginx's 504.
			if ended := codes[i] == 502 || (!fpmtest.HasStatusListen(v) && codes[i] == 200); !ended {
				t.Errorf("hung request %d: %d after %v, want 502: ended by fpmguard, not timed out by nginx (504 after %v)", i, codes[i], took[i], readTimeout)
			}
		}
		recovered := fpmtest.Poll(t, readTimeout/2, func() (time.Duration, bool) {
			return time.Since(hungStart), s.nginx.Get("/index.php", 10*time.Second) == 200
		})
		t.Logf("normal requests succeed again %v after the hang began", recovered.Round(time.Millisecond))
		if s.fpm.Root != "" {
			// nginx names the socket by its host path, fpmguard in the
			// root by php-fpm's: the correlation matches neither. In a pod
			// both mount the socket at one path.
			return
		}
		// The correlation counts the resets and says why.
		waitMetricMatch(t, s.metrics, `phpfpm_nginx_upstream_errors_total\{cause="reset",master="[^"]*",pool="www",status="502"\} 4$`)
		events := waitHTTP(t, s.metrics+"/events", 200)
		for !strings.Contains(events, "× 502 upstream closed the connection early on unix://"+s.fpm.Pools["www"].Listen) {
			if time.Since(hungStart) > 30*time.Second {
				t.Fatalf("no nginx correlation event:\n%s", events)
			}
			time.Sleep(200 * time.Millisecond)
			events = waitHTTP(t, s.metrics+"/events", 200)
		}
		if strings.Contains(events, "secret") {
			t.Error("a query string reached the events")
		}
	})
}

// waitMetricMatch waits until a line of /metrics matches pattern.
func waitMetricMatch(t *testing.T, base, pattern string) string {
	t.Helper()
	re := regexp.MustCompile("(?m)^" + pattern)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := httpGet(base + "/metrics")
		if re.MatchString(body) {
			return body
		}
		if time.Now().After(deadline) {
			var ours []string
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "phpfpm_nginx") || strings.HasPrefix(l, "phpfpm_socket") {
					ours = append(ours, l)
				}
			}
			t.Fatalf("/metrics never matched %q; it shows:\n%s", pattern, strings.Join(ours, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestE2EMasterKilled: SIGKILL to the master under run; nginx serves 200
// again after the restart. The test measures how long it takes and how many
// requests failed meanwhile.
func TestE2EMasterKilled(t *testing.T) {
	s := runStack(t, fpmtest.Pool{MaxChildren: 2, StatusListen: true}, 5*time.Second, "--interval", "200ms")
	_, body := httpGet(s.metrics + "/status")
	master := masterPID(t, body)

	var mu sync.Mutex
	var codes []int
	var firstFail, back time.Time
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			code := s.nginx.Get("/index.php", 5*time.Second)
			now := time.Now()
			mu.Lock()
			codes = append(codes, code)
			if code != 200 && firstFail.IsZero() {
				firstFail = now
			}
			if code == 200 && !firstFail.IsZero() && back.IsZero() {
				back = now
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	killed := time.Now()
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until nginx serves again after a failure, or, if the restart was so
	// quick that no request failed, until the new master serves one.
	fpmtest.Poll(t, 60*time.Second, func() (bool, bool) {
		mu.Lock()
		failed, served, last := !firstFail.IsZero(), !back.IsZero(), 0
		if len(codes) > 0 {
			last = codes[len(codes)-1]
		}
		mu.Unlock()
		if failed {
			return served, served
		}
		return false, last == 200 && newMaster(s.metrics, master)
	})
	close(stop)
	<-done
	failures := map[int]int{}
	for _, c := range codes {
		if c != 200 {
			failures[c]++
		}
	}
	recovery := time.Duration(0)
	if !back.IsZero() {
		recovery = back.Sub(killed)
	}
	t.Logf("master SIGKILLed: nginx served 200 again %v later; non-200 answers meanwhile: %v of %d requests", recovery.Round(time.Millisecond), failures, len(codes))
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) { return true, newMaster(s.metrics, master) })
}

// newMaster reports whether fpmguard's /status at base names a master
// other than old.
func newMaster(base string, old int) bool {
	_, body := httpGet(base + "/status")
	i := strings.Index(body, `"master": {`)
	var pid int
	if i >= 0 {
		_, _ = fmt.Sscanf(body[i:], "\"master\": {\n        \"pid\": %d", &pid)
	}
	return pid != 0 && pid != old
}

func masterPID(t *testing.T, statusJSON string) int {
	t.Helper()
	i := strings.Index(statusJSON, `"master": {`)
	if i < 0 {
		t.Fatalf("no master in /status: %s", statusJSON)
	}
	var pid int
	if _, err := fmt.Sscanf(statusJSON[i:], "\"master\": {\n        \"pid\": %d", &pid); err != nil {
		t.Fatalf("reading the master pid: %v in %s", err, statusJSON[i:i+80])
	}
	return pid
}

// TestE2ESaturation: more concurrent slow requests than workers plus
// backlog. The socket listen queue and nginx's 502s from EAGAIN show in the
// metrics and the events.
func TestE2ESaturation(t *testing.T) {
	s := runStack(t, fpmtest.Pool{MaxChildren: 1, StatusListen: true, Extra: []string{"listen.backlog = 2"}}, 30*time.Second, "--interval", "200ms")
	ended := hang(s.nginx, 8, 3)
	defer ended()
	// One request runs, the backlog holds the next few, nginx gets EAGAIN
	// for the rest.
	for _, q := range []string{"1", "2", "3"} {
		if _, body := httpGet(s.metrics + "/metrics"); regexp.MustCompile(`(?m)^phpfpm_socket_listen_queue\{master="[^"]*",pool="www"\} ` + q + `$`).MatchString(body) {
			t.Logf("socket listen queue %s", q)
		}
	}
	waitMetricMatch(t, s.metrics, `phpfpm_socket_listen_queue\{master="[^"]*",pool="www"\} [1-9]`)
	waitMetricMatch(t, s.metrics, `phpfpm_nginx_upstream_errors_total\{cause="backlog",master="[^"]*",pool="www",status="502"\} [1-9]`)
	events := waitHTTP(t, s.metrics+"/events", 200)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(events, "listen backlog full (EAGAIN)") || !strings.Contains(events, "wait in the listen queue") {
		if time.Now().After(deadline) {
			t.Fatalf("events lack the saturation:\n%s", events)
		}
		time.Sleep(200 * time.Millisecond)
		events = waitHTTP(t, s.metrics+"/events", 200)
	}
}
