package watch

import (
	"context"
	"os"
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
