package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

func TestMain(m *testing.M) {
	fpmtest.ForgeMain()
	os.Exit(m.Run())
}

// TestReloadNeverRunsForgedMaster is the proof of concept of issue 18's
// first finding, as a test. The pool user (www-data, who owns /run/php on
// Debian) starts a process with a master's title, points the pid file at
// it and takes over the pool's socket with a listener that never answers.
// Under --reload-unhealthy the heartbeat fails, and fpmguard used to run
// the forged master's binary as root for the config test, then SIGUSR2 it.
// Nothing may run, and nothing may be signalled.
func TestReloadNeverRunsForgedMaster(t *testing.T) {
	for _, binaryOwner := range []int{fpmtest.PoolUser, 0} {
		t.Run("binary of uid "+strconv.Itoa(binaryOwner), func(t *testing.T) {
			fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
			// The pool user may write the directory of the pid file and
			// the socket, as /run/php.
			if err := os.Chown(fpm.Dir, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
				t.Fatal(err)
			}
			w := watcherFor(t, fpm, Config{Interval: time.Hour, UnhealthyAfter: 1, Actions: ActionConfig{ReloadUnhealthy: true}})
			w.prober.Client.Timeout = 300 * time.Millisecond
			var mu sync.Mutex
			var signalled []string
			w.actions.signal = func(pid int, sig syscall.Signal) error {
				mu.Lock()
				signalled = append(signalled, strconv.Itoa(pid)+" "+sig.String())
				mu.Unlock()
				return syscall.Kill(pid, sig)
			}

			forged := fpmtest.Forge(t, fpmtest.ForgeOptions{
				Title: "php-fpm: master process (" + fpm.Conf + ")", UID: fpmtest.PoolUser, BinaryOwner: binaryOwner,
				Listen: fpm.Pools["www"].Listen,
			})
			forgePIDFile(t, filepath.Join(fpm.Dir, "php-fpm.pid"), forged.PID)

			for range 3 {
				w.tick(context.Background(), w.pools[0])
			}
			if ran := forged.Executed(); len(ran) > 0 {
				t.Errorf("the forged master's binary ran: %q", ran)
			}
			if got := forged.Signals(); len(got) > 0 {
				t.Errorf("the forged master received %q", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(signalled) > 0 {
				t.Errorf("signalled %q", signalled)
			}
			r := w.pools[0].view.Load()
			if r == nil || r.Report.Master == nil || r.Report.Master.PID == forged.PID && r.Report.Master.Alive {
				t.Errorf("the forged process passes for the master: %+v", r)
			}
		})
	}
}

// forgePIDFile replaces a pid file by the pool user's own, naming pid, as
// the pool user can where it may write the directory.
func forgePIDFile(t *testing.T, path string, pid int) {
	t.Helper()
	tmp := path + ".forged"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigRefuses: the config test runs only a php-fpm binary and
// a config that only root may change; anything else is refused before
// anything runs.
func TestCheckConfigRefuses(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	// The pool user's copy of php-fpm, and a directory of its own.
	dir := fpmtest.Dir(t)
	if err := os.Chown(dir, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(dir, "php-fpm")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(theirs, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	theirConf := filepath.Join(dir, "php-fpm.conf")
	conf, err := os.ReadFile(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(theirConf, conf, 0o644); err != nil { // root's file, in the pool user's directory
		t.Fatal(err)
	}
	forged := fpmtest.Forge(t, fpmtest.ForgeOptions{Title: "php-fpm: master process (" + fpm.Conf + ")", UID: 0, BinaryOwner: 0})

	var ran []string
	output := func(_ context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, name)
		return nil, nil
	}
	osp, err := supervisor.SystemProcs.ReadProcess(context.Background(), fpm.MasterPID())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		bin    string
		master int
		start  uint64
		conf   string
	}{
		{"the pool user's binary, named", theirs, fpm.MasterPID(), 0, fpm.Conf},
		{"a master running no php-fpm", "", forged.PID, 0, fpm.Conf},
		{"a config the pool user may swap", "", fpm.MasterPID(), 0, theirConf},
		{"a pid no longer the master verified", "", fpm.MasterPID(), osp.StartTicks + 1, fpm.Conf},
	} {
		ran = nil
		err := CheckConfig(context.Background(), output, c.bin, c.master, c.start, c.conf)
		if !errors.Is(err, ErrUntrustedFile) || len(ran) > 0 {
			t.Errorf("%s: %v, ran %q; want ErrUntrustedFile and nothing run", c.name, err, ran)
		}
	}
	if len(forged.Executed()) > 0 {
		t.Errorf("the forged binary ran: %q", forged.Executed())
	}
	// The real thing, both ways.
	run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, name, args...).CombinedOutput()
	}
	for _, b := range []string{"", bin} {
		if err := CheckConfig(context.Background(), run, b, fpm.MasterPID(), osp.StartTicks, fpm.Conf); err != nil {
			t.Errorf("binary %q: %v", b, err)
		}
	}
}

// TestCheckConfigOtherMountNamespace: the config test of a master in
// another mount namespace of the same root (a container whose mounts
// differ, or fpmguard and php-fpm each in one of their own) runs the
// master's own binary. Its binary is reached there through a private bind
// mount, so the path the kernel names it by (/proc/PID/exe) leads nowhere
// here: on the old code the test found no binary and the reload was
// refused.
func TestCheckConfigOtherMountNamespace(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{})
	bin := fpm.Argv()[0]
	mnt := fpmtest.Dir(t) // empty here; php-fpm's directory in the master's namespace
	// The script takes its values as arguments: nothing is spliced into it.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", `mount --bind "$1" "$2" && exec "$2/$3" -F -y "$4"`,
		"sh", filepath.Dir(bin), mnt, filepath.Base(bin), fpm.Conf)
	cmd.Dir = fpm.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log, err := os.Create(filepath.Join(fpm.Dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	if err := fpm.WaitSockets(time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, fpm.Log())
	}
	pid := cmd.Process.Pid // unshare and sh exec: php-fpm keeps the pid
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || !strings.HasPrefix(link, mnt+"/") {
		t.Fatalf("master %d runs %q (%v), want its binary under %s", pid, link, err, mnt)
	}
	if _, err := os.Stat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists here (%v): the test needs a path that leads nowhere outside the master's namespace", link, err)
	}
	osp, err := supervisor.SystemProcs.ReadProcess(context.Background(), pid)
	if err != nil || !supervisor.IsMasterTitle(osp.Title) {
		t.Fatalf("pid %d: %+v, %v; want php-fpm's master", pid, osp, err)
	}
	var ran [][]string
	run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, append([]string{name}, args...))
		return exec.CommandContext(ctx, name, args...).CombinedOutput()
	}
	if err := CheckConfig(context.Background(), run, "", pid, osp.StartTicks, fpm.Conf); err != nil {
		t.Fatalf("config test of a master in another mount namespace: %v", err)
	}
	if len(ran) != 1 || !strings.HasPrefix(ran[0][0], "/proc/self/fd/") || !slices.Contains(ran[0], fpm.Conf) {
		t.Fatalf("ran %q, want php-fpm -t -y %s through the descriptor checked", ran, fpm.Conf)
	}
}

// TestReloadRefusesAnotherRoot: a master in another root (PHP 7.4 and 8.4
// in a root of their own, as in another container of the pod) is never
// reloaded: its config test would run that root's php-fpm and libraries
// as the host's root. Its heartbeat fails under --reload-unhealthy; the
// refusal says why and what to do, and nothing runs or is signalled.
func TestReloadRefusesAnotherRoot(t *testing.T) {
	for _, v := range fpmtest.Versions {
		if v == fpmtest.HostVersion {
			continue
		}
		t.Run(v, func(t *testing.T) {
			fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 1}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
			root := fmt.Sprintf("/proc/%d/root", fpm.MasterPID())
			targets, err := supervisor.TargetsOfMaster(supervisor.Master{PID: fpm.MasterPID(), Config: fpm.InRoot(fpm.Conf), Root: root})
			if err != nil {
				t.Fatal(err)
			}
			pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: 300 * time.Millisecond}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 30 * time.Second}}
			w := New(pr, targets, Config{Interval: time.Hour, UnhealthyAfter: 1, Actions: ActionConfig{ReloadUnhealthy: true}}, event.NewLog(nil))
			var mu sync.Mutex
			var acted []string
			w.UseOutput(func(_ context.Context, name string, args ...string) ([]byte, error) {
				mu.Lock()
				defer mu.Unlock()
				acted = append(acted, "ran "+name)
				return nil, nil
			})
			w.actions.signal = func(pid int, sig syscall.Signal) error {
				mu.Lock()
				defer mu.Unlock()
				acted = append(acted, fmt.Sprintf("signalled %d %v", pid, sig))
				return nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			held := make(chan struct{})
			go func() {
				defer close(held)
				_, _ = fastcgi.Client{Timeout: 2 * time.Minute}.Do(ctx, targets[0].Address, fastcgi.Request{Path: "/sleep.php", Query: "ms=120000", Script: fpm.Script("sleep.php")})
			}()
			t.Cleanup(func() {
				cancel()
				<-held
			})
			refused := fpmtest.Poll(t, time.Minute, func() ([]event.Event, bool) {
				w.tick(context.Background(), w.pools[0])
				e := eventsOf(w, event.KindActionRefused)
				return e, len(e) > 0
			})
			if msg := refused[0].Message; !strings.Contains(msg, "another root ("+root+")") || !strings.Contains(msg, "run fpmguard in php-fpm's container") {
				t.Errorf("refusal %q does not say why, or what to do", msg)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(acted) > 0 {
				t.Errorf("acted on a master in another root: %q", acted)
			}
		})
	}
}

// TestCheckConfigUpgradedBinary: once php-fpm's binary was replaced (a
// package upgrade) under a running master, a reload runs the new file at
// its path, and the config test runs that file too, not the one the master
// still runs.
func TestCheckConfigUpgradedBinary(t *testing.T) {
	host, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(fpmtest.Dir(t), filepath.Base(host))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PHP_FPM", bin)
	fpm := fpmtest.Start(t, fpmtest.Options{})
	// The upgrade: a new file renamed over the old one.
	if err := os.WriteFile(bin+".new", data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", fpm.MasterPID())); !strings.HasSuffix(link, " (deleted)") {
		t.Fatalf("the master runs %q, want its old binary, deleted", link)
	}
	upgraded, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	var ran []fs.FileInfo
	run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
		fi, err := os.Stat(name) // the descriptor, while it is open
		if err != nil {
			return nil, err
		}
		ran = append(ran, fi)
		return exec.CommandContext(ctx, name, args...).CombinedOutput()
	}
	if err := CheckConfig(context.Background(), run, "", fpm.MasterPID(), 0, fpm.Conf); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || !os.SameFile(ran[0], upgraded) {
		t.Fatalf("ran %v, want the upgraded binary at %s", ran, bin)
	}
}
