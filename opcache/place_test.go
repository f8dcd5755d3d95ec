package opcache

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"golang.org/x/sys/unix"
)

// needRoot: chroots, mounts and other users' processes need root. Under
// FPMGUARD_INTEGRATION=require a test that cannot run fails.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	fpmtest.RequireIntegration(t, "this test needs root")
}

func mustMkdir(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// empty fails the test when dir holds anything: what a hostile root must
// never make fpmguard write into.
func empty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Errorf("fpmguard wrote into %s, outside the root: %v", dir, ents)
	}
}

func TestInstallAndVerify(t *testing.T) {
	dir := filepath.Join(fpmtest.Dir(t), "state")
	p := Place{Dir: dir}
	script, err := p.Install()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(script) != ScriptName() || (Root{}).Verify(script) != nil {
		t.Fatalf("installed %s: %v", script, (Root{}).Verify(script))
	}
	for path, want := range map[string]os.FileMode{dir: 0o755, script: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %o so that the pool user can read it", path, fi.Mode(), err, want)
		}
	}
	// A changed copy is caught, then replaced by the next install.
	if err := os.WriteFile(script, []byte("<?php opcache_reset();"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (Root{}).Verify(script); !errors.Is(err, ErrScriptMismatch) || strings.Contains(err.Error(), "opcache_reset") {
		t.Errorf("Verify of a changed script: %v", err)
	}
	again, err := p.Install()
	if err != nil || again != script || (Root{}).Verify(script) != nil {
		t.Errorf("reinstall: %v", err)
	}

	// What stands at the script's name is replaced, never written through.
	outside := filepath.Join(fpmtest.Dir(t), "victim")
	if err := os.WriteFile(outside, []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(string) error{
		"symlink": func(p string) error { return os.Symlink(outside, p) },
		"FIFO":    func(p string) error { return unix.Mkfifo(p, 0o644) },
	} {
		if err := os.Remove(script); err != nil {
			t.Fatal(err)
		}
		if err := plant(script); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Install(); err != nil || (Root{}).Verify(script) != nil {
			t.Errorf("install over a %s: %v", name, err)
		}
	}
	if data, _ := os.ReadFile(outside); string(data) != "host file\n" {
		t.Errorf("the file a symlink named was written: %q", data)
	}

	open := filepath.Join(fpmtest.Dir(t), "open")
	mustMkdir(t, open)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := (Place{Dir: open}).Install(); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("Install into a world-writable dir: %v", err)
	}
	link := filepath.Join(fpmtest.Dir(t), "link")
	mustSymlink(t, dir, link)
	if _, err := (Place{Dir: link}).Install(); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("Install through a symlink: %v", err)
	}
	if _, err := (Place{Dir: "relative/dir"}).Install(); err == nil {
		t.Error("Install into a relative dir succeeded")
	}
}

// TestPlaceInAHostileRoot: a root whose directories link to the host. The
// root is a pool's chroot here; a master's root in another container is
// walked by the same code (TestOpcacheInAnotherRoot in supervisor). Every
// write must fail, and nothing may appear on the host.
func TestPlaceInAHostileRoot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root, host string)
		want  string
	}{
		{"the directory links to a host path", func(t *testing.T, root, host string) {
			mustSymlink(t, host, filepath.Join(root, "var/lib/fpmguard"))
		}, "/var/lib/fpmguard is a symlink"},
		{"the directory links out of the root, relatively", func(t *testing.T, root, host string) {
			rel, _ := filepath.Rel(filepath.Join(root, "var/lib"), host)
			mustSymlink(t, rel, filepath.Join(root, "var/lib/fpmguard"))
		}, "/var/lib/fpmguard is a symlink"},
		{"a directory on the way links to a host path", func(t *testing.T, root, host string) {
			mustMkdir(t, filepath.Join(host, "lib/fpmguard"))
			mustSymlink(t, host, filepath.Join(root, "var"))
		}, "/var is a symlink"},
		{"a magic link on the way", func(t *testing.T, root, host string) {
			mustSymlink(t, "/proc/self/root"+host, filepath.Join(root, "var/lib/fpmguard"))
		}, "/var/lib/fpmguard is a symlink"},
		{"the actions directory links to a host path", func(t *testing.T, root, host string) {
			mustMkdir(t, filepath.Join(root, "var/lib/fpmguard"))
			mustSymlink(t, host, filepath.Join(root, "var/lib/fpmguard/actions"))
		}, "/var/lib/fpmguard/actions is a symlink"},
		{"a directory on the way belongs to the pool user", func(t *testing.T, root, host string) {
			mustMkdir(t, filepath.Join(root, "var/lib"))
			if err := os.Chown(filepath.Join(root, "var"), 33, 33); err != nil {
				t.Fatal(err)
			}
		}, "/var belongs to uid 33"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "pool user") {
				needRoot(t)
			}
			root := filepath.Join(fpmtest.Dir(t), "root")
			host := filepath.Join(fpmtest.Dir(t), "host")
			mustMkdir(t, root, host)
			tc.plant(t, root, host)
			p := Place{Root: Root{Chroot: root}, Dir: "/var/lib/fpmguard"}
			_, err := p.Install()
			if err == nil && strings.Contains(tc.want, "actions") {
				_, _, err = p.action(actionRequest{Action: "reset"})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
			if tc.name == "a directory on the way links to a host path" {
				host = filepath.Join(host, "lib/fpmguard")
			}
			empty(t, host)
		})
	}
}

// TestVerifyInsideTheRoot: the operator's copy (--opcache-script) is read
// inside php-fpm's root: a link may lead elsewhere in the root, as a
// ConfigMap's do, never out of it; and what is not a regular file is
// refused without blocking or reading it.
func TestVerifyInsideTheRoot(t *testing.T) {
	root := filepath.Join(fpmtest.Dir(t), "root")
	mustMkdir(t, filepath.Join(root, "opt/..data"))
	if err := os.WriteFile(filepath.Join(root, "opt/..data/s.php"), Script, 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(fpmtest.Dir(t), "good.php")
	if err := os.WriteFile(good, Script, 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "..data/s.php", filepath.Join(root, "opt/configmap.php"))
	mustSymlink(t, good, filepath.Join(root, "opt/host.php"))
	rel, _ := filepath.Rel(filepath.Join(root, "opt"), good)
	mustSymlink(t, rel, filepath.Join(root, "opt/escape.php"))
	mustSymlink(t, "/dev/zero", filepath.Join(root, "opt/zero.php"))
	if err := unix.Mkfifo(filepath.Join(root, "opt/fifo.php"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Root{Chroot: root}
	if err := r.Verify("/opt/configmap.php"); err != nil {
		t.Errorf("a link inside the root: %v", err)
	}
	for _, s := range []string{"/opt/host.php", "/opt/escape.php", "/opt/zero.php", "/opt/fifo.php", "/opt/missing.php"} {
		done := make(chan error, 1)
		go func() { done <- r.Verify(s) }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: verified, want refused", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Verify blocked", s)
		}
	}
}

// TestPlaceRefusesAUserNamespace: anyone may start a process in a user
// namespace of its own and bind-mount a host directory they can read
// where fpmguard's directory would be in that process's root. Given that
// process as the master, fpmguard must not write there.
func TestPlaceRefusesAUserNamespace(t *testing.T) {
	needRoot(t)
	base := fpmtest.Dir(t)
	host := filepath.Join(base, "host") // what the attacker wants written
	place := filepath.Join(base, "place")
	mustMkdir(t, host, place)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	ready := filepath.Join(base, "ready")
	mustMkdir(t, ready)
	if err := os.Chown(ready, uid, gid); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount --bind "$1" "$2" && touch "$3/ok" && exec sleep 600`, "sh", host, place, ready)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := os.Create(filepath.Join(base, "unshare.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		_, err := os.Stat(filepath.Join(ready, "ok"))
		log, _ := os.ReadFile(out.Name())
		return string(log), err == nil
	})
	p := Place{Root: Root{MasterPID: cmd.Process.Pid}, Dir: place}
	if _, err := p.Install(); err == nil || !strings.Contains(err.Error(), "user namespace of its own") {
		t.Errorf("install into a user namespace's root: %v", err)
	}
	empty(t, host)
}

// TestActionScript: the script of one action runs once, from a directory
// nobody else may list, and is gone after: replayed, its path runs
// nothing, even with every freshly written file cached and timestamps
// never checked again. A leftover of an fpmguard killed mid-call goes too.
func TestActionScript(t *testing.T) {
	place := Place{Dir: filepath.Join(fpmtest.Dir(t), "fpmguard")}
	status, err := place.Install()
	if err != nil {
		t.Fatal(err)
	}
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusListen: true}},
		Defines: map[string]string{"opcache.file_update_protection": "0", "opcache.validate_timestamps": "0"}})
	addr := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].StatusSocket}
	c := Client{FastCGI: fastcgi.Client{Timeout: 30 * time.Second}, Script: status, Actions: place}
	ctx := context.Background()

	actions := filepath.Join(place.Dir, actionsDir)
	mustMkdir(t, actions)
	stale := filepath.Join(actions, actionName())
	if err := os.WriteFile(stale, []byte("<?php opcache_reset();"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * staleAction)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	script, remove, err := place.action(actionRequest{Action: "invalidate", Paths: []string{"/nonexistent.php"}})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(actions); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("actions directory: %v %v, want mode 711", fi.Mode(), err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover action script is still there: %v", err)
	}
	a, err := c.call(ctx, addr, script, "invalidate")
	remove()
	if err != nil || a.Error != "" || string(a.Result) != `{"/nonexistent.php":false}` {
		t.Fatalf("action: %+v %v", a, err)
	}
	if ents, _ := os.ReadDir(actions); len(ents) != 0 {
		t.Errorf("action scripts left behind: %v", ents)
	}
	_, err = c.call(ctx, addr, script, "invalidate")
	if fastcgi.ClassOf(err) != fastcgi.ClassNotFound {
		t.Errorf("the action script's path replayed after the call: %v, want php-fpm's 404", err)
	}
}

// BenchmarkInstall is what fpmguard does to its script before each opcache
// read: walk and check every directory from the root, then compare the
// file. readFile is the baseline, what it did before: read the file by
// path and compare it.
func BenchmarkInstall(b *testing.B) {
	p := Place{Dir: filepath.Join(fpmtest.Dir(b), "fpmguard")}
	script, err := p.Install()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("install", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Install(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readFileBaseline", func(b *testing.B) {
		for b.Loop() {
			data, err := os.ReadFile(script)
			if err != nil || len(data) != len(Script) {
				b.Fatal(err)
			}
		}
	})
}
