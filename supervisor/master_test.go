package supervisor

// Tests of what fpmguard trusts as a master: issue 18's findings 1 to 3,
// each reproduced with real processes.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func TestMain(m *testing.M) {
	fpmtest.ForgeMain()
	os.Exit(m.Run())
}

// rootOnly is what a file only root may read holds (a line of
// /etc/shadow): no output may show it.
const rootOnly = "secretuser:$y$j9T$SECRET-HASH:20228:0:99999:7:::"

// leaks reports whether s shows rootOnly, or the secret of fpmguard's
// environment the tests set, in part.
func leaks(s string) bool {
	return strings.Contains(s, "secretuser") || strings.Contains(s, "SECRET") || strings.Contains(s, "s3cr3t")
}

// rootOnlyFile writes rootOnly into a file mode 0600 owned by root.
func rootOnlyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(path, []byte(rootOnly+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// poolUserFile writes a file the pool user owns, as it can in a directory
// of its own.
func poolUserFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
}

// poolUserDir makes a directory only the pool user may write.
func poolUserDir(t *testing.T) string {
	t.Helper()
	dir := fpmtest.Dir(t)
	if err := os.Chown(dir, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDiscoverSkipsForgedMaster: discovery with no flags never adopts a
// process of the pool user that carries a master's title, whether its
// binary is the pool user's or root's. The real master is still found.
func TestDiscoverSkipsForgedMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	title := "php-fpm: master process (" + fpm.Conf + ")"
	own := fpmtest.Forge(t, fpmtest.ForgeOptions{Title: title, UID: fpmtest.PoolUser, BinaryOwner: fpmtest.PoolUser})
	roots := fpmtest.Forge(t, fpmtest.ForgeOptions{Title: title, UID: fpmtest.PoolUser, BinaryOwner: 0})

	targets, err := Discover(context.Background(), Trust{})
	t.Logf("discovery says: %v", err)
	found := false
	for _, tg := range targets {
		switch tg.MasterPID {
		case own.PID, roots.PID:
			t.Errorf("adopted forged master %d: %+v", tg.MasterPID, tg)
		case fpm.MasterPID():
			found = true
		}
	}
	if !found {
		t.Errorf("the real master %d was not found (err %v)", fpm.MasterPID(), err)
	}
	for _, f := range []*fpmtest.Forged{own, roots} {
		if !strings.Contains(errString(err), "php-fpm master "+strconv.Itoa(f.PID)+" ") {
			t.Errorf("discovery does not say why it skipped %d: %v", f.PID, err)
		}
		if len(f.Signals()) > 0 || len(f.Executed()) > 0 {
			t.Errorf("forged master %d: signals %q, runs %q", f.PID, f.Signals(), f.Executed())
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDiscoverForgedConfig: a process of the pool user names a config of
// its own in its title. Nothing of it may be loaded as root: not a pool
// named after one of fpmguard's environment variables, and not the first
// line of a root-only file it includes.
func TestDiscoverForgedConfig(t *testing.T) {
	t.Setenv("FPMGUARD_TEST_SECRET", "s3cr3t-token")
	dir := poolUserDir(t)
	leak := filepath.Join(dir, "leak.conf")
	poolUserFile(t, leak, "[global]\npid = "+dir+"/leak.pid\n[leak_${FPMGUARD_TEST_SECRET}]\nlisten = "+dir+"/leak.sock\npm = static\npm.max_children = 1\n")
	include := filepath.Join(dir, "include.conf")
	poolUserFile(t, include, "[global]\ninclude = "+rootOnlyFile(t)+"\n")
	var forged []*fpmtest.Forged
	for _, conf := range []string{leak, include} {
		forged = append(forged, fpmtest.Forge(t, fpmtest.ForgeOptions{Title: "php-fpm: master process (" + conf + ")", UID: fpmtest.PoolUser, BinaryOwner: fpmtest.PoolUser}))
	}

	targets, err := Discover(context.Background(), Trust{})
	t.Logf("discovery says: %v", err)
	for _, tg := range targets {
		for _, f := range forged {
			if tg.MasterPID == f.PID {
				t.Errorf("adopted forged master %d: %+v", f.PID, tg)
			}
		}
		if leaks(tg.Name) {
			t.Errorf("a pool is named after fpmguard's environment: %q", tg.Name)
		}
	}
	if leaks(errString(err)) {
		t.Errorf("discovery's error shows a secret: %v", err)
	}
}

// TestDiscoverExpandsNoEnvOfOurs: ${VAR} in a real master's config is
// never expanded from fpmguard's own environment: php-fpm expanded it from
// its own, where the variable is unset.
func TestDiscoverExpandsNoEnvOfOurs(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{PingPath: "-", Extra: []string{"ping.path = /ping${FPMGUARD_TEST_SECRET}"}}}})
	// Set after php-fpm started: only fpmguard has it.
	t.Setenv("FPMGUARD_TEST_SECRET", "s3cr3t-token")
	targets, err := Discover(context.Background(), Trust{})
	found := false
	for _, tg := range targets {
		if tg.MasterPID != fpm.MasterPID() {
			continue
		}
		found = true
		if tg.PingPath != "/ping" {
			t.Errorf("ping.path read as %q; php-fpm itself has /ping", tg.PingPath)
		}
	}
	if !found {
		t.Fatalf("master %d not found (err %v)", fpm.MasterPID(), err)
	}
}

// TestHostilePIDFile: what the pool user can make of the pid file, in the
// directory it owns, neither stalls the probe, nor kills fpmguard, nor
// shows a root-only file, nor makes a forged process pass for the master.
func TestHostilePIDFile(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
	tg := fpmTargets(t, fpm)["www"]
	if err := os.Chown(fpm.Dir, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(fpm.Dir, "php-fpm.pid")
	real, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	forged := fpmtest.Forge(t, fpmtest.ForgeOptions{Title: "php-fpm: master process (" + fpm.Conf + ")", UID: fpmtest.PoolUser, BinaryOwner: fpmtest.PoolUser})
	shadow := rootOnlyFile(t)

	cases := []struct {
		name    string
		replace func(t *testing.T)
	}{
		{"link to a root-only file", func(t *testing.T) { link(t, shadow, pidFile) }},
		{"a FIFO", func(t *testing.T) {
			if err := syscall.Mkfifo(pidFile, 0o644); err != nil {
				t.Fatal(err)
			}
			// A probe stuck in open(2) is let go when the test ends.
			t.Cleanup(func() {
				if f, err := os.OpenFile(pidFile, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			})
		}},
		{"link to /dev/zero", func(t *testing.T) { link(t, "/dev/zero", pidFile) }},
		{"64 MiB", func(t *testing.T) { poolUserFile(t, pidFile, rootOnly+"\n"+strings.Repeat("x", 64<<20)) }},
		{"the pool user's, naming a forged master", func(t *testing.T) {
			poolUserFile(t, pidFile, strconv.Itoa(forged.PID)+"\n")
		}},
	}
	pr := testProber(time.Second)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.Remove(pidFile); err != nil {
				t.Fatal(err)
			}
			c.replace(t)
			t.Cleanup(func() {
				os.Remove(pidFile)
				if err := os.WriteFile(pidFile, real, 0o644); err != nil {
					t.Error(err)
				}
			})
			done := make(chan PoolReport, 1)
			go func() { done <- pr.Probe(context.Background(), tg, nil) }()
			var r PoolReport
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the probe did not end within 30s")
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if leaks(string(out)) {
				t.Errorf("the report shows the file: %s", out)
			}
			t.Logf("master %+v", r.Master)
			if r.Master == nil || r.Master.PID == forged.PID && r.Master.Alive {
				t.Errorf("master %+v: the forged process passes for it", r.Master)
			}
		})
	}
	if len(forged.Signals()) > 0 || len(forged.Executed()) > 0 {
		t.Errorf("forged master: signals %q, runs %q", forged.Signals(), forged.Executed())
	}
}

func link(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(name, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMaster: what finding the master costs a probe. before is what
// the probe did before masters were verified (the pid file read with a
// plain open, the process read); probe is the probe's way now (safefile,
// and the verification cached per process); verify is one verification
// uncached, as a reload does it.
func BenchmarkMaster(b *testing.B) {
	fpm := fpmtest.Start(b, fpmtest.Options{})
	ts, err := LoadFPMConfig(fpm.Conf)
	if err != nil {
		b.Fatal(err)
	}
	tg := ts[0]
	ctx := context.Background()
	pr := testProber(time.Second)
	b.Run("before", func(b *testing.B) {
		benchCPU(b, func() {
			data, err := readSmallFile(tg.MasterPIDFile, maxProcFile)
			if err != nil {
				b.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			if _, err := pr.Procs.ReadProcess(ctx, pid); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("probe", func(b *testing.B) {
		benchCPU(b, func() {
			if m := pr.master(ctx, tg, nil); !m.Alive {
				b.Fatalf("master %+v", m)
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		osp, err := pr.Procs.ReadProcess(ctx, fpm.MasterPID())
		if err != nil {
			b.Fatal(err)
		}
		benchCPU(b, func() {
			if _, err := pr.Trust.Verify(fpm.MasterPID(), osp.Title, fpm.Conf); err != nil {
				b.Fatal(err)
			}
		})
	})
}
