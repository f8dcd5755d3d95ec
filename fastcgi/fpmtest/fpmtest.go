// Package fpmtest starts a real php-fpm for tests, the way httptest starts
// an HTTP server: a master of its own in a temporary directory, with its own
// sockets and config, stopped with every worker when the test ends, even if
// the test fails. It starts a real nginx in front of it too, for tests of
// what nginx users see. Options.Version picks the PHP version: the host's
// php-fpm, or another one run in a root filesystem of its own, as in a
// container (versions.go).
package fpmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// Pool describes one pool of the test master.
type Pool struct {
	Name         string   // "www" if empty
	PM           string   // "static" if empty
	MaxChildren  int      // 2 if 0
	StatusPath   string   // pm.status_path; "/status" if empty, "-" for none
	PingPath     string   // ping.path; "/ping" if empty, "-" for none
	Socket       string   // listen: a file name in the test's directory; NAME.sock if empty
	StatusListen bool     // give the pool a pm.status_listen socket
	Slowlog      bool     // request_slowlog_timeout = 1s with a slowlog file
	Extra        []string // more "key = value" lines for the pool
}

// Options describe the master.
type Options struct {
	Pools   []Pool            // one default pool if empty
	Defines map[string]string // php.ini settings passed as -d, e.g. opcache sizes
	Files   map[string]string // PHP files written into the document root
	// Version is the PHP version, one of Versions: "" or HostVersion is
	// the host's php-fpm, another runs php-fpm with chroot in its root.
	Version string
}

// FPM is a running test master. Every path is a host path; for a version
// run in a chroot it lies inside Root, and InRoot gives the path php-fpm
// sees.
type FPM struct {
	Dir        string // the temporary directory holding everything
	DocRoot    string // where Files are written
	Conf       string // the php-fpm.conf path
	Pools      map[string]*RunningPool
	Version    string // the matrix version asked for: "7.4", "8.2", "8.4"
	PHPVersion string // the version php-fpm reports, e.g. "7.4.33"
	Binary     string // the php-fpm binary
	Root       string // the root filesystem php-fpm runs in; "" on the host
	argv       []string
	cmd        *exec.Cmd
	waited     chan struct{}
	waitErr    error
	stopOnce   sync.Once
}

// RunningPool tells where a pool listens.
type RunningPool struct {
	Pool
	Listen       string // unix socket path nginx would use
	StatusSocket string // pm.status_listen socket, or ""
	SlowlogPath  string
}

// Binary finds the php-fpm binary: $PHP_FPM, then php-fpm, php-fpm8.x on
// PATH and in /usr/sbin.
func Binary() (string, error) {
	if b := os.Getenv("PHP_FPM"); b != "" {
		return b, nil
	}
	names := []string{"php-fpm", "php-fpm8.4", "php-fpm8.3", "php-fpm8.2", "php-fpm8.1", "php-fpm8.0", "php-fpm7.4"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		if p := filepath.Join("/usr/sbin", n); isExec(p) {
			return p, nil
		}
	}
	return "", errors.New("php-fpm not found: run `make deps` (installs php8.2-fpm) or set PHP_FPM")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Start writes the config, starts `php-fpm -F -y`, waits until every pool's
// socket accepts connections and registers the cleanup. It fails the test if
// php-fpm is missing: integration tests must not pass by skipping.
func Start(t testing.TB, opts Options) *FPM {
	t.Helper()
	f := New(t, opts)
	f.Start(t)
	return f
}

// New writes the config and the files without starting php-fpm, for tests
// that start it their own way (Argv gives the command line).
func New(t testing.TB, opts Options) *FPM {
	t.Helper()
	rt, err := buildOf(opts.Version)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range opts.Pools {
		if p.StatusListen && !HasStatusListen(opts.Version) {
			t.Fatalf("fpmtest: pool %q asks for pm.status_listen, which PHP %s does not have (php-fpm 8.0 brought it): ask for it only where fpmtest.HasStatusListen", p.Name, rt.phpVersion)
		}
	}
	var dir string
	if rt.root == "" {
		dir = Dir(t)
	} else {
		dir = rootDir(t, rt.root)
	}
	f := &FPM{Dir: dir, DocRoot: filepath.Join(dir, "www"), Conf: filepath.Join(dir, "php-fpm.conf"), Pools: map[string]*RunningPool{}, waited: make(chan struct{}),
		Version: opts.Version, PHPVersion: rt.phpVersion, Binary: rt.binary, Root: rt.root}
	if f.Version == "" {
		f.Version = HostVersion
	}
	if err := os.Mkdir(f.DocRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range opts.Files {
		f.WriteFile(t, name, body)
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []Pool{{}}
	}
	conf := f.config(opts.Pools)
	if err := os.WriteFile(f.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f.argv = []string{rt.inRoot, "-F", "-y", f.InRoot(f.Conf)}
	if f.Root != "" {
		f.argv = append([]string{chrootBinary(), f.Root}, f.argv...)
	}
	keys := make([]string, 0, len(opts.Defines))
	for k := range opts.Defines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f.argv = append(f.argv, "-d", k+"="+opts.Defines[k])
	}
	return f
}

// Argv is the php-fpm command line for this config, as the host runs it:
// for a version in a root, `chroot ROOT php-fpmX.Y ...`.
func (f *FPM) Argv() []string { return append([]string(nil), f.argv...) }

// InRootArgv is the php-fpm command line as a process inside f's root
// runs it (see Command); on the host, Argv.
func (f *FPM) InRootArgv() []string {
	if f.Root == "" {
		return f.Argv()
	}
	return append([]string(nil), f.argv[2:]...)
}

// Start starts php-fpm and waits for its sockets.
func (f *FPM) Start(t testing.TB) {
	t.Helper()
	if f.Root == "" {
		f.cmd = exec.Command(f.argv[0], f.argv[1:]...)
	} else {
		// As in a container: a mount namespace of its own, with a /proc.
		f.cmd = f.newNamespace(f.InRootArgv()...)
	}
	f.cmd.Dir = f.Dir
	// A group of its own, so cleanup reaches workers orphaned by a test
	// that kills the master.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(f.Dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.cmd.Stdout, f.cmd.Stderr = logf, logf
	if err := f.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", f.argv[0], err)
	}
	go func() {
		f.waitErr = f.cmd.Wait()
		logf.Close()
		close(f.waited)
	}()
	t.Cleanup(func() { f.Stop(t) })
	// Generous: a loaded runner may take seconds to start php-fpm, and the
	// wait ends as soon as it is ready.
	if err := f.WaitSockets(60 * time.Second); err != nil {
		t.Fatalf("php-fpm did not start: %v\n%s", err, f.Log())
	}
}

// WaitSockets waits until php-fpm is ready: its pid file written, every
// pool's sockets accepting connections and a static pool's workers forked.
func (f *FPM) WaitSockets(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		pid, _ := os.ReadFile(filepath.Join(f.Dir, "php-fpm.pid"))
		if len(strings.TrimSpace(string(pid))) > 0 {
			break
		}
		select {
		case <-f.waited:
			return fmt.Errorf("php-fpm exited while starting")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("php-fpm wrote no pid file within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range f.Pools {
		if p.PM == "static" && f.cmd != nil {
			for len(f.WorkerPIDs(p.Name)) < p.MaxChildren {
				if time.Now().After(deadline) {
					return fmt.Errorf("pool %s forked fewer than %d workers within %v", p.Name, p.MaxChildren, d)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		for _, sock := range []string{p.Listen, p.StatusSocket} {
			if sock == "" {
				continue
			}
			if err := waitSocket(sock, f.InRoot(sock), deadline, f.waited); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteFile writes a file into the document root, readable by the workers,
// and returns its path.
func (f *FPM) WriteFile(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(f.DocRoot, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *FPM) config(pools []Pool) string {
	var b strings.Builder
	// Paths are quoted: a test name may put '=' or ';' in them.
	fmt.Fprintf(&b, "[global]\npid = %q\nerror_log = %q\ndaemonize = no\nlog_level = notice\n",
		f.InRoot(filepath.Join(f.Dir, "php-fpm.pid")), f.InRoot(filepath.Join(f.Dir, "error.log")))
	asRoot := os.Geteuid() == 0
	for _, p := range pools {
		rp := &RunningPool{Pool: p}
		if rp.Name == "" {
			rp.Name = "www"
		}
		if rp.PM == "" {
			rp.PM = "static"
		}
		if rp.MaxChildren == 0 {
			rp.MaxChildren = 2
		}
		if rp.StatusPath == "" {
			rp.StatusPath = "/status"
		}
		if rp.PingPath == "" {
			rp.PingPath = "/ping"
		}
		rp.Listen = filepath.Join(f.Dir, rp.Name+".sock")
		if p.Socket != "" {
			rp.Listen = filepath.Join(f.Dir, p.Socket)
		}
		fmt.Fprintf(&b, "\n[%s]\nlisten = %q\nlisten.mode = 0666\npm = %s\npm.max_children = %d\n", rp.Name, f.InRoot(rp.Listen), rp.PM, rp.MaxChildren)
		if rp.PM == "dynamic" {
			fmt.Fprintf(&b, "pm.start_servers = 1\npm.min_spare_servers = 1\npm.max_spare_servers = %d\n", rp.MaxChildren)
		}
		if asRoot {
			// A root of .ci/rootfs is Debian's, with www-data.
			usr, grp := "www-data", "www-data"
			if f.Root == "" {
				usr, grp = unprivileged()
			}
			fmt.Fprintf(&b, "user = %s\ngroup = %s\n", usr, grp)
		}
		if rp.StatusPath != "-" {
			fmt.Fprintf(&b, "pm.status_path = %s\n", rp.StatusPath)
		}
		if rp.PingPath != "-" {
			fmt.Fprintf(&b, "ping.path = %s\n", rp.PingPath)
		}
		if rp.StatusListen {
			rp.StatusSocket = filepath.Join(f.Dir, rp.Name+"-status.sock")
			fmt.Fprintf(&b, "pm.status_listen = %q\n", f.InRoot(rp.StatusSocket))
		}
		if rp.Slowlog {
			rp.SlowlogPath = filepath.Join(f.Dir, rp.Name+"-slow.log")
			fmt.Fprintf(&b, "slowlog = %q\nrequest_slowlog_timeout = 1s\n", f.InRoot(rp.SlowlogPath))
		}
		b.WriteString("catch_workers_output = yes\n")
		for _, l := range rp.Extra {
			b.WriteString(l + "\n")
		}
		f.Pools[rp.Name] = rp
	}
	return b.String()
}

// unprivileged names the user and group workers run as under a root master.
func unprivileged() (string, string) {
	usr := "nobody"
	if _, err := user.Lookup("www-data"); err == nil {
		usr = "www-data"
	}
	for _, g := range []string{"www-data", "nogroup", "nobody"} {
		if _, err := user.LookupGroup(g); err == nil {
			return usr, g
		}
	}
	return usr, usr
}

// waitSocket waits until a socket listens at path, which php-fpm bound as
// bound (the path it sees in its root).
func waitSocket(path, bound string, deadline time.Time, exited <-chan struct{}) error {
	for {
		if listening(bound) && isSocket(path) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("php-fpm exited before %s accepted connections", path)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no socket listens there", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// listening reports whether a unix socket listens at path, from the
// kernel's table, which names a socket by the path its process bound, in
// that process's root. A test connection would be queued for a worker,
// counted in the pool's accepted connections, and start a worker of an
// ondemand pool, all after the test began.
func listening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// Num RefCount Protocol Flags Type St Inode Path; __SO_ACCEPTCON
		// (0x10000) in Flags marks a listening socket.
		if len(f) == 8 && f[7] == path && f[3] == "00010000" {
			return true
		}
	}
	return false
}

// MasterPID is the master's pid.
func (f *FPM) MasterPID() int { return f.cmd.Process.Pid }

// Exited is closed when the master has exited and been reaped.
func (f *FPM) Exited() <-chan struct{} { return f.waited }

// Log returns php-fpm's error log and stderr, for failure messages.
func (f *FPM) Log() string {
	var b strings.Builder
	for _, n := range []string{"error.log", "stderr.log"} {
		if data, err := os.ReadFile(filepath.Join(f.Dir, n)); err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// Signal sends sig to the master.
func (f *FPM) Signal(sig syscall.Signal) error { return f.cmd.Process.Signal(sig) }

// WorkerPIDs lists the pids of the pool's workers from the process table.
func (f *FPM) WorkerPIDs(pool string) []int {
	return ChildrenTitled(f.MasterPID(), "php-fpm: pool "+pool)
}

// ChildrenTitled lists the live children of ppid whose process title is title.
func ChildrenTitled(ppid int, title string) []int {
	var out []int
	EachProc(func(pid int, state byte, parent, _ int) {
		if parent != ppid || state == 'Z' {
			return
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if strings.TrimRight(strings.ReplaceAll(string(cmd), "\x00", " "), " ") == title {
			out = append(out, pid)
		}
	})
	sort.Ints(out)
	return out
}

// stop ends the master gracefully, then the whole group by force, and waits
// until no process of the group is left.
// Stop stops php-fpm and every worker now, rather than when the test ends.
func (f *FPM) Stop(t testing.TB) { f.stopOnce.Do(func() { f.stop(t) }) }

// Restart stops php-fpm and starts it again on the same config, in the
// same root: a new master pid, as a restart by an init system gives.
func (f *FPM) Restart(t testing.TB) {
	t.Helper()
	f.Stop(t)
	f.stopOnce, f.waited = sync.Once{}, make(chan struct{})
	f.Start(t)
}

// Reconfigure writes the config again with pools, as an operator edits
// php-fpm.conf, and tells php-fpm nothing: Signal(syscall.SIGUSR2) then
// reloads it, and WaitSockets waits for the new pools.
func (f *FPM) Reconfigure(t testing.TB, pools []Pool) {
	t.Helper()
	for _, p := range pools {
		if p.StatusListen && !HasStatusListen(f.Version) {
			t.Fatalf("fpmtest: pool %q asks for pm.status_listen, which PHP %s does not have", p.Name, f.PHPVersion)
		}
	}
	f.Pools = map[string]*RunningPool{}
	if err := os.WriteFile(f.Conf, []byte(f.config(pools)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *FPM) stop(t testing.TB) {
	pgid := f.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGQUIT)
	select {
	case <-f.waited:
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-f.waited
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			t.Errorf("php-fpm process group %d still has processes after cleanup", pgid)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
	if t.Failed() {
		t.Logf("php-fpm log:\n%s", f.Log())
	}
}

// groupAlive reports whether a live process of group pgid is left. Zombies
// do not count: orphans are reparented to PID 1, which may never reap them.
func groupAlive(pgid int) bool {
	found := false
	EachProc(func(pid int, state byte, ppid, pgrp int) {
		if pgrp == pgid && state != 'Z' && state != 'X' {
			found = true
		}
	})
	return found
}

// EachProc calls fn for every process in /proc with fields of its stat line.
func EachProc(fn func(pid int, state byte, ppid, pgrp int)) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		fn(pid, f[0][0], ppid, pgrp)
	}
}

// Dir returns a new temporary directory that php-fpm's workers, which run
// as another user under a root test, can read: t.TempDir and its parent are
// 0700.
func Dir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Poll calls fn until it reports done and returns its value, failing the
// test when d passes first. Tests wait with it instead of sleeping.
func Poll[T any](t testing.TB, d time.Duration, fn func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := fn()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v; last: %+v", d, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Golden compares got with the file testdata/name, or writes got there
// when update is set: each test package that has golden files registers
// its own -update flag, so no other test binary shows one.
func Golden(t testing.TB, name string, got []byte, update bool) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (go test -update creates it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what was produced:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// FreePort returns a local TCP port nothing listens on now.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// WaitWorker waits until pool's status page shows a worker for which want
// is true, and returns its pid. It reads the page through pm.status_listen
// when the pool has it, so busy workers do not delay it; else through the
// pool's socket, and the worker serving that read is never the one. Its
// limits are generous, for a loaded runner: it returns as soon as the
// worker shows.
func (f *FPM) WaitWorker(t testing.TB, pool string, want func(fastcgi.Process) bool) int {
	t.Helper()
	p := f.Pools[pool]
	sock := p.StatusSocket
	if sock == "" {
		sock = p.Listen
	}
	c := fastcgi.Client{Timeout: 10 * time.Second}
	return Poll(t, 30*time.Second, func() (int, bool) {
		st, err := c.Status(context.Background(), fastcgi.Address{Network: "unix", Addr: sock}, p.StatusPath)
		if err != nil {
			return 0, false
		}
		for _, w := range st.Processes {
			// Without pm.status_listen (PHP 7.4) a worker serves this very
			// status request, Running too: it is not the worker waited for.
			if sock == p.Listen && w.State != fastcgi.StateIdle && strings.HasPrefix(w.RequestURI, p.StatusPath+"?") {
				continue
			}
			if want(w) {
				return w.PID, true
			}
		}
		return 0, false
	})
}

// Running is WaitWorker's test for a worker serving a request.
func Running(p fastcgi.Process) bool { return p.State == "Running" }

// RequireIntegration skips a test that cannot run on this machine (no
// root, no cgroup controller, a tool missing), saying why, but fails it
// when make test asked for every integration test to run
// (FPMGUARD_INTEGRATION=require).
func RequireIntegration(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("FPMGUARD_INTEGRATION") == "require" {
		t.Fatalf("integration test cannot run: %s", why)
	}
	t.Skip(why)
}
