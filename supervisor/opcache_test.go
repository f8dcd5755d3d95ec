package supervisor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/opcache"
	"golang.org/x/sys/unix"
)

// TestOpcacheOncePerMaster: two pools under one master share one opcache,
// read once, through the pool with pm.status_listen.
func TestOpcacheOncePerMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "alpha"}, {Name: "beta", StatusListen: true}}})
	ts := fpmTargets(t, fpm)
	targets := []Target{ts["alpha"], ts["beta"]}
	dir := fpmtest.Dir(t)
	pr := testProber(2 * time.Second)
	pr.Opcache = &OpcacheProber{Client: pr.Client, Dir: filepath.Join(dir, "fpmguard")}
	rep := pr.ProbeAll(context.Background(), targets, nil)
	if len(rep.Opcache) != 1 {
		t.Fatalf("opcache reports: %+v, want one for master %d", rep.Opcache, fpm.MasterPID())
	}
	o := rep.Opcache[0]
	if o.MasterPID != fpm.MasterPID() || strings.Join(o.Pools, ",") != "alpha,beta" || o.Via != "unix://"+fpm.Pools["beta"].StatusSocket {
		t.Errorf("opcache report %+v", o)
	}
	if o.Error != "" || !o.Enabled || o.Health != HealthOK || o.MemoryFreeBytes <= 0 || o.MaxCachedKeys <= 0 {
		t.Errorf("opcache report %+v", o)
	}
}

// chrootFPM is a php-fpm 8.2 master started with chroot into a minimal
// root built for the test: as php-fpm in another container of a pod is, it
// is seen only through /proc/PID/root. (The version matrix's rootfs
// builds will replace it.)
type chrootFPM struct {
	root string // the root directory, a host path
	cmd  *exec.Cmd
}

// startChrootFPM builds a root from hard links to php-fpm, its opcache
// extension and their libraries, lets prepare plant what it wants in it,
// and starts the master in it: one static pool www with pm.status_listen,
// its workers as uid 33, its files below /var/www.
func startChrootFPM(t *testing.T, prepare func(root string)) *chrootFPM {
	t.Helper()
	if os.Geteuid() != 0 {
		fpmtest.RequireIntegration(t, "a chroot needs root")
	}
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	exts, _ := filepath.Glob("/usr/lib/php/*/opcache.so")
	if len(exts) == 0 {
		t.Fatal("no opcache.so under /usr/lib/php")
	}
	root := filepath.Join(fpmtest.Dir(t), "root")
	link := func(src string) {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, src)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(real, dst); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	for _, f := range []string{bin, exts[0], "/usr/share/zoneinfo/UTC"} {
		link(f)
		if strings.HasPrefix(f, "/usr/share") {
			continue
		}
		out, err := exec.Command("ldd", f).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", f, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if fs := strings.Fields(l); len(fs) >= 3 && fs[1] == "=>" && strings.HasPrefix(fs[2], "/") {
				link(fs[2])
			} else if len(fs) >= 1 && strings.HasPrefix(fs[0], "/") {
				link(fs[0])
			}
		}
	}
	for _, d := range []string{"dev", "etc", "run", "tmp", "var/www", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	conf := "[global]\npid = /run/php-fpm.pid\nerror_log = /run/error.log\ndaemonize = no\n\n" +
		"[www]\nlisten = /run/www.sock\nlisten.mode = 0666\npm = static\npm.max_children = 2\nuser = 33\ngroup = 33\n" +
		"pm.status_path = /status\npm.status_listen = /run/www-status.sock\nping.path = /ping\n"
	for name, body := range map[string]string{"etc/php-fpm.conf": conf, "var/www/app.php": "<?php echo 'v1';"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if prepare != nil {
		prepare(root)
	}
	f := &chrootFPM{root: root}
	f.cmd = exec.Command(bin, "-n", "-d", "zend_extension="+exts[0], "-d", "opcache.enable=1", "-d", "opcache.file_update_protection=0",
		"-F", "-y", "/etc/php-fpm.conf")
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	f.cmd.Dir = "/"
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		_ = f.cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		select {
		case <-waited:
			log, _ := os.ReadFile(filepath.Join(root, "run/error.log"))
			t.Fatalf("php-fpm in the chroot exited:\n%s", log)
		default:
		}
		return "sockets", len(fpmtest.ChildrenTitled(f.cmd.Process.Pid, "php-fpm: pool www")) == 2 &&
			fileExists(filepath.Join(root, "run/www-status.sock")) && fileExists(filepath.Join(root, "run/www.sock"))
	})
	return f
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// targets reads the master's config through its root, as discovery does.
func (f *chrootFPM) targets(t *testing.T) []Target {
	t.Helper()
	pid := f.cmd.Process.Pid
	root, err := foreignRoot(pid)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := TargetsOfMaster(Master{PID: pid, Config: "/etc/php-fpm.conf", Root: root})
	if err != nil || len(ts) != 1 {
		t.Fatalf("targets of the chrooted master: %v %v", ts, err)
	}
	return ts
}

// bindReadOnly mounts dir read-only on target, until the test ends.
func bindReadOnly(t *testing.T, dir, target string) {
	t.Helper()
	if err := unix.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("read-only remount: %v", err)
	}
}

// TestOpcacheInAnotherRoot: the opcache of a master in another root is
// read, reset and invalidated without a manual step. fpmguard places its
// script in that root, at the path php-fpm sees, through the checks of
// opcache.Place; where it may not, the error gives the one step; where the
// root links its directory to the host, nothing is written.
func TestOpcacheInAnotherRoot(t *testing.T) {
	dir := "/var/lib/fpmguard-test-" + strconv.Itoa(os.Getpid())
	ctx := context.Background()
	probe := func(t *testing.T, f *chrootFPM, dir string) (*OpcacheProber, []Target, *Report) {
		pr := testProber(30 * time.Second)
		pr.Opcache = &OpcacheProber{Client: pr.Client, Dir: dir}
		targets := f.targets(t)
		return pr.Opcache, targets, pr.ProbeAll(ctx, targets, nil)
	}

	t.Run("placed in the root", func(t *testing.T) {
		f := startChrootFPM(t, nil)
		o, targets, rep := probe(t, f, dir)
		if len(rep.Opcache) != 1 || rep.Opcache[0].Error != "" || !rep.Opcache[0].Enabled || rep.Opcache[0].MasterPID != f.cmd.Process.Pid {
			t.Fatalf("opcache of the chrooted master: %+v", rep.Opcache)
		}
		if want := dir + "/" + opcache.ScriptName(); rep.Opcache[0].Script != want || !fileExists(filepath.Join(f.root, want)) {
			t.Errorf("script %s, want %s inside the root", rep.Opcache[0].Script, want)
		}
		if fileExists(dir) {
			t.Errorf("%s was created on the host", dir)
		}
		res := o.Reset(ctx, targets, rep.Pools)
		if len(res) != 1 || !res[0].OK || res[0].ManualRestarts != 1 {
			t.Errorf("reset: %+v", res)
		}
		res = o.Invalidate(ctx, targets, rep.Pools, []string{"/var/www/app.php"}, "")
		if len(res) != 1 || !res[0].OK {
			t.Errorf("invalidate: %+v", res)
		}
		if ents, _ := os.ReadDir(filepath.Join(f.root, dir, "actions")); len(ents) != 0 {
			t.Errorf("action scripts left in the root: %v", ents)
		}
	})

	t.Run("a link to the host", func(t *testing.T) {
		host := fpmtest.Dir(t)
		f := startChrootFPM(t, func(root string) {
			if err := os.Symlink(host, filepath.Join(root, dir)); err != nil {
				t.Fatal(err)
			}
		})
		_, _, rep := probe(t, f, dir)
		if len(rep.Opcache) != 1 || !strings.Contains(rep.Opcache[0].Error, dir+" is a symlink") {
			t.Errorf("opcache through a planted link: %+v", rep.Opcache)
		}
		if ents, _ := os.ReadDir(host); len(ents) != 0 {
			t.Errorf("written on the host through the root's link: %v", ents)
		}
	})

	t.Run("a read-only root", func(t *testing.T) {
		f := startChrootFPM(t, nil)
		lib := filepath.Join(f.root, "var/lib")
		bindReadOnly(t, lib, lib)
		_, _, rep := probe(t, f, dir)
		if len(rep.Opcache) != 1 || !strings.Contains(rep.Opcache[0].Error, "read-only") ||
			!strings.Contains(rep.Opcache[0].Error, "mount a volume at "+dir+" in php-fpm's container") {
			t.Errorf("opcache in a read-only root: %+v", rep.Opcache)
		}
	})

	t.Run("a volume both mount", func(t *testing.T) {
		// The one step: a directory of fpmguard's, mounted read-only at the
		// same path in php-fpm's root.
		vol := filepath.Join(fpmtest.Dir(t), "vol")
		if err := os.Mkdir(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		f := startChrootFPM(t, func(root string) {
			if err := os.MkdirAll(filepath.Join(root, vol), 0o755); err != nil {
				t.Fatal(err)
			}
			for d := filepath.Join(root, vol); d != root; d = filepath.Dir(d) {
				_ = os.Chmod(d, 0o755)
			}
		})
		bindReadOnly(t, vol, filepath.Join(f.root, vol))
		o, targets, rep := probe(t, f, vol)
		if len(rep.Opcache) != 1 || rep.Opcache[0].Error != "" || !rep.Opcache[0].Enabled {
			t.Fatalf("opcache through a shared volume: %+v", rep.Opcache)
		}
		if !fileExists(filepath.Join(vol, opcache.ScriptName())) {
			t.Errorf("the script is not on fpmguard's side of the volume")
		}
		if res := o.Reset(ctx, targets, rep.Pools); len(res) != 1 || !res[0].OK {
			t.Errorf("reset through a shared volume: %+v", res)
		}
	})
}
