package fpmlog

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// The tests in this file kill real php-fpm workers in each way and follow
// the real master's error log.

// deathsSeen collects what a follower reports.
type deathsSeen struct {
	mu     sync.Mutex
	deaths []Death
	lines  []Line
}

func (s *deathsSeen) death(d Death) { s.mu.Lock(); s.deaths = append(s.deaths, d); s.mu.Unlock() }
func (s *deathsSeen) line(l Line)   { s.mu.Lock(); s.lines = append(s.lines, l); s.mu.Unlock() }

// of returns the death of pid, once reported.
func (s *deathsSeen) of(pid int) (Death, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deaths {
		if d.PID == pid {
			return d, true
		}
	}
	return Death{}, false
}

// first returns the first death reported, once there is one.
func (s *deathsSeen) first() (Death, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deaths) == 0 {
		return Death{}, false
	}
	return s.deaths[0], true
}

func (s *deathsSeen) sawLine(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if l.PID == pid {
			return true
		}
	}
	return false
}

// follow follows f's error log until the test ends, and waits until it
// reads: it starts at the end of the file. The master's own memory cgroup
// is watched, as fpmguard would.
func follow(t *testing.T, f *fpmtest.FPM, c *Classifier) (*Follower, *deathsSeen) {
	t.Helper()
	if err := c.WatchCgroupOf(f.MasterPID()); err != nil {
		t.Fatal(err)
	}
	seen := &deathsSeen{}
	fl := NewFollower(filepath.Join(f.Dir, "error.log"), c)
	fl.Master = f.MasterPID()
	fl.OnDeath, fl.OnLine = seen.death, seen.line
	fl.tail.Poll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// A line of the master's kind, about no process, until it is read.
	log, err := os.OpenFile(filepath.Join(f.Dir, "error.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) {
		if _, err := log.WriteString("[05-Dec-2026 01:55:55] NOTICE: child 999999999 stopped for tracing\n"); err != nil {
			t.Fatal(err)
		}
		return seen.sawLine(999999999), seen.sawLine(999999999)
	})
	return fl, seen
}

func deathOf(t *testing.T, seen *deathsSeen, f *fpmtest.FPM, pid int) Death {
	t.Helper()
	d := fpmtest.Poll(t, 60*time.Second, func() (Death, bool) { return seen.of(pid) })
	if d.Pool != "www" || d.Time.IsZero() {
		t.Errorf("%+v: want pool www and a time\n%s", d, f.Log())
	}
	return d
}

// background sends a request that ends with the test, and returns a
// channel that gets its error.
func background(t *testing.T, f *fpmtest.FPM, script, query string) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- f.Request(ctx, script, query) }()
	t.Cleanup(cancel)
	return errs
}

func running(t *testing.T, f *fpmtest.FPM, script string) int {
	t.Helper()
	return f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.HasSuffix(p.Script, "/"+script)
	})
}

func pool(extra ...string) fpmtest.Options {
	return fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true, Extra: extra}},
		Files: map[string]string{
			"sleep.php":   fpmtest.SleepPHP,
			"segv.php":    `<?php function f($x){ return array_map('f', [$x]); } f(1);`,
			"memory.php":  `<?php $s = str_repeat("x", 400 << 20); echo strlen($s);`,
			"imitate.php": `<?php file_put_contents("php://stderr", "[05-Dec-2026 01:55:57] WARNING: [pool www] child " . getmypid() . " exited on signal 9 (SIGKILL) after 1.000000 seconds from start\n"); echo "ok";`,
		},
		Defines: map[string]string{"max_execution_time": "0", "memory_limit": "-1"},
	}
}

// TestRealKilledMidRequest: a worker SIGKILLed by another process while it
// serves a request is a failure, killed by SIGKILL, and the client saw its
// connection end.
func TestRealKilledMidRequest(t *testing.T) {
	f := fpmtest.Start(t, pool())
	fl, seen := follow(t, f, NewClassifier())
	errs := background(t, f, "sleep.php", "ms=600000")
	pid := running(t, f, "sleep.php")
	if out, err := exec.Command("kill", "-KILL", strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	d := deathOf(t, seen, f, pid)
	if d.Cause != CauseKilled || d.Signal != "SIGKILL" || !d.Failure() || d.ExitCode != -1 {
		t.Errorf("%+v: want killed by SIGKILL, a failure", d)
	}
	if err := <-errs; err == nil {
		t.Error("the request of a killed worker succeeded")
	}
	if n := fl.Counts()[Key{Pool: "www", Cause: CauseKilled}]; n != 1 {
		t.Errorf("counts %v", fl.Counts())
	}
}

// TestRealFpmguardKill: a worker fpmguard said it signalled is fpmguard's
// kill, not someone else's.
func TestRealFpmguardKill(t *testing.T) {
	f := fpmtest.Start(t, pool())
	c := NewClassifier()
	_, seen := follow(t, f, c)
	background(t, f, "sleep.php", "ms=600000")
	pid := running(t, f, "sleep.php")
	c.Signalled(pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if d := deathOf(t, seen, f, pid); d.Cause != CauseFpmguardKill || d.Signal != "SIGTERM" {
		t.Errorf("%+v: want fpmguard's kill by SIGTERM", d)
	}
}

// TestRealOOMKill: a worker in a memory cgroup of 64 MiB asked for 400 MiB
// is killed by the kernel's OOM killer: a SIGKILL in php-fpm's log, an OOM
// kill by the cgroup's count.
func TestRealOOMKill(t *testing.T) {
	f := fpmtest.Start(t, pool())
	c := NewClassifier()
	_, seen := follow(t, f, c)
	g, err := fpmtest.MemoryLimit(t, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Both workers: whichever takes the request is in the group.
	for _, pid := range f.WorkerPIDs("www") {
		if err := g.Add(pid); err != nil {
			t.Fatal(err)
		}
		if err := c.WatchCgroupOf(pid); err != nil {
			t.Fatal(err)
		}
	}
	errs := background(t, f, "memory.php", "")
	if err := <-errs; err == nil {
		t.Fatal("a request for 400 MiB in 64 MiB succeeded")
	}
	d := fpmtest.Poll(t, 60*time.Second, seen.first)
	if d.Cause != CauseOOMKill || d.Signal != "SIGKILL" || d.LimitBytes != 64<<20 || d.Cgroup != g.Dir || !d.Failure() {
		t.Errorf("%+v: want an OOM kill in %s, limit 64 MiB\n%s", d, g.Dir, f.Log())
	}
	if !strings.Contains(d.String(), "was OOM-killed (cgroup limit 64.0MiB)") {
		t.Errorf("%q", d.String())
	}
}

// TestRealSegfault: recursion through an internal function crashes the
// worker with SIGSEGV.
func TestRealSegfault(t *testing.T) {
	f := fpmtest.Start(t, pool())
	_, seen := follow(t, f, NewClassifier())
	background(t, f, "segv.php", "")
	d := fpmtest.Poll(t, 60*time.Second, seen.first)
	if d.Cause != CauseCrash || d.Signal != "SIGSEGV" || !d.Failure() {
		t.Errorf("%+v: want a crash on SIGSEGV", d)
	}
}

// TestRealTerminateTimeout: php-fpm's own SIGTERM at
// request_terminate_timeout names the request it ended, without its query.
func TestRealTerminateTimeout(t *testing.T) {
	f := fpmtest.Start(t, pool("request_terminate_timeout = 1s"))
	_, seen := follow(t, f, NewClassifier())
	background(t, f, "sleep.php", "ms=600000&token=secret")
	pid := running(t, f, "sleep.php")
	d := deathOf(t, seen, f, pid)
	if d.Cause != CauseTerminateTimeout || d.Request != "GET /sleep.php" || !strings.HasSuffix(d.Script, "/sleep.php") {
		t.Errorf("%+v: want php-fpm's timeout of GET /sleep.php", d)
	}
}

// TestRealMaxRequests: a worker recycled by pm.max_requests is counted,
// never as a failure.
func TestRealMaxRequests(t *testing.T) {
	f := fpmtest.Start(t, pool("pm.max_requests = 2"))
	fl, seen := follow(t, f, NewClassifier())
	first := f.WorkerPIDs("www")
	for range 6 {
		if err := f.Request(context.Background(), "sleep.php", "ms=1"); err != nil {
			t.Fatal(err)
		}
	}
	// Six requests to two workers of two requests each: at least one of
	// the first two was recycled.
	d := fpmtest.Poll(t, 60*time.Second, func() (Death, bool) {
		for _, pid := range first {
			if d, ok := seen.of(pid); ok {
				return d, true
			}
		}
		return Death{}, false
	})
	if d.Cause != CauseMaxRequests || d.Failure() || d.ExitCode != 0 {
		t.Errorf("%+v: want pm.max_requests recycling, no failure", d)
	}
	for k, n := range fl.Counts() {
		if k.Cause.Failure() {
			t.Errorf("%d failures counted: %v", n, fl.Counts())
		}
	}
}

// TestRealIdle: an ondemand pool's idle worker retired by
// pm.process_idle_timeout is counted as idle, never as a failure. php-fpm
// logs it at log_level debug only.
func TestRealIdle(t *testing.T) {
	f := fpmtest.New(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{PM: "ondemand", MaxChildren: 1, Extra: []string{"pm.process_idle_timeout = 1s"}}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	conf, err := os.ReadFile(f.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Conf, []byte(strings.Replace(string(conf), "log_level = notice", "log_level = debug", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.Start(t)
	fl, seen := follow(t, f, NewClassifier())
	if err := f.Request(context.Background(), "sleep.php", "ms=1"); err != nil {
		t.Fatal(err)
	}
	d := fpmtest.Poll(t, 60*time.Second, seen.first)
	if d.Cause != CauseIdle || d.Failure() {
		t.Errorf("%+v: want an idle worker retired, no failure", d)
	}
	if n := fl.Counts()[Key{Pool: "www", Cause: CauseIdle}]; n != 1 {
		t.Errorf("counts %v", fl.Counts())
	}
}

// TestRealWorkerImitatesMaster: with decorate_workers_output = no, a
// worker's stderr goes into the master's log as it is written; a worker
// writing an exit line about itself, alive, is dropped and counted.
func TestRealWorkerImitatesMaster(t *testing.T) {
	f := fpmtest.Start(t, pool("decorate_workers_output = no"))
	fl, seen := follow(t, f, NewClassifier())
	if err := f.Request(context.Background(), "imitate.php", ""); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 60*time.Second, func() (uint64, bool) { return fl.Forged(), fl.Forged() == 1 })
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if len(fl.Counts()) != 0 || len(seen.deaths) != 0 {
		t.Errorf("a worker's imitation counted: %v", fl.Counts())
	}
}
