package safefile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// poolUser is the uid a pool's workers run as in these tests: Debian's
// www-data, who owns /run/php.
const poolUser = 33

// secret is what a root-only file holds; no error may show it.
const secret = "root:$y$j9T$SECRET-HASH:20228:0:99999:7:::"

func writeFile(t *testing.T, path, body string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// modes runs a test with openat2 and with the walk that stands in for it.
func modes(t *testing.T, fn func(t *testing.T)) {
	for _, kernel := range []bool{true, false} {
		name := "openat2"
		if !kernel {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			useOpenat2 = kernel
			t.Cleanup(func() { useOpenat2 = true })
			fn(t)
		})
	}
}

// TestHostileFiles: what a pool user can put where fpmguard reads (a pid
// file in /run/php) is refused quickly, and no error shows what the file
// holds.
func TestHostileFiles(t *testing.T) {
	modes(t, func(t *testing.T) {
		dir := t.TempDir()
		shadow := filepath.Join(dir, "shadow")
		writeFile(t, shadow, secret+"\n", 0o600, 0)
		huge := filepath.Join(dir, "huge")
		writeFile(t, huge, secret+"\n", 0o644, 0)
		if err := os.Truncate(huge, 1<<30); err != nil { // sparse: no disk used
			t.Fatal(err)
		}
		fifo := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, target := range map[string]string{"to-shadow": shadow, "to-zero": "/dev/zero", "to-fifo": fifo} {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		pool := filepath.Join(dir, "pool-owned")
		writeFile(t, pool, "1234\n", 0o644, poolUser)
		writable := filepath.Join(dir, "writable")
		writeFile(t, writable, "1234\n", 0o666, 0)
		pidRules := Rules{MaxBytes: 32, Owners: []uint32{0}, NoOtherWrite: true}
		cases := []struct {
			name  string
			path  string
			rules Rules
			want  error
		}{
			{"fifo", fifo, pidRules, ErrNotRegular},
			{"link to a FIFO", filepath.Join(dir, "to-fifo"), pidRules, syscall.ELOOP},
			{"link to a FIFO, followed", filepath.Join(dir, "to-fifo"), Rules{FollowLinks: true}, ErrNotRegular},
			{"link to /dev/zero", filepath.Join(dir, "to-zero"), pidRules, syscall.ELOOP},
			{"link to /dev/zero, followed", filepath.Join(dir, "to-zero"), Rules{FollowLinks: true}, ErrNotRegular},
			{"/dev/zero", "/dev/zero", Rules{}, ErrNotRegular},
			{"link to a root-only file", filepath.Join(dir, "to-shadow"), pidRules, syscall.ELOOP},
			{"huge", huge, pidRules, ErrTooLarge},
			{"huge, no bound given", huge, Rules{}, ErrTooLarge},
			{"owned by the pool user", pool, pidRules, ErrOwner},
			{"writable by others", writable, pidRules, ErrWritable},
			{"root-only, read for the pool user", shadow, Rules{ReadableBy: &Cred{UID: poolUser, GIDs: []uint32{poolUser}}}, ErrUnreadable},
			{"a directory", dir, Rules{}, ErrNotRegular},
			{"missing", filepath.Join(dir, "missing"), Rules{}, fs.ErrNotExist},
		}
		for _, c := range cases {
			start := time.Now()
			data, err := ReadFile("", c.path, c.rules)
			if !errors.Is(err, c.want) || data != nil {
				t.Errorf("%s: %q, %v; want %v", c.name, data, err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "root:")) {
				t.Errorf("%s: the error shows the file: %v", c.name, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s: took %v", c.name, d)
			}
		}
		// What passes is read whole.
		ok := filepath.Join(dir, "pid")
		writeFile(t, ok, "1234\n", 0o644, 0)
		if data, err := ReadFile("", ok, pidRules); err != nil || string(data) != "1234\n" {
			t.Errorf("pid file: %q, %v", data, err)
		}
		if data, err := ReadFile("", shadow, Rules{ReadableBy: &Cred{UID: 0}}); err != nil || string(data) != secret+"\n" {
			t.Errorf("root reads a root-only file: %q, %v", data, err)
		}
	})
}

// TestGrowsPastBound: a file that passes the size check and grows before
// the read is still cut at the bound.
func TestGrowsPastBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grows")
	writeFile(t, path, "12", 0o644, 0)
	testHookOpened = func(string) {
		if err := os.WriteFile(path, []byte(strings.Repeat("9", 100)), 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { testHookOpened = nil })
	if data, err := ReadFile("", path, Rules{MaxBytes: 10}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("got %q, %v; want ErrTooLarge", data, err)
	}
}

// TestSwappedBetweenChecks: the checks are made on the descriptor that is
// read. A file swapped in after the open, as a check by name would see it,
// changes nothing: what was opened is judged and read.
func TestSwappedBetweenChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "php-fpm.pid")
	rootOwned := filepath.Join(dir, "root-owned")
	poolOwned := filepath.Join(dir, "pool-owned")
	rules := Rules{MaxBytes: 32, Owners: []uint32{0}, NoOtherWrite: true}

	// The pool user's file is opened, then a root-owned one takes its
	// name: a check by name would now pass.
	writeFile(t, path, "666\n", 0o644, poolUser)
	writeFile(t, rootOwned, "1234\n", 0o644, 0)
	testHookOpened = func(string) {
		if err := os.Rename(rootOwned, path); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { testHookOpened = nil })
	if data, err := ReadFile("", path, rules); !errors.Is(err, ErrOwner) {
		t.Errorf("swapped to a root-owned file after the open: %q, %v; want ErrOwner", data, err)
	}

	// The other way round: root's file is opened, then the pool user's
	// takes its name. Root's is what is read.
	writeFile(t, path, "1234\n", 0o644, 0)
	writeFile(t, poolOwned, "666\n", 0o644, poolUser)
	testHookOpened = func(string) {
		if err := os.Rename(poolOwned, path); err != nil {
			t.Error(err)
		}
	}
	if data, err := ReadFile("", path, rules); err != nil || string(data) != "1234\n" {
		t.Errorf("swapped to the pool user's file after the open: %q, %v; want root's 1234", data, err)
	}
}

// TestInRoot: inside a root, links resolve as the root's processes see
// them, and nothing leads out of it: an absolute link starts again at the
// root, ".." stops there, /proc's magic links lead nowhere.
func TestInRoot(t *testing.T) {
	modes(t, func(t *testing.T) {
		host := t.TempDir()
		hostFile := filepath.Join(host, "host.conf")
		writeFile(t, hostFile, "host\n", 0o644, 0)
		root := t.TempDir()
		for _, d := range []string{"etc/php", "srv", "run/php"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, filepath.Join(root, "srv/www.conf"), "inside\n", 0o644, 0)
		// The same name as the host's file, inside the root.
		if err := os.MkdirAll(filepath.Join(root, host), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, hostFile), "root's own\n", 0o644, 0)
		links := map[string]string{
			"etc/php/abs.conf":   "/srv/www.conf",
			"etc/php/climb.conf": "../../../../../../srv/www.conf",
			"etc/php/host.conf":  hostFile, // the host's path: inside, it is the root's own file
			"etc/php/zero":       "/dev/zero",
			"etc/php/self":       "/proc/self/root" + hostFile,
			"var":                "/",
		}
		for link, target := range links {
			if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
		}
		follow := Rules{FollowLinks: true}
		for path, want := range map[string]string{
			"/etc/php/abs.conf":                      "inside\n",
			"/etc/php/climb.conf":                    "inside\n",
			"/../../etc/php/abs.conf":                "inside\n",
			"/etc/php/host.conf":                     "root's own\n",
			"/var/var/var/srv/www.conf":              "inside\n",
			"/var/etc/php/../../srv/../srv/www.conf": "inside\n",
		} {
			data, err := ReadFile(root, path, follow)
			if err != nil || string(data) != want {
				t.Errorf("%s: %q, %v; want %q", path, data, err, want)
			}
		}
		for _, path := range []string{"/etc/php/zero", "/etc/php/self"} {
			if data, err := ReadFile(root, path, follow); err == nil {
				t.Errorf("%s: read %q, want an error", path, data)
			}
		}
		// Without FollowLinks a link in the last component is refused;
		// links in directories are still followed, inside the root.
		if _, err := ReadFile(root, "/etc/php/abs.conf", Rules{}); !errors.Is(err, syscall.ELOOP) {
			t.Errorf("link in the last component: %v, want ELOOP", err)
		}
		if data, err := ReadFile(root, "/var/srv/www.conf", Rules{}); err != nil || string(data) != "inside\n" {
			t.Errorf("link in a directory: %q, %v", data, err)
		}
	})
}

// TestSocketInRoot: a socket is reached through the root at every open: a
// link swapped in later that names a host socket leads to the root's own
// path, not to the host's socket.
func TestSocketInRoot(t *testing.T) {
	modes(t, func(t *testing.T) {
		host, err := os.MkdirTemp("", "safefile-host")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(host) })
		hostSock := filepath.Join(host, "host.sock")
		ln, err := net.Listen("unix", hostSock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		root, err := os.MkdirTemp("", "safefile-root")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
		if err := os.MkdirAll(filepath.Join(root, "run/php"), 0o755); err != nil {
			t.Fatal(err)
		}
		inside := filepath.Join(root, "run/php/www.sock")
		ln2, err := net.Listen("unix", inside)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln2.Close() })

		fd, err := OpenSocket(root, "/run/php/www.sock")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", FDPath(fd))
		unix.Close(fd)
		if err != nil {
			t.Fatalf("connect through the descriptor: %v", err)
		}
		c.Close()

		// The pool user swaps the socket for a link to the host's.
		if err := os.Remove(inside); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(hostSock, inside); err != nil {
			t.Fatal(err)
		}
		if fd, err := OpenSocket(root, "/run/php/www.sock"); !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("swapped for a link to the host's socket: %v, want it not found inside the root", err)
		}
		// A file where a socket should be.
		writeFile(t, filepath.Join(root, "run/php/file.sock"), "", 0o644, 0)
		if _, err := OpenSocket(root, "/run/php/file.sock"); !errors.Is(err, ErrNotSocket) {
			t.Errorf("a regular file: %v, want ErrNotSocket", err)
		}
	})
}

// TestOnlyRootMayChange: a path only root can change, and each way the
// pool user could change what it names: the file, a directory on the way,
// a link on the way, the directory a link leads to.
func TestOnlyRootMayChange(t *testing.T) {
	base := t.TempDir() // under /tmp: sticky, and root's
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(rel string, uid int, mode os.FileMode) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("etc", 0, 0o755)
	mk("pool", poolUser, 0o755)
	mk("open", 0, 0o777)
	writeFile(t, filepath.Join(base, "etc/ok.conf"), "", 0o644, 0)
	writeFile(t, filepath.Join(base, "etc/theirs.conf"), "", 0o644, poolUser)
	writeFile(t, filepath.Join(base, "etc/writable.conf"), "", 0o666, 0)
	writeFile(t, filepath.Join(base, "pool/root.conf"), "", 0o644, 0)
	writeFile(t, filepath.Join(base, "open/root.conf"), "", 0o644, 0)
	for link, target := range map[string]string{"etc/link.conf": "ok.conf", "etc/to-pool": "../pool", "pool/link.conf": "../etc/ok.conf"} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	for rel, want := range map[string]error{
		"etc/ok.conf":           nil,
		"etc/link.conf":         nil,
		"etc/../etc/ok.conf":    nil,
		"etc/theirs.conf":       ErrNotRootOnly,
		"etc/writable.conf":     ErrNotRootOnly,
		"pool/root.conf":        ErrNotRootOnly, // the pool user may swap it
		"pool/link.conf":        ErrNotRootOnly, // the pool user may change the link
		"etc/to-pool/root.conf": ErrNotRootOnly, // the link is root's, where it leads is not
		"open/root.conf":        ErrNotRootOnly,
		"etc":                   ErrNotRegular,
		"etc/missing.conf":      fs.ErrNotExist,
	} {
		err := OnlyRootMayChange(filepath.Join(base, rel))
		if (want == nil) != (err == nil) || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", rel, err, want)
		}
	}
}
