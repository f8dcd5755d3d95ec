package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// Tests of what becomes of php-fpm when `fpmguard run` meets trouble of
// its own: a closed log pipe, a fatal signal, SIGKILL. They run the real
// binary and a real php-fpm, and wait with generous deadlines: they check
// what happens, not how fast.

// patience bounds every wait of these tests.
const patience = 30 * time.Second

// runGuard is a running `fpmguard run`.
type runGuard struct {
	cmd     *exec.Cmd
	fpm     *fpmtest.FPM
	addr    string // fpmguard's HTTP address
	logPath string
	done    chan struct{} // closed when fpmguard has exited and was waited for

	mu     sync.Mutex
	groups []int // php-fpm process groups seen, for the cleanup
}

// startRun starts `fpmguard run` for fpm. Its stdout and stderr go to out,
// or to a file read by output when out is nil. At the end of the test,
// fpmguard is SIGKILLed if it still runs, and so is every process left of
// the php-fpm groups it started.
func startRun(t *testing.T, fpm *fpmtest.FPM, out *os.File) *runGuard {
	t.Helper()
	g := &runGuard{fpm: fpm, done: make(chan struct{})}
	if out == nil {
		g.logPath = filepath.Join(t.TempDir(), "fpmguard.log")
		f, err := os.Create(g.logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	g.addr = freePort(t)
	args := append([]string{"run", "--web.listen-address", g.addr, "--interval", "200ms", "--no-opcache", "--stop-timeout", "10s", "--"}, fpm.Argv()...)
	g.cmd = exec.Command(buildBinary(t), args...)
	g.cmd.Stdout, g.cmd.Stderr = out, out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = g.cmd.Process.Kill()
			<-g.done
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, pgid := range g.groups {
			for _, p := range fpmGroup(pgid) {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("fpmguard output:\n%s\nphp-fpm log:\n%s", g.output(), fpm.Log())
		}
	})
	return g
}

// output is what fpmguard wrote, when it writes to a file.
func (g *runGuard) output() string {
	if g.logPath == "" {
		return "(written to a pipe)"
	}
	b, _ := os.ReadFile(g.logPath)
	return string(b)
}

// alive reports whether fpmguard still runs.
func (g *runGuard) alive() bool {
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// waitMaster waits for a php-fpm master that is fpmguard's child, is not
// among not, has forked all its workers and answers a ping. It returns
// the master's pid and its workers'.
func (g *runGuard) waitMaster(t *testing.T, not ...int) (int, []int) {
	t.Helper()
	var master int
	var workers []int
	fpmtest.Poll(t, patience, func() (string, bool) {
		if !g.alive() {
			t.Fatalf("fpmguard exited: %s", g.cmd.ProcessState)
		}
		master = 0
		for _, p := range procs() {
			if p.ppid == g.cmd.Process.Pid && strings.HasPrefix(p.title, "php-fpm: master process") && !containsInt(not, p.pid) {
				master = p.pid
			}
		}
		if master == 0 {
			return "no master", false
		}
		g.mu.Lock()
		if !containsInt(g.groups, master) {
			g.groups = append(g.groups, master)
		}
		g.mu.Unlock()
		workers = fpmtest.ChildrenTitled(master, "php-fpm: pool www")
		if len(workers) < g.fpm.Pools["www"].MaxChildren {
			return "workers of master " + strconv.Itoa(master) + ": " + strconv.Itoa(len(workers)), false
		}
		if err := pingPool(g.fpm); err != nil {
			return err.Error(), false
		}
		return "", true
	})
	return master, workers
}

// waitExit waits for fpmguard to exit and returns its state.
func (g *runGuard) waitExit(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-g.done:
		return g.cmd.ProcessState
	case <-time.After(patience):
		t.Fatalf("fpmguard still runs after %v", patience)
		return nil
	}
}

func pingPool(fpm *fpmtest.FPM) error {
	_, err := fastcgi.Client{Timeout: 2 * time.Second}.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}, "/ping", "pong")
	return err
}

// waitGroupGone waits until no live process of php-fpm group pgid is left.
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	fpmtest.Poll(t, patience, func() ([]proc, bool) {
		left := fpmGroup(pgid)
		return left, len(left) == 0
	})
}

// proc is a process as these tests see it.
type proc struct {
	pid, ppid, pgrp int
	title           string
}

// procs lists the live processes: zombies are left out, as orphans of a
// killed fpmguard are reaped by whatever adopts them, maybe never.
func procs() []proc {
	var out []proc
	fpmtest.EachProc(func(pid int, state byte, ppid, pgrp int) {
		if state == 'Z' || state == 'X' {
			return
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		title := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		out = append(out, proc{pid: pid, ppid: ppid, pgrp: pgrp, title: title})
	})
	return out
}

// isAlive reports whether pid is a live process, not a zombie.
func isAlive(pid int) bool {
	for _, p := range procs() {
		if p.pid == pid {
			return true
		}
	}
	return false
}

// fpmGroup lists the live php-fpm processes of group pgid.
func fpmGroup(pgid int) []proc {
	var out []proc
	for _, p := range procs() {
		if p.pgrp == pgid && strings.HasPrefix(p.title, "php-fpm") {
			out = append(out, p)
		}
	}
	return out
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestRunSurvivesABrokenLogPipe is `fpmguard run ... 2>&1 | head -c 300`:
// once the reader is gone, the next log line used to kill fpmguard with
// SIGPIPE and leave php-fpm unsupervised. fpmguard must drop the line and
// go on: here it still restarts a SIGKILLed master.
func TestRunSurvivesABrokenLogPipe(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g := startRun(t, fpm, w)
	w.Close()
	first, _ := g.waitMaster(t)

	// "head -c 300": read at most 300 bytes, then go away.
	buf := make([]byte, 300)
	n, err := r.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "level=") {
		t.Fatalf("read %q from fpmguard: %v", buf[:n], err)
	}
	r.Close()

	// The restart is logged: a write to the broken pipe.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second, _ := g.waitMaster(t, first)
	if !g.alive() {
		t.Fatalf("fpmguard exited: %s", g.cmd.ProcessState)
	}
	t.Logf("master %d restarted as %d with nobody reading fpmguard's log", first, second)

	// And it still stops php-fpm gracefully.
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := g.waitExit(t); !st.Success() {
		t.Errorf("fpmguard after SIGTERM: %s, want exit status 0", st)
	}
	waitGroupGone(t, second)
}

// TestRunStopsPHPFPMOnFatalSignals: a signal that ends a process by
// default (Go ignored SIGXCPU, and died of SIGABRT with a goroutine dump)
// makes fpmguard stop php-fpm the graceful way before it exits: SIGQUIT to
// the master ("Finishing ..."), and nothing of its group is left.
func TestRunStopsPHPFPMOnFatalSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGXCPU, syscall.SIGABRT} {
		t.Run(signalName(sig), func(t *testing.T) {
			fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
			g := startRun(t, fpm, nil)
			master, workers := g.waitMaster(t)
			if err := g.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if st := g.waitExit(t); !st.Success() {
				t.Errorf("fpmguard after %s: %s, want php-fpm's exit status 0", signalName(sig), st)
			}
			waitGroupGone(t, master)
			for _, pid := range append([]int{master}, workers...) {
				if isAlive(pid) {
					t.Errorf("process %d of php-fpm is left", pid)
				}
			}
			if log := fpm.Log(); !strings.Contains(log, "Finishing ...") || !strings.Contains(log, "exiting, bye-bye") {
				t.Errorf("php-fpm was not stopped with SIGQUIT:\n%s", log)
			}
			out := g.output()
			for _, want := range []string{"signal=" + signalName(sig), "stopping php-fpm master " + strconv.Itoa(master)} {
				if !strings.Contains(out, want) {
					t.Errorf("fpmguard's log lacks %q", want)
				}
			}
			if strings.Contains(out, "goroutine ") {
				t.Errorf("stack dump in fpmguard's log")
			}
		})
	}
}

// TestKilledRunStopsPHPFPM: SIGKILL to fpmguard cannot be caught; the
// master's parent-death signal, SIGQUIT, makes php-fpm finish gracefully
// by itself. A new `fpmguard run` of the same config then starts php-fpm
// as usual.
func TestKilledRunStopsPHPFPM(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	g := startRun(t, fpm, nil)
	master, workers := g.waitMaster(t)
	if err := g.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	g.waitExit(t)
	waitGroupGone(t, master)
	for _, pid := range append([]int{master}, workers...) {
		if isAlive(pid) {
			t.Errorf("process %d of php-fpm is left", pid)
		}
	}
	if log := fpm.Log(); !strings.Contains(log, "Finishing ...") {
		t.Errorf("php-fpm did not get SIGQUIT:\n%s", log)
	}

	again := startRun(t, fpm, nil)
	again.waitMaster(t)
	if out := again.output(); strings.Contains(out, "already runs with") {
		t.Errorf("the old master was reported as still running:\n%s", out)
	}
}

// TestRunReportsALeftoverMaster: a master of the same config that fpmguard
// did not start holds the sockets. fpmguard says so, never signals it, and
// starts its own php-fpm once it has gone.
func TestRunReportsALeftoverMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	stranger := fpm.MasterPID()
	g := startRun(t, fpm, nil)
	fpmtest.Poll(t, patience, func() (string, bool) {
		out := g.output()
		return out, strings.Contains(out, "php-fpm master "+strconv.Itoa(stranger)+", not started by this fpmguard, already runs with "+fpm.Conf) &&
			strings.Contains(out, "exited unexpectedly (exit status 78)") && strings.Contains(out, "and may hold its sockets")
	})
	select {
	case <-fpm.Exited():
		t.Fatal("fpmguard's php-fpm or fpmguard stopped the master it did not start")
	default:
	}
	if err := pingPool(fpm); err != nil {
		t.Errorf("the leftover master no longer serves: %v", err)
	}

	if err := fpm.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	<-fpm.Exited()
	master, _ := g.waitMaster(t)
	if master == stranger {
		t.Fatalf("master %d is the leftover", master)
	}
}

// TestRunStopsOnAConfigItCannotRead: a config fpmguard's own parser
// refuses stops run at once, with exit status 78 and one line saying what
// to fix, and php-fpm is not started: no restart loop for ever.
func TestRunStopsOnAConfigItCannotRead(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "php-fpm.conf")
	if err := os.WriteFile(conf, []byte("[global]\npid = "+dir+"/fpm.pid\n[www\nlisten = "+dir+"/www.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The "php-fpm" of this command line leaves a mark if it ever runs.
	mark := filepath.Join(dir, "started")
	cmd := exec.Command(buildBinary(t), "run", "--web.listen-address", freePort(t), "--", "/bin/sh", "-c", "touch "+mark, "-F", "-y", conf)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitConfig {
		t.Errorf("fpmguard run: %v, want exit status %d\n%s", err, exitConfig, out)
	}
	want := `fpmguard: error: php-fpm's config "` + conf + `" (run's -y): reading ` + conf + `:3: syntax error`
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) ||
		!strings.HasSuffix(lines[0], "fix it (/bin/sh -t -y "+conf+" tests it as php-fpm reads it), then start fpmguard run again; php-fpm was not started") {
		t.Errorf("output %q, want one line starting %q", out, want)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("php-fpm's command ran")
	}
}

// TestRunSaysItRestarts: after the master dies under run, nothing tells
// the user to restart php-fpm: fpmguard is restarting it, and says so.
func TestRunSaysItRestarts(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	g := startRun(t, fpm, nil)
	master, _ := g.waitMaster(t)
	// Each restart fails while the config is broken, so that the pool
	// stays down for seconds: long enough for a probe to see it, whatever
	// the load.
	if err := os.WriteFile(fpm.Conf, []byte("[www\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The verdict on the pool while its master is gone: whichever master
	// pid it names (each restart's dies at once), the reason says that
	// fpmguard is restarting php-fpm.
	gone := regexp.MustCompile(`master process \d+ is gone: nothing will respawn workers; ([^"]*)"`)
	reason := fpmtest.Poll(t, patience, func() (string, bool) {
		_, body := httpGet("http://" + g.addr + "/status")
		m := gone.FindStringSubmatch(body)
		if m == nil {
			return body, false
		}
		return m[1], true
	})
	if reason != "fpmguard run is restarting php-fpm" {
		t.Errorf("the verdict on a gone master asks: %q", reason)
	}
	if out := g.output(); strings.Contains(out, "; restart php-fpm") {
		t.Errorf("fpmguard asks the user to restart php-fpm while it does:\n%s", out)
	}
}
