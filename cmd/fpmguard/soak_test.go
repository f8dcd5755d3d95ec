package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

const (
	crashPHP = `<?php echo "bye"; flush(); exit(1);`
	// killPHP ends its own worker mid-request, as a segfault would.
	killPHP = `<?php posix_kill(getmypid(), 9);`
)

// TestSoak is the chaos soak (make soak; SOAK=60s sets the length; make
// test runs 60 s). fpmguard run owns php-fpm behind nginx with hung-worker
// killing on, under a steady load of normal requests mixed with hangs,
// spins, worker crashes, SIGSTOPped idle workers and one master SIGKILL.
// It fails on any wrong action (an idle or foreign process signalled) and
// on fpmguard's resources growing.
func TestSoak(t *testing.T) {
	length, err := time.ParseDuration(os.Getenv("SOAK"))
	if err != nil || length <= 0 {
		t.Skip("set SOAK=60s (make soak, make test) to run the chaos soak")
	}
	fpm := fpmtest.New(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 6, StatusListen: true, Slowlog: true}},
		Files: map[string]string{"index.php": indexPHP, "hang.php": hangPHP, "spin.php": fpmtest.SpinPHP, "crash.php": crashPHP, "kill.php": killPHP},
	})
	addr := freePort(t)
	// nginx creates its log later, in a directory that exists (runStack).
	if err := os.MkdirAll(fpm.Dir+"/nginx", 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--web.listen-address", addr, "--opcache-dir", opcacheDir(t), "--interval", "500ms",
		"--kill-hung-after", "3s", "--kill-grace", "2s", "--action-budget", "1000", "--nginx-error-log", fpm.Dir + "/nginx/error.log", "--"}, fpm.Argv()...)
	guard, _ := startBinary(t, args...)
	if err := fpm.WaitSockets(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	n := fpmtest.StartNginx(t, fpm, "www", fpmtest.NginxOptions{ReadTimeout: 10 * time.Second})
	base := "http://" + addr
	waitHTTP(t, base+"/readyz", 200)

	// A stranger: a process of the same test that must never be signalled.
	stranger := exec.Command("sleep", "3600")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })

	before := resources(t, guard.Process.Pid, base)
	var (
		mu      sync.Mutex
		codes   = map[int]int{}
		sent    int
		workers = map[int]bool{}         // every php-fpm worker pid seen
		stopped = map[int][2]time.Time{} // idle workers we SIGSTOPped: from, to
		chaos   = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Steady load: four users asking for a normal page.
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code := n.Get("/index.php", 15*time.Second)
				mu.Lock()
				sent++
				codes[code]++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	// Watch which pids are php-fpm workers, independently of fpmguard.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			_, body := httpGet(base + "/status")
			var rep supervisor.Report
			if json.Unmarshal([]byte(body), &rep) != nil || len(rep.Pools) == 0 || rep.Pools[0].Master == nil {
				continue
			}
			for _, pid := range fpmtest.ChildrenTitled(rep.Pools[0].Master.PID, "php-fpm: pool www") {
				mu.Lock()
				workers[pid] = true
				mu.Unlock()
			}
		}
	})
	// Chaos, on a fixed seed so that a failure can be replayed.
	rng := rand.New(rand.NewPCG(7, 7))
	start := time.Now()
	masterKilled := false
	var background sync.WaitGroup
	for time.Since(start) < length {
		time.Sleep(time.Duration(800+rng.IntN(800)) * time.Millisecond)
		if !masterKilled && time.Since(start) > length/2 {
			masterKilled = true
			if pid := currentMaster(t, base); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				chaos["master SIGKILL"]++
			}
			continue
		}
		switch rng.IntN(5) {
		case 0:
			chaos["hang"]++
			background.Go(func() { count(&mu, codes, &sent, n.Get("/hang.php?s=30", 40*time.Second)) })
		case 1:
			chaos["spin"]++
			background.Go(func() { count(&mu, codes, &sent, n.Get("/spin.php?s=30", 40*time.Second)) })
		case 2:
			chaos["crash (exit)"]++
			count(&mu, codes, &sent, n.Get("/crash.php", 10*time.Second))
		case 3:
			chaos["crash (SIGKILL itself)"]++
			count(&mu, codes, &sent, n.Get("/kill.php", 10*time.Second))
		case 4:
			pid := idleWorker(fpm)
			from := time.Now()
			mu.Lock()
			// php-fpm calls a stopped idle worker idle too: stopping it
			// again would take its earlier SIGCONT for this one's.
			again := from.Before(stopped[pid][1].Add(time.Second))
			mu.Unlock()
			if pid <= 0 || again || syscall.Kill(pid, syscall.SIGSTOP) != nil {
				continue
			}
			// The worker may have taken a request between the read and
			// the stop, the more likely the slower the machine: only one
			// that php-fpm still calls idle once it is stopped, when it
			// can no longer change its state, counts as stopped while idle.
			if !stillIdle(fpm, pid) {
				_ = syscall.Kill(pid, syscall.SIGCONT)
				chaos["SIGSTOP undone: busy by then"]++
				continue
			}
			chaos["SIGSTOP idle worker"]++
			mu.Lock()
			stopped[pid] = [2]time.Time{from, time.Now().Add(4 * time.Second)}
			mu.Unlock()
			time.AfterFunc(4*time.Second, func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		}
	}
	close(stop)
	wg.Wait()
	background.Wait()
	// Let the last kills and restarts settle, then measure again.
	waitHTTP(t, base+"/readyz", 200)
	after := resources(t, guard.Process.Pid, base)

	// Every action fpmguard took, checked against what the test knows.
	body := waitHTTP(t, base+"/events?n=1000", 200) // retried, unlike httpGet
	var evs struct {
		Events []event.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	var wrong []string
	mu.Lock()
	for _, e := range evs.Events {
		if e.Kind != event.KindAction {
			continue
		}
		kind := strings.Fields(e.Message)[0]
		actions[kind]++
		// A worker stopped while idle may serve a hang once continued, and
		// then be killed rightly: only a kill while it was stopped is wrong.
		w, wasStopped := stopped[e.PID]
		switch {
		case e.PID == stranger.Process.Pid || !workers[e.PID]:
			wrong = append(wrong, "foreign: "+e.Message)
		case wasStopped && !e.Time.Before(w[0]) && e.Time.Before(w[1].Add(time.Second)):
			wrong = append(wrong, "idle (stopped while idle): "+e.Message)
		case kind == "SIGTERM" && (e.Worker == nil || e.Worker.State == "Idle" || (e.Worker.URI != "/hang.php" && e.Worker.URI != "/spin.php")):
			wrong = append(wrong, "not hung: "+e.Message)
		}
	}
	mu.Unlock()
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		wrong = append(wrong, "the stranger process was killed")
	}
	_, metrics := httpGet(base + "/metrics")
	causes := map[string]int{}
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, "phpfpm_nginx_upstream_errors_total{"); ok {
			v, _ := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			causes[rest[:strings.IndexByte(rest, '}')]] = int(v)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "soak of %s\n", length)
	fmt.Fprintf(&b, "  requests sent: %d; answers: %s\n", sent, formatCounts(codes))
	fmt.Fprintf(&b, "  chaos: %s\n", formatCounts(chaos))
	fmt.Fprintf(&b, "  nginx 5xx by cause (error log): %s\n", formatCounts(causes))
	fmt.Fprintf(&b, "  actions taken: %s; wrong actions: %d\n", formatCounts(actions), len(wrong))
	fmt.Fprintf(&b, "  fpmguard at start: RSS %.1f MiB, %d goroutines, %d fds\n", before.rss, before.goroutines, before.fds)
	fmt.Fprintf(&b, "  fpmguard at end:   RSS %.1f MiB, %d goroutines, %d fds\n", after.rss, after.goroutines, after.fds)
	t.Log("\n" + b.String())
	for _, w := range wrong {
		t.Errorf("wrong action: %s", w)
	}
	if actions["SIGTERM"] == 0 {
		t.Error("no hung worker was killed: the soak did not exercise the actions")
	}
	if after.fds > before.fds+2 || after.goroutines > before.goroutines+10 || after.rss > before.rss+10 {
		t.Errorf("fpmguard's resources grew: %+v -> %+v", before, after)
	}
}

type usage struct {
	rss        float64 // MiB
	goroutines int
	fds        int
}

// resources reads fpmguard's RSS and open fds from /proc, and its
// goroutines from its own metrics.
func resources(t *testing.T, pid int, base string) usage {
	t.Helper()
	var u usage
	u.rss = vmRSS(t, pid) / (1 << 20)
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	u.fds = len(fds)
	// waitHTTP retries: a scrape slower than httpGet's timeout on a loaded
	// runner must not read as 0 goroutines, which would pass for growth.
	metrics := waitHTTP(t, base+"/metrics", 200)
	u.goroutines = -1
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			u.goroutines, _ = strconv.Atoi(rest)
		}
	}
	if u.goroutines < 0 {
		t.Fatalf("no go_goroutines in fpmguard's /metrics")
	}
	return u
}

func count(mu *sync.Mutex, codes map[int]int, sent *int, code int) {
	mu.Lock()
	defer mu.Unlock()
	*sent++
	codes[code]++
}

func currentMaster(t *testing.T, base string) int {
	_, body := httpGet(base + "/status")
	var rep supervisor.Report
	if json.Unmarshal([]byte(body), &rep) != nil || len(rep.Pools) == 0 || rep.Pools[0].Master == nil {
		return 0
	}
	return rep.Pools[0].Master.PID
}

// stillIdle waits until the SIGSTOPped pid is stopped, then reports whether
// php-fpm calls it idle: a stopped worker cannot change what its status
// page entry says.
func stillIdle(fpm *fpmtest.FPM, pid int) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return false // gone
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			break
		}
		if time.Now().After(deadline) {
			return false
		}
	}
	st, err := fastcgi.Client{Timeout: 10 * time.Second}.Status(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}, "/status")
	if err != nil {
		return false
	}
	for _, p := range st.Processes {
		if p.PID == pid {
			return p.Idle()
		}
	}
	return false
}

// idleWorker picks a worker php-fpm calls idle.
func idleWorker(fpm *fpmtest.FPM) int {
	st, err := fastcgi.Client{Timeout: time.Second}.Status(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}, "/status")
	if err != nil {
		return 0
	}
	for _, p := range st.Processes {
		if p.Idle() {
			return p.PID
		}
	}
	return 0
}

func formatCounts[K comparable](m map[K]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%v: %d", k, v))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
