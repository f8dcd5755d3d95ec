package fpmtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MariaDB is a real MariaDB server of the test's own, as php-fpm's
// workers would use one: a datadir in a temporary directory, a unix socket
// named mysqld.sock there and a TCP address, no grant tables (any user
// may do anything: it listens on loopback only, for this test). It is
// stopped, with every client session the test opened, when the test ends.
type MariaDB struct {
	Dir    string // the temporary directory holding the datadir and logs
	Socket string // the unix socket, .../mysqld.sock
	Addr   string // host:port of its TCP listener
	client string
	cmd    *exec.Cmd
	waited chan struct{}
}

// MariaDBOptions tune the server.
type MariaDBOptions struct {
	// Addr is the TCP address to listen on; 127.0.0.1 and a free port if
	// empty. A loopback address of its own with port 3306 (127.1.2.3:3306)
	// gives a private server on MySQL's well-known port.
	Addr string
}

// MariaDBBinary finds the server: $MARIADBD, then mariadbd or mysqld on
// PATH and in /usr/sbin.
func MariaDBBinary() (string, error) {
	if b := os.Getenv("MARIADBD"); b != "" {
		return b, nil
	}
	for _, n := range []string{"mariadbd", "mysqld"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		if p := filepath.Join("/usr/sbin", n); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("mariadbd not found: run `make deps` (installs mariadb-server) or set MARIADBD")
}

func mariaDBClient() (string, error) {
	for _, n := range []string{"mariadb", "mysql"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("the mariadb client is not found: run `make deps` (installs mariadb-server)")
}

// StartMariaDB starts a server and waits until it accepts connections on
// both its socket and its address. It fails the test when MariaDB is
// missing: integration tests must not pass by skipping.
func StartMariaDB(t testing.TB, opts MariaDBOptions) *MariaDB {
	t.Helper()
	bin, err := MariaDBBinary()
	if err != nil {
		t.Fatal(err)
	}
	client, err := mariaDBClient()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:" + FreePort(t)
	}
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		t.Fatalf("MariaDB address %q: %v", opts.Addr, err)
	}
	dir := Dir(t)
	m := &MariaDB{Dir: dir, Socket: filepath.Join(dir, "mysqld.sock"), Addr: opts.Addr, client: client, waited: make(chan struct{})}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--socket=" + m.Socket, "--port=" + port, "--bind-address=" + host,
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"), "--log-error=" + filepath.Join(dir, "error.log"),
		"--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--max-connections=500"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root") // it refuses to run as root otherwise
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Dir = dir
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		_ = m.cmd.Wait()
		out.Close()
		close(m.waited)
	}()
	t.Cleanup(func() { m.stop(t) })
	// Generous for a loaded runner: the wait ends as soon as it is ready.
	deadline := time.Now().Add(90 * time.Second)
	for !listening(m.Socket) || !acceptsTCP(m.Addr) {
		select {
		case <-m.waited:
			t.Fatalf("mariadbd exited at start:\n%s", m.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadbd does not listen on %s and %s:\n%s", m.Socket, m.Addr, m.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m
}

func acceptsTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Log returns the server's error log, for failure messages.
func (m *MariaDB) Log() string {
	var b strings.Builder
	for _, n := range []string{"error.log", "stderr.log"} {
		if data, err := os.ReadFile(filepath.Join(m.Dir, n)); err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// Exec runs SQL statements with the mariadb client through the socket and
// returns what it printed (tab-separated, without column names).
func (m *MariaDB) Exec(t testing.TB, sql string) string {
	t.Helper()
	cmd := exec.Command(m.client, "--no-defaults", "--socket="+m.Socket, "--batch", "--skip-column-names", "-e", sql)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("mariadb -e %q: %v\n%s", sql, err, out.String())
	}
	return out.String()
}

// MariaDBSession is a client session that stays open, to hold a lock
// while the test runs.
type MariaDBSession struct {
	stdin io.WriteCloser
	cmd   *exec.Cmd
}

// Session opens a client session; it ends when the test ends.
func (m *MariaDB) Session(t testing.TB) *MariaDBSession {
	t.Helper()
	cmd := exec.Command(m.client, "--no-defaults", "--socket="+m.Socket, "--batch")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the mariadb client: %v", err)
	}
	s := &MariaDBSession{stdin: stdin, cmd: cmd}
	t.Cleanup(func() {
		stdin.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return s
}

// Send sends statements to the session, which runs them in order.
func (s *MariaDBSession) Send(t testing.TB, sql string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, sql+"\n"); err != nil {
		t.Fatalf("sending %q to the mariadb client: %v", sql, err)
	}
}

// stop ends the server: SIGTERM for a clean shutdown, then the whole
// group by force.
func (m *MariaDB) stop(t testing.TB) {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.waited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.waited
	}
	if t.Failed() {
		t.Logf("mariadb log:\n%s", m.Log())
	}
}
