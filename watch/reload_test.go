package watch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
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
	for _, c := range []struct {
		name   string
		bin    string
		master int
		conf   string
	}{
		{"the pool user's binary, named", theirs, fpm.MasterPID(), fpm.Conf},
		{"a master running no php-fpm", "", forged.PID, fpm.Conf},
		{"a config the pool user may swap", "", fpm.MasterPID(), theirConf},
	} {
		ran = nil
		err := CheckConfig(context.Background(), output, c.bin, c.master, c.conf)
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
		if err := CheckConfig(context.Background(), run, b, fpm.MasterPID(), fpm.Conf); err != nil {
			t.Errorf("binary %q: %v", b, err)
		}
	}
}
