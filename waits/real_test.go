package waits

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// The tests in this file hang real php-fpm workers on real peers and read
// their waits, as fpmguard would, with the worker's identity checked.

// privateAddr returns a loopback address of the test's own on port, so
// that a peer may sit on a well-known port (3306, 80, 53) without meeting
// anything else on this machine.
func privateAddr(port int) string {
	return fmt.Sprintf("127.%d.%d.%d:%d", 100+rand.IntN(100), rand.IntN(250)+1, rand.IntN(250)+1, port)
}

// silentTCP listens on addr and accepts connections without ever reading
// or answering, until the test ends.
func silentTCP(t testing.TB, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// silentUDP binds addr and never answers.
func silentUDP(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// startPool starts php-fpm with the scripts and a status socket of its own,
// so that busy workers never delay the test's status reads.
func startPool(t *testing.T, workers int, files map[string]string, extra ...string) *fpmtest.FPM {
	t.Helper()
	return fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: workers, StatusListen: true, Extra: extra}},
		Files: files,
		// A long default_socket_timeout keeps stream reads waiting for the
		// whole test.
		Defines: map[string]string{"default_socket_timeout": "600", "max_execution_time": "0"},
	})
}

// request sends one request for script to pool www in the background; it
// ends with the test.
func request(t *testing.T, f *fpmtest.FPM, script, query string) {
	f.Background(t, 1, script, query)
}

// waitFor reads the wait of the worker running script until cond holds,
// and returns it. The worker's identity (start, master) is checked on every
// read.
func waitFor(t *testing.T, f *fpmtest.FPM, script string, cond func(Wait) bool) Wait {
	t.Helper()
	pid := f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.HasSuffix(p.Script, "/"+script)
	})
	return readUntil(t, f, pid, cond)
}

func readUntil(t *testing.T, f *fpmtest.FPM, pid int, cond func(Wait) bool) Wait {
	t.Helper()
	r := NewReader()
	tg := Target{PID: pid, StartTicks: startOf(t, pid), PPID: f.MasterPID()}
	return fpmtest.Poll(t, 60*time.Second, func() (Wait, bool) {
		w := r.Read(context.Background(), []Target{tg})[0]
		return w, cond(w)
	})
}

// runningPIDs waits until n workers run script, and returns them.
func runningPIDs(t *testing.T, f *fpmtest.FPM, script string, n int) []int {
	t.Helper()
	p := f.Pools["www"]
	c := fastcgi.Client{Timeout: 10 * time.Second}
	return fpmtest.Poll(t, 60*time.Second, func() ([]int, bool) {
		st, err := c.Status(context.Background(), fastcgi.Address{Network: "unix", Addr: p.StatusSocket}, p.StatusPath)
		if err != nil {
			return nil, false
		}
		var pids []int
		for _, w := range st.Processes {
			if w.State == "Running" && strings.HasSuffix(w.Script, "/"+script) {
				pids = append(pids, w.PID)
			}
		}
		return pids, len(pids) == n
	})
}

func startOf(t *testing.T, pid int) uint64 {
	t.Helper()
	st, err := readStat(hostProc{root: "/proc"}, pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.start
}

func kindIs(k Kind) func(Wait) bool { return func(w Wait) bool { return w.Kind == k } }

// TestRealSilentTCPPeer: fread() on a connection to a peer that never
// answers is a network read from that peer, on the fd of that connection,
// read from the poll's own arguments.
func TestRealSilentTCPPeer(t *testing.T) {
	addr := silentTCP(t, privateAddr(6379))
	f := startPool(t, 2, map[string]string{
		"net.php": `<?php $s = stream_socket_client("tcp://` + addr + `", $errno, $err, 10); fwrite($s, "PING\r\n"); echo fread($s, 10);`,
	})
	request(t, f, "net.php", "")
	w := waitFor(t, f, "net.php", kindIs(KindNetRead))
	if w.Peer == nil || w.Peer.Remote.String() != addr || w.Peer.Service != ServiceRedis || w.Peer.Transport != TransportTCP {
		t.Fatalf("wait %+v peer %+v: want a TCP read from %s (Redis)", w, w.Peer, addr)
	}
	if w.FDGuessed || w.FD < 0 || w.Syscall != "poll" {
		t.Errorf("wait %+v: want the fd read from the poll's arguments", w)
	}
	if got, want := w.What(), "blocked reading from "+addr+" (Redis)"; got != want {
		t.Errorf("What() = %q, want %q", got, want)
	}
}

// TestRealSleep: sleep() is a sleep.
func TestRealSleep(t *testing.T) {
	f := startPool(t, 2, map[string]string{"sleep.php": `<?php sleep(600);`})
	request(t, f, "sleep.php", "")
	w := waitFor(t, f, "sleep.php", kindIs(KindSleep))
	if w.Syscall != "clock_nanosleep" && w.Syscall != "nanosleep" && w.Syscall != "restart_syscall" {
		t.Errorf("sleep in %q", w.Syscall)
	}
}

// TestRealSpinning: a worker burning a CPU is running.
func TestRealSpinning(t *testing.T) {
	f := startPool(t, 2, map[string]string{"spin.php": fpmtest.SpinPHP})
	request(t, f, "spin.php", "s=600")
	waitFor(t, f, "spin.php", kindIs(KindRunning))
}

// TestRealFileLock: a worker waiting in flock() for a file another worker
// holds names the file as the worker sees it and the holder.
func TestRealFileLock(t *testing.T) {
	f := startPool(t, 3, map[string]string{
		"lock.php": `<?php $f = fopen(__DIR__ . "/app.lock", "c"); flock($f, LOCK_EX); if (isset($_GET["hold"])) { sleep(600); }`,
	})
	// The workers run as another user: the lock file is theirs to open.
	if err := os.Chmod(f.WriteFile(t, "app.lock", ""), 0o666); err != nil {
		t.Fatal(err)
	}
	request(t, f, "lock.php", "hold=1")
	holder := f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.Contains(p.RequestURI, "hold=1")
	})
	readUntil(t, f, holder, kindIs(KindSleep))
	request(t, f, "lock.php", "wait=1")
	waiter := f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.Contains(p.RequestURI, "wait=1")
	})
	w := readUntil(t, f, waiter, kindIs(KindLock))
	want := filepath.Join(f.DocRoot, "app.lock")
	if w.Lock.Path != want || w.Lock.Holder != holder || w.Lock.Type != "FLOCK" || w.Syscall != "flock" {
		t.Errorf("lock %+v in %s: want %s held by %d with flock", w.Lock, w.Syscall, want, holder)
	}
	if w.Lock.HolderStart != startOf(t, holder) {
		t.Errorf("holder start %d, want %d", w.Lock.HolderStart, startOf(t, holder))
	}
}

// TestRealCurlSilentHTTP: curl to an HTTP server that accepts and never
// answers is a network read from it. curl polls its connection and a
// wakeup socket pair of its own, and wakes every second: the pair is not
// taken for the peer, and a wake between two readings is read again.
func TestRealCurlSilentHTTP(t *testing.T) {
	addr := silentTCP(t, privateAddr(80))
	f := startPool(t, 2, map[string]string{
		"curl.php": `<?php $c = curl_init("http://` + addr + `/api"); curl_setopt($c, CURLOPT_TIMEOUT, 600); curl_exec($c);`,
	})
	request(t, f, "curl.php", "")
	w := waitFor(t, f, "curl.php", kindIs(KindNetRead))
	if w.Peer.Remote.String() != addr || w.Peer.Service != ServiceHTTP || w.FDGuessed {
		t.Errorf("wait %+v peer %+v: want a read from %s (HTTP), its fd known", w, w.Peer, addr)
	}
}

// TestRealDNS: a lookup through the C library's resolver, to a name server
// that never answers, is a DNS wait on port 53. The pool is chrooted into
// a directory whose etc/resolv.conf names a silent server of the test's
// own: the worker's resolver reads it from there, nothing else on the
// machine does. Its workers are also in another root: a lock file there is
// named as the worker names it, not by fpmguard's path to it.
func TestRealDNS(t *testing.T) {
	ns := silentUDP(t, privateAddr(53))
	host, _, _ := net.SplitHostPort(ns)
	root := fpmtest.Dir(t)
	for name, body := range map[string]string{
		"etc/resolv.conf": "nameserver " + host + "\noptions timeout:30 attempts:5\n",
		"dns.php":         `<?php echo gethostbyname("fpmguard-test.example");`,
		"lock.php":        `<?php $f = fopen("/app.lock", "c"); flock($f, LOCK_EX); if (isset($_GET["hold"])) { sleep(600); }`,
		"app.lock":        "",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	f := fpmtest.Start(t, fpmtest.Options{
		Pools:   []fpmtest.Pool{{MaxChildren: 3, StatusListen: true, Extra: []string{"chroot = " + root}}},
		Defines: map[string]string{"max_execution_time": "0"},
	})
	// The scripts are named as the chrooted workers see them.
	inRootRequest := func(script, query string) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = fastcgi.Client{Timeout: 10 * time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen},
				fastcgi.Request{Path: "/" + script, Query: query, Script: "/" + script})
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	running := func(uri string) int {
		return f.WaitWorker(t, "www", func(p fastcgi.Process) bool { return p.State == "Running" && p.RequestURI == uri })
	}

	inRootRequest("dns.php", "")
	w := readUntil(t, f, running("/dns.php"), kindIs(KindDNS))
	if w.Peer.Remote.String() != ns || w.Peer.Transport != TransportUDP || w.Peer.Service != ServiceDNS || w.FDGuessed {
		t.Errorf("wait %+v peer %+v: want DNS from udp %s, its fd known", w, w.Peer, ns)
	}
	if got, want := w.What(), "waiting for DNS from "+ns+" over UDP"; got != want {
		t.Errorf("What() = %q, want %q", got, want)
	}

	inRootRequest("lock.php", "hold=1")
	holder := running("/lock.php?hold=1")
	readUntil(t, f, holder, kindIs(KindSleep))
	inRootRequest("lock.php", "wait=1")
	w = readUntil(t, f, running("/lock.php?wait=1"), kindIs(KindLock))
	if w.Lock.Path != "/app.lock" || w.Lock.Holder != holder {
		t.Errorf("lock %+v: want /app.lock, as the worker names it, held by %d", w.Lock, holder)
	}
}

// TestRealNotOurWorker: a pid that is not the worker named, or no longer
// is, is unknown, never read as the worker's wait.
func TestRealNotOurWorker(t *testing.T) {
	f := startPool(t, 2, map[string]string{"sleep.php": `<?php sleep(600);`})
	request(t, f, "sleep.php", "")
	pid := f.WaitWorker(t, "www", func(p fastcgi.Process) bool { return p.State == "Running" })
	r := NewReader()
	start := startOf(t, pid)
	for _, tg := range []Target{
		{PID: pid, StartTicks: start + 1, PPID: f.MasterPID()}, // another process on a reused pid
		{PID: pid, StartTicks: start, PPID: os.Getpid()},       // not a child of that master
		{PID: 1 << 22}, // gone
	} {
		w := r.Read(context.Background(), []Target{tg})[0]
		if w.Kind != KindUnknown || w.Reason == "" || w.Peer != nil {
			t.Errorf("%+v read as %+v: want unknown with a reason", tg, w)
		}
	}
}

// TestRealExitsWhileRead: a worker killed between the readings of its
// state is unknown ("exited while being read"), not its last wait.
func TestRealExitsWhileRead(t *testing.T) {
	f := startPool(t, 2, map[string]string{"sleep.php": `<?php sleep(600);`})
	request(t, f, "sleep.php", "")
	pid := f.WaitWorker(t, "www", func(p fastcgi.Process) bool { return p.State == "Running" })
	readUntil(t, f, pid, kindIs(KindSleep))
	r := NewReader()
	r.between = func(p int) {
		_ = syscallKill(p)
		fpmtest.Poll(t, 30*time.Second, func() (bool, bool) {
			st, err := readStat(hostProc{root: "/proc"}, p)
			return err != nil || st.state == 'Z', err != nil || st.state == 'Z'
		})
	}
	w := r.Read(context.Background(), []Target{{PID: pid, StartTicks: startOf(t, pid), PPID: f.MasterPID()}})[0]
	if w.Kind != KindUnknown || !strings.Contains(w.Reason, "exited") {
		t.Errorf("read %+v: want unknown, exited while being read", w)
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// TestRealMariaDB: workers in SELECT SLEEP() on a real MariaDB are blocked
// reading from it, over TCP on MySQL's port and over its unix socket, and
// group into one line per server.
func TestRealMariaDB(t *testing.T) {
	db := fpmtest.StartMariaDB(t, fpmtest.MariaDBOptions{Addr: privateAddr(3306)})
	host, port, _ := net.SplitHostPort(db.Addr)
	f := startPool(t, 4, map[string]string{
		"tcp.php":  `<?php $db = new mysqli("` + host + `", "app", "", "", ` + port + `); $db->query("SELECT SLEEP(600)");`,
		"unix.php": `<?php $db = new mysqli("localhost", "app", "", "", 0, "` + db.Socket + `"); $db->query("SELECT SLEEP(600)");`,
	})
	f.Background(t, 2, "tcp.php", "")
	request(t, f, "unix.php", "")
	var tcp []Wait
	for _, pid := range runningPIDs(t, f, "tcp.php", 2) {
		tcp = append(tcp, readUntil(t, f, pid, kindIs(KindNetRead)))
	}
	for _, w := range tcp {
		if w.Peer.Remote.String() != db.Addr || w.Peer.Service != ServiceMySQL || w.FDGuessed {
			t.Errorf("tcp wait %+v peer %+v: want a read from %s (MySQL)", w, w.Peer, db.Addr)
		}
	}
	u := waitFor(t, f, "unix.php", kindIs(KindNetRead))
	if u.Peer.Path != db.Socket || u.Peer.Transport != TransportUnix || u.Peer.Service != ServiceMySQL {
		t.Errorf("unix wait %+v peer %+v: want a read from %s (MySQL)", u, u.Peer, db.Socket)
	}
	groups := GroupWaits(append(tcp, u))
	if len(groups) != 2 || len(groups[0].PIDs) != 2 || groups[0].Wait.What() != "blocked reading from "+db.Addr+" (MySQL)" {
		t.Errorf("groups %+v: want the two TCP workers together first, then the unix one", groups)
	}
}

// TestRealMariaDBTableLock: four workers reading a table another session
// holds a write lock on are blocked reading from MySQL, all four in one
// group.
func TestRealMariaDBTableLock(t *testing.T) {
	db := fpmtest.StartMariaDB(t, fpmtest.MariaDBOptions{Addr: privateAddr(3306)})
	db.Exec(t, "CREATE DATABASE app; CREATE TABLE app.orders (id INT) ENGINE=InnoDB; INSERT INTO app.orders VALUES (1)")
	s := db.Session(t)
	s.Send(t, "LOCK TABLES app.orders WRITE; SELECT SLEEP(600);")
	// The lock is held once the session sleeps.
	fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		out := db.Exec(t, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'")
		return out, strings.TrimSpace(out) == "1"
	})
	host, port, _ := net.SplitHostPort(db.Addr)
	f := startPool(t, 5, map[string]string{
		"orders.php": `<?php $db = new mysqli("` + host + `", "app", "", "app", ` + port + `); $db->query("SELECT * FROM orders");`,
	})
	f.Background(t, 4, "orders.php", "")
	var ws []Wait
	for _, pid := range runningPIDs(t, f, "orders.php", 4) {
		ws = append(ws, readUntil(t, f, pid, kindIs(KindNetRead)))
	}
	g := GroupWaits(ws)
	if len(g) != 1 || len(g[0].PIDs) != 4 || g[0].Wait.What() != "blocked reading from "+db.Addr+" (MySQL)" {
		t.Errorf("groups %+v: want the four workers blocked reading from %s (MySQL)", g, db.Addr)
	}
}

// TestRealNoPermission reads a worker's wait as an unprivileged user, as
// fpmguard without CAP_SYS_PTRACE would: the wait is unknown with the
// reason, and the warning, given once for two workers, names the missing
// capabilities. The test binary runs itself as nobody
// (TestHelperReadAsNobody).
func TestRealNoPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		fpmtest.RequireIntegration(t, "switching to an unprivileged user needs root")
	}
	f := startPool(t, 2, map[string]string{"net.php": `<?php $s = stream_socket_client("tcp://` + silentTCP(t, "127.0.0.1:0") + `"); fread($s, 1);`})
	f.Background(t, 2, "net.php", "")
	pids := runningPIDs(t, f, "net.php", 2)
	for _, pid := range pids {
		readUntil(t, f, pid, kindIs(KindNetRead))
	}
	// The test binary, where nobody may run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(fpmtest.Dir(t), "waits.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	cmd := exec.Command(bin, "-test.run=^TestHelperReadAsNobody$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("WAITS_READ_PIDS=%d,%d", pids[0], pids[1]))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reading as nobody: %v\n%s", err, out)
	}
	var got struct {
		Waits    []Wait
		Warnings []string
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			if err := json.Unmarshal([]byte(rest), &got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got.Waits) != 2 {
		t.Fatalf("no result from the helper:\n%s", out)
	}
	for _, w := range got.Waits {
		if w.Kind != KindUnknown || w.Peer != nil || !strings.Contains(w.Reason, "permission denied") {
			t.Errorf("read as nobody: %+v, want unknown: permission denied", w)
		}
	}
	t.Logf("as nobody: %s; warning: %q", got.Waits[0].Reason, got.Warnings)
	if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "CAP_SYS_PTRACE") {
		t.Errorf("warnings %q: want one, naming CAP_SYS_PTRACE", got.Warnings)
	}
}

// TestHelperReadAsNobody is TestRealNoPermission's reader: it runs only
// when that test starts it.
func TestHelperReadAsNobody(t *testing.T) {
	list := os.Getenv("WAITS_READ_PIDS")
	if list == "" {
		t.Skip("run by TestRealNoPermission")
	}
	var targets []Target
	for p := range strings.SplitSeq(list, ",") {
		pid, _ := strconv.Atoi(p)
		targets = append(targets, Target{PID: pid})
	}
	r := NewReader()
	var warnings []string
	r.Warn = func(msg string) { warnings = append(warnings, msg) }
	ws := r.Read(context.Background(), targets)
	b, _ := json.Marshal(struct {
		Waits    []Wait
		Warnings []string
	}{ws, warnings})
	fmt.Printf("RESULT %s\n", b)
}

// TestRealOtherNetworkNamespace: a master started in a network namespace
// of its own, as in another container. Its worker's connection is in that
// namespace's tables only, and is read there; in fpmguard's own namespace
// the same address is nobody's.
func TestRealOtherNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		fpmtest.RequireIntegration(t, "a network namespace needs root")
	}
	f := fpmtest.New(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}},
		Files: map[string]string{
			// A server that never accepts: the kernel completes the
			// connection, nobody ever answers.
			"server.php": `<?php $s = stream_socket_server("tcp://127.0.0.1:3306"); sleep(600);`,
			"client.php": `<?php $c = stream_socket_client("tcp://127.0.0.1:3306"); fread($c, 1);`,
		},
		Defines: map[string]string{"default_socket_timeout": "600", "max_execution_time": "0"},
	})
	argv := f.Argv()
	cmd := exec.Command("unshare", "--net", "sh", "-c", `ip link set lo up && exec "$0" "$@"`)
	cmd.Args = append(cmd.Args, argv...)
	cmd.Dir = f.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	// Ready when its status socket answers (fpmtest's own wait looks for
	// the sockets in this namespace's table).
	f.WaitWorker(t, "www", func(fastcgi.Process) bool { return true })
	send := func(script string) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = f.Request(ctx, script, "")
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	send("server.php")
	server := f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.HasSuffix(p.Script, "/server.php")
	})
	r := NewReader()
	fpmtest.Poll(t, 60*time.Second, func() (Wait, bool) {
		w := r.Read(context.Background(), []Target{{PID: server, PPID: cmd.Process.Pid}})[0]
		return w, w.Kind == KindSleep
	})
	send("client.php")
	client := f.WaitWorker(t, "www", func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.HasSuffix(p.Script, "/client.php")
	})
	w := fpmtest.Poll(t, 60*time.Second, func() (Wait, bool) {
		w := r.Read(context.Background(), []Target{{PID: client, PPID: cmd.Process.Pid}})[0]
		return w, w.Kind == KindNetRead
	})
	if w.Peer.Remote.String() != "127.0.0.1:3306" || w.Peer.Service != ServiceMySQL || w.FDGuessed {
		t.Errorf("wait %+v peer %+v: want a read from 127.0.0.1:3306 in the worker's namespace", w, w.Peer)
	}
}
