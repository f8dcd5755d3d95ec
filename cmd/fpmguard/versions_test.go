package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// The version matrix: the integration families run against a php-fpm of
// each version of fpmtest.Versions. fpmguard runs beside php-fpm as it
// does in the field. For the host's 8.2 it runs on the host, in-process
// for the one-shot commands. For a version in a root of its own it runs
// inside that root, with a /proc of its own (fpmtest.FPM.Command): in the
// same container as php-fpm, as its entrypoint (run) or beside it, and it
// is given paths as php-fpm sees them (guard.path). fpmguard on the host
// watching a master in another root is discovery's case, tested in
// supervisor (TestDiscoverRunningMaster): named by flags, a master in
// another root is out of the host's reach, and discovery with no flags
// would probe every other test's php-fpm on the machine.

// guard runs fpmguard beside the php-fpm f.
type guard struct {
	f   *fpmtest.FPM
	bin string // the binary as the root sees it; "" on the host
}

// newGuard places the fpmguard binary in f's root when f runs in one.
func newGuard(t *testing.T, f *fpmtest.FPM) *guard {
	t.Helper()
	g := &guard{f: f}
	if f.Root == "" {
		return g
	}
	// Static, as make build builds it: the root's libc is not the host's.
	bin := filepath.Join(f.Dir, "fpmguard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g.bin = f.InRoot(bin)
	return g
}

// path is a host path of f's directory as fpmguard sees it.
func (g *guard) path(host string) string { return g.f.InRoot(host) }

// opcacheDir is a directory for fpmguard's opcache script, as fpmguard
// sees it: inside the root when fpmguard runs there, never the root's own
// /var/lib/fpmguard (the root is a cache shared by every test).
func (g *guard) opcacheDir(t *testing.T) string {
	t.Helper()
	if g.bin == "" {
		return opcacheDir(t)
	}
	return g.path(filepath.Join(g.f.Dir, "fpmguard-opcache"))
}

// run runs a one-shot command and returns its exit code and output.
func (g *guard) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if g.bin == "" {
		return runCLI(t, args...)
	}
	cmd := g.f.Command(g.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running fpmguard in %s: %v", g.f.Root, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// start starts a command that runs until stopped (serve, run) and stops it
// with SIGTERM at the end of the test, unless the test did.
func (g *guard) start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	if g.bin == "" {
		return startBinary(t, args...)
	}
	return startCommand(t, g.f.Command(g.bin, args...))
}

// startCommand starts fpmguard's cmd and stops it with SIGTERM at the end
// of the test, unless the test did.
func startCommand(t testing.TB, cmd *exec.Cmd) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("fpmguard output:\n%s", out.String())
		}
	})
	return cmd, &out
}

// stopRun sends SIGTERM to fpmguard run, which must end with php-fpm's exit
// status 0 and leave none of pids, php-fpm's processes, running.
func stopRun(t *testing.T, cmd *exec.Cmd, pids []int) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("run after SIGTERM: %v, want php-fpm's exit status 0", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d of php-fpm is left", pid)
		}
	}
}

// hangWorkers sends n requests that sleep a minute to pool www and waits
// until every one runs in a worker.
func hangWorkers(t *testing.T, f *fpmtest.FPM, n int) {
	t.Helper()
	f.Background(t, n, "sleep.php", "ms=60000")
	waitBusy(t, f, n)
}

// TestAllHung: every worker hung. With pm.status_listen (PHP 8.0 and
// later) status names each hung worker and its request; without it (7.4)
// no status page answers, and the failing heartbeat is all there is: the
// pool is UNHEALTHY, with no worker table. check is CRITICAL either way.
func TestAllHung(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}},
			Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		g := newGuard(t, f)
		hangWorkers(t, f, 2)
		flags := []string{"--fpm-config", g.path(f.Conf), "--hung-after", "1s", "--timeout", "1s", "--no-opcache"}
		out := fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			_, out, _ := g.run(t, append([]string{"status"}, flags...)...)
			return out, strings.Contains(out, "UNHEALTHY") && (!fpmtest.HasStatusListen(v) || strings.Count(out, "has run GET /sleep.php") == 2)
		})
		t.Logf("PHP %s, every worker hung, status:\n%s", f.PHPVersion, out)
		if !strings.Contains(out, "heartbeat failed (nginx would answer 504)") {
			t.Errorf("status does not say the heartbeat failed:\n%s", out)
		}
		if !fpmtest.HasStatusListen(v) && !strings.Contains(out, "cannot see the workers") {
			t.Errorf("status does not say the workers cannot be seen:\n%s", out)
		}
		code, out, _ := g.run(t, append([]string{"check"}, flags...)...)
		if code != supervisor.CheckCritical || !strings.HasPrefix(out, "FPMGUARD CRITICAL - www ") {
			t.Errorf("check: exit %d %q, want CRITICAL", code, out)
		}
	})
}

// TestServeKillsAndReloads: under serve, a hung worker of each version is
// killed (on 7.4 a spare worker answers the status page that names it),
// and a wedged pool, every worker stopped so that nothing answers and
// nothing is hung to kill, is reloaded.
func TestServeKillsAndReloads(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		t.Run("kill", func(t *testing.T) {
			f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: fpmtest.HasStatusListen(v)}},
				Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
			g := newGuard(t, f)
			f.Background(t, 1, "sleep.php", "ms=60000")
			pid := f.WaitWorker(t, "www", fpmtest.Running)
			addr := freePort(t)
			g.start(t, "serve", "--fpm-config", g.path(f.Conf), "--web.listen-address", addr, "--interval", "500ms", "--kill-hung-after", "2s", "--no-opcache")
			events := fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
				_, body := httpGet("http://" + addr + "/events")
				return body, strings.Contains(body, fmt.Sprintf("SIGTERM worker %d of pool www (blocked): GET /sleep.php", pid))
			})
			if strings.Contains(events, "ms=60000") {
				t.Errorf("the query string reached the events:\n%s", events)
			}
			fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
				w := f.WorkerPIDs("www")
				return w, len(w) == 3 && !slices.Contains(w, pid)
			})
		})
		t.Run("reload", func(t *testing.T) {
			f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}}})
			g := newGuard(t, f)
			stopped := f.WorkerPIDs("www")
			for _, pid := range stopped {
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for _, pid := range stopped {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
			})
			addr := freePort(t)
			g.start(t, "serve", "--fpm-config", g.path(f.Conf), "--web.listen-address", addr, "--interval", "500ms", "--timeout", "1s",
				"--kill-hung-after", "2s", "--reload-unhealthy", "--unhealthy-after", "2", "--no-opcache")
			fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
				_, body := httpGet("http://" + addr + "/events")
				return body, strings.Contains(body, fmt.Sprintf("SIGUSR2 master %d of pool www: graceful reload", f.MasterPID()))
			})
			// The reload replaced the stopped workers: the pool answers.
			fpmtest.Poll(t, 60*time.Second, func() (error, bool) {
				_, err := fastcgi.Client{Timeout: 5 * time.Second}.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen}, "/ping", "pong")
				return err, err == nil
			})
		})
	})
}

// TestMetricsByVersion compares the series of /metrics for a php-fpm of
// each version with a golden file per version (go test -update rewrites
// them): which series there are, with which labels, and the values a
// version decides. 7.4 has no pm.status_listen, so its status page is
// read through the pool's own socket (scrape_uri); PHP 8.4 gives opcache
// a JIT buffer by default.
func TestMetricsByVersion(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}}})
		g := newGuard(t, f)
		addr := freePort(t)
		g.start(t, "serve", "--fpm-config", g.path(f.Conf), "--web.listen-address", addr, "--interval", "200ms", "--opcache-dir", g.opcacheDir(t))
		body := fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			_, body := httpGet("http://" + addr + "/metrics")
			return body, strings.Contains(body, "phpfpm_opcache_up{") && strings.Contains(body, "phpfpm_process_state{")
		})
		fpmtest.Golden(t, "versions/metrics-"+v+".txt", metricsShape(body, g.path(f.Dir)), *update)
	})
}

// versionValues are the series whose value a version decides; other
// values change from scrape to scrape and are left out.
var versionValues = map[string]bool{
	"phpfpm_up": true, "phpfpm_heartbeat_up": true, "phpfpm_master_up": true, "phpfpm_max_children": true,
	"phpfpm_opcache_up": true, "phpfpm_opcache_enabled": true, "phpfpm_total_processes": true,
}

// metricsShape reduces a /metrics page to its phpfpm_ series: the test's
// directory dir masked in label values, the state of each worker left out
// (a probe may be running in one at the scrape), values kept for
// versionValues, and the JIT buffer told apart only as absent or not.
func metricsShape(body, dir string) []byte {
	state := regexp.MustCompile(`state="[^"]*"`)
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "phpfpm_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series, value := line[:i], line[i+1:]
		series = state.ReplaceAllString(strings.ReplaceAll(series, dir, "DIR"), `state="*"`)
		name, _, _ := strings.Cut(series, "{")
		switch {
		case versionValues[name]:
			series += " " + value
		case name == "phpfpm_opcache_jit_buffer_free_bytes" && value == "0":
			series += " 0"
		case name == "phpfpm_opcache_jit_buffer_free_bytes":
			series += " >0"
		}
		out = append(out, series)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// TestRunChrootFromHost: fpmguard run on the host owns a php-fpm it starts
// in another root, `fpmguard run -- chroot ROOT php-fpm7.4 -F -y CONF`,
// CONF being a path of ROOT: once php-fpm runs, fpmguard reads CONF there,
// through the master's /proc/PID/root, and watches its pool. When php-fpm
// dies and run starts it again, fpmguard reads it through the new master.
// php-fpm stops with fpmguard, leaving nothing behind. The host's 8.2 is
// TestRunBinary's.
func TestRunChrootFromHost(t *testing.T) {
	for _, v := range fpmtest.Versions {
		if v == fpmtest.HostVersion {
			continue
		}
		t.Run(v, func(t *testing.T) {
			fpm := fpmtest.New(t, fpmtest.Options{Version: v})
			addr := freePort(t)
			cmd, _ := startBinary(t, append([]string{"run", "--web.listen-address", addr, "--interval", "200ms", "--no-opcache", "--"}, fpm.Argv()...)...)
			first := watchedMaster(t, fpm, addr, 0)
			// php-fpm dies; run starts another, in a root of its own pid.
			if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			master := watchedMaster(t, fpm, addr, first)
			workers := fpmtest.ChildrenTitled(master, "php-fpm: pool www")
			stopRun(t, cmd, append([]int{master}, workers...))
		})
	}
}

// watchedMaster waits until fpmguard at addr watches pool www of fpm
// through the root of a master other than old, and returns that master.
func watchedMaster(t *testing.T, fpm *fpmtest.FPM, addr string, old int) int {
	t.Helper()
	var last string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(fpm.Dir, "php-fpm.pid"))
		master, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		_, body := httpGet("http://" + addr + "/status")
		last = body
		var rep supervisor.Report
		if master > 0 && master != old && json.Unmarshal([]byte(body), &rep) == nil && len(rep.Pools) == 1 {
			p := rep.Pools[0]
			root := fmt.Sprintf("unix:///proc/%d/root/", master)
			if p.Name == "www" && p.Health == supervisor.HealthOK && strings.HasPrefix(p.Address, root) && p.Master != nil && p.Master.PID == master && len(p.Processes) == 2 {
				return master
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fpmguard run does not watch pool www of a master other than %d through its root; /status:\n%s\nphp-fpm:\n%s", old, last, fpm.Log())
	return 0
}
