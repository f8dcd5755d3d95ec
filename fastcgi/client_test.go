package fastcgi_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"go.uber.org/goleak"
)

func unixAddr(path string) fastcgi.Address { return fastcgi.Address{Network: "unix", Addr: path} }

// patient is the timeout of calls that must get php-fpm's answer: far above
// what an answer takes on a loaded runner, so that it never decides a test.
// A call returns with the answer, so it costs nothing.
const patient = 30 * time.Second

// outlast is how long a request that must hold a worker for the rest of a
// test sleeps; the test cancels the request and stops php-fpm when it ends.
const outlast = "ms=600000"

func TestPingAndStatusAgainstPHPFPM(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}},
		Files: map[string]string{"hello.php": `<?php header("X-Test: yes"); echo "hello ", $_SERVER["QUERY_STRING"];`},
	})
	pool := fpm.Pools["www"]
	c := fastcgi.Client{Timeout: patient}
	ctx := context.Background()

	if _, err := c.Ping(ctx, unixAddr(pool.Listen), "/ping", "pong"); err != nil {
		t.Fatalf("ping: %v", err)
	}
	resp, err := c.Do(ctx, unixAddr(pool.Listen), fastcgi.Request{Path: "/hello.php", Query: "a=1", Script: filepath.Join(fpm.DocRoot, "hello.php")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "hello a=1" || resp.Header.Get("X-Test") != "yes" {
		t.Errorf("got %d %q %v", resp.Status, resp.Body, resp.Header)
	}
	for _, addr := range []string{pool.Listen, pool.StatusSocket} {
		st, err := c.Status(ctx, unixAddr(addr), "/status")
		if err != nil {
			t.Fatalf("status via %s: %v", addr, err)
		}
		if st.Pool != "www" || len(st.Processes) != 3 || st.ProcessManager != "static" {
			t.Errorf("status via %s: %+v", addr, st)
		}
		for _, p := range st.Processes {
			if p.PID <= 0 || p.State == "" {
				t.Errorf("bad process %+v", p)
			}
		}
	}
}

func TestAnswersAreClassified(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Files: map[string]string{"notes.txt": "secret"}})
	pool := fpm.Pools["www"]
	c := fastcgi.Client{Timeout: patient}
	ctx := context.Background()
	addr := unixAddr(pool.Listen)

	_, err := c.Status(ctx, addr, "/wrong-status")
	assertClass(t, err, fastcgi.ClassNotFound, 404, "add `pm.status_path = /wrong-status` to the pool")

	_, err = c.Ping(ctx, addr, "/nope", "pong")
	assertClass(t, err, fastcgi.ClassNotFound, 404, "add `ping.path = /nope`")

	_, err = c.Ping(ctx, addr, "/ping", "PONG!")
	assertClass(t, err, fastcgi.ClassBadResponse, 502, `ping.response = PONG!`)
	if fe, _ := fastcgi.AsError(err); !errors.Is(err, fastcgi.ErrPingResponse) || fe.Status != 200 {
		t.Errorf("a worker answered the ping, with another text: %v is not ErrPingResponse with status 200", err)
	}

	_, err = c.Do(ctx, addr, fastcgi.Request{Path: "/notes.txt", Script: filepath.Join(fpm.DocRoot, "notes.txt")})
	assertClass(t, err, fastcgi.ClassForbidden, 403, "security.limit_extensions")
	if !strings.Contains(err.Error(), "Access denied.") {
		t.Errorf("error should quote php-fpm's answer: %v", err)
	}
}

func TestTransportFailuresAreClassified(t *testing.T) {
	dir := t.TempDir()
	c := fastcgi.Client{Timeout: 500 * time.Millisecond}
	ctx := context.Background()

	// A socket file nothing listens on: what a SIGKILLed php-fpm leaves.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	_, err = c.Ping(ctx, unixAddr(stale), "/ping", "pong")
	assertClass(t, err, fastcgi.ClassRefused, 502, "nothing listens there")

	_, err = c.Ping(ctx, unixAddr(filepath.Join(dir, "missing.sock")), "/ping", "pong")
	assertClass(t, err, fastcgi.ClassMissing, 502, "does not exist")

	// A listener that accepts and never answers.
	silent := filepath.Join(dir, "silent.sock")
	sl, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := sl.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range held {
			h.Close()
		}
	}()
	// A silent listener can only end in the timeout. The bound on the time
	// is there to catch a call that ignores its deadline, not to time it:
	// it is generous for a loaded runner.
	start := time.Now()
	_, err = c.Ping(ctx, unixAddr(silent), "/ping", "pong")
	assertClass(t, err, fastcgi.ClassTimeout, 504, "busy or hung")
	if el := time.Since(start); el < c.Timeout || el > c.Timeout+10*time.Second {
		t.Errorf("a 500ms timeout took %v", el)
	}
	if !strings.Contains(err.Error(), "timeout after 500ms") {
		t.Errorf("error should say the timeout: %v", err)
	}
}

// TestEveryWorkerBusy: the ping through the main socket waits in the backlog
// and times out, as nginx would with 504, while the status page over
// pm.status_listen still answers and shows the busy workers. The workers
// stay busy until the test ends, so the timeout is the only possible end of
// the ping.
func TestEveryWorkerBusy(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	pool := fpm.Pools["www"]
	script := filepath.Join(fpm.DocRoot, "sleep.php")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_, _ = fastcgi.Client{Timeout: time.Hour}.Do(ctx, unixAddr(pool.Listen), fastcgi.Request{Path: "/sleep.php", Query: outlast, Script: script})
		})
	}
	defer wg.Wait()
	defer cancel()

	status := fastcgi.Client{Timeout: patient}
	running := waitFor(t, patient, func() (int, bool) {
		st, err := status.Status(context.Background(), unixAddr(pool.StatusSocket), "/status")
		if err != nil {
			t.Fatalf("status over pm.status_listen: %v", err)
		}
		n := 0
		for _, p := range st.Processes {
			if p.State == "Running" && strings.HasPrefix(p.RequestURI, "/sleep.php") {
				n++
			}
		}
		return n, n == 2
	})
	if running != 2 {
		t.Fatalf("%d workers in sleep.php, want 2", running)
	}
	_, err := fastcgi.Client{Timeout: 300 * time.Millisecond}.Ping(context.Background(), unixAddr(pool.Listen), "/ping", "pong")
	assertClass(t, err, fastcgi.ClassTimeout, 504, "busy or hung")
}

// TestWorkerKilledMidRequest: SIGTERM to a worker ends it at once; the
// client sees the connection end early, which nginx turns into 502. The
// request outlasts the test and its timeout too, so the kill is the only
// possible end of it.
func TestWorkerKilledMidRequest(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 1, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	pool := fpm.Pools["www"]
	errc := make(chan error, 1)
	go func() {
		_, err := fastcgi.Client{Timeout: time.Hour}.Do(context.Background(), unixAddr(pool.Listen),
			fastcgi.Request{Path: "/sleep.php", Query: outlast, Script: filepath.Join(fpm.DocRoot, "sleep.php")})
		errc <- err
	}()
	pid := fpm.WaitWorker(t, "www", fpmtest.Running)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		assertClass(t, err, fastcgi.ClassReset, 502, "closed the connection")
	case <-time.After(patient):
		t.Fatal("request did not end after its worker was killed")
	}
}

// TestTimeoutLeavesNothingBehind: a request that times out on a hung worker
// leaves no goroutine and no file descriptor behind, and does not pin the
// worker once the hung request ends. Each request sleeps several times its
// timeout (or the delay of its cancel), so that ending early is its only
// possible outcome.
func TestTimeoutLeavesNothingBehind(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 1}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	pool := fpm.Pools["www"]
	script := filepath.Join(fpm.DocRoot, "sleep.php")
	ignore := goleak.IgnoreCurrent()
	fdsBefore := fpmtest.OpenFDs(t)

	c := fastcgi.Client{Timeout: 200 * time.Millisecond}
	for range 5 {
		_, err := c.Do(context.Background(), unixAddr(pool.Listen), fastcgi.Request{Path: "/sleep.php", Query: "ms=600", Script: script})
		assertClass(t, err, fastcgi.ClassTimeout, 504, "")
	}
	// A cancelled context ends a request the same way.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := fastcgi.Client{Timeout: patient}.Do(ctx, unixAddr(pool.Listen), fastcgi.Request{Path: "/sleep.php", Query: "ms=2000", Script: script})
	assertClass(t, err, fastcgi.ClassTimeout, 504, "")

	fpmtest.NoLeak(t, ignore, fdsBefore)
	// The only worker is free again once its last abandoned request ends.
	waitFor(t, 2*patient, func() (int, bool) {
		_, err := fastcgi.Client{Timeout: patient}.Ping(context.Background(), unixAddr(pool.Listen), "/ping", "pong")
		return 0, err == nil
	})
}

// waitFor waits for fn with fpmtest.Poll.
func waitFor[T any](t *testing.T, d time.Duration, fn func() (T, bool)) T {
	t.Helper()
	return fpmtest.Poll(t, d, fn)
}

func assertClass(t *testing.T, err error, class fastcgi.Class, nginx int, hint string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %v error, got none", class)
	}
	fe, ok := fastcgi.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *fastcgi.Error", err, err)
	}
	if fe.Class != class {
		t.Errorf("class = %v, want %v (error: %v)", fe.Class, class, err)
	}
	if fe.NginxStatus() != nginx {
		t.Errorf("nginx status = %d, want %d", fe.NginxStatus(), nginx)
	}
	if !strings.Contains(fe.Hint, hint) {
		t.Errorf("hint %q does not contain %q", fe.Hint, hint)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v wraps nothing", err)
	}
}

// TestDialInsideRoot: a socket of a process in another root is found as
// that process finds it, at every connect. The test master's directory
// stands for the root: inside it the pool's socket is /www.sock. An
// absolute link there names /www.sock of the root, and a link naming the
// socket's path on the host leads nowhere inside the root.
func TestDialInsideRoot(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	root := fpm.Dir
	in := func(rel string) fastcgi.Address {
		return fastcgi.Address{Network: "unix", Addr: filepath.Join(root, rel), Root: root}
	}
	for _, l := range []struct{ link, target string }{{"inside.sock", "/www.sock"}, {"host.sock", fpm.Pools["www"].Listen}, {"file.sock", "/php-fpm.conf"}} {
		if err := os.Symlink(l.target, filepath.Join(root, l.link)); err != nil {
			t.Fatal(err)
		}
	}
	c := fastcgi.Client{Timeout: patient}
	for _, rel := range []string{"www.sock", "inside.sock"} {
		if _, err := c.Status(context.Background(), in(rel), "/status"); err != nil {
			t.Errorf("%s inside the root: %v", rel, err)
		}
	}
	for rel, class := range map[string]fastcgi.Class{"host.sock": fastcgi.ClassMissing, "file.sock": fastcgi.ClassRefused, "missing.sock": fastcgi.ClassMissing} {
		_, err := c.Status(context.Background(), in(rel), "/status")
		if fastcgi.ClassOf(err) != class {
			t.Errorf("%s: %v, want class %s", rel, err, class)
		}
	}
}
