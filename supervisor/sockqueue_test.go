package supervisor

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestReadSocketQueue: two connections nobody accepted show as a queue of
// two on a unix and on a TCP listener, with the backlog as its maximum.
func TestReadSocketQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "www.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	for _, a := range []fastcgi.Address{{Network: "unix", Addr: path}, {Network: "tcp", Addr: tl.Addr().String()}} {
		for range 2 {
			c, err := net.Dial(a.Network, a.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		// A dump made by another test moments ago may predate the
		// listener: poll past queueMaxAge.
		q := fpmtest.Poll(t, 30*time.Second, func() (*SocketQueue, bool) {
			q, err := ReadSocketQueue(a)
			return q, err == nil && q.Length == 2
		})
		if q.Max <= 0 {
			t.Errorf("%s: backlog %d", a, q.Max)
		}
	}
	if _, err := ReadSocketQueue(fastcgi.Address{Network: "unix", Addr: path + ".none"}); err == nil {
		t.Error("a socket nobody listens on has a queue")
	}
}

// TestQueueLeavesOwnConnectionsOut: with the one worker busy, a user's
// request and one of fpmguard's own wait in the listen queue: the kernel
// counts two, the pool's queue is one.
func TestQueueLeavesOwnConnectionsOut(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1, StatusListen: true}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
	addr := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}
	// The users' requests (no probes): one holds the worker, one waits.
	fpm.Background(t, 1, "sleep.php", "ms=600000")
	fpm.WaitWorker(t, "www", fpmtest.Running)
	fpm.Background(t, 1, "sleep.php", "ms=600000")
	// fpmguard's ping waits too, until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = fastcgi.Client{Timeout: time.Hour, Probe: true}.Ping(ctx, addr, "/ping", "pong")
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	q := fpmtest.Poll(t, 30*time.Second, func() (*SocketQueue, bool) {
		q, err := ReadSocketQueue(addr)
		return q, err == nil && q.Length == 2
	})
	r := PoolReport{SocketQueue: q}
	if q.Own != 1 || r.Queue() != 1 {
		t.Errorf("the kernel counts %d waiting, %d of them fpmguard's: the pool's queue is %d, want 1", q.Length, q.Own, r.Queue())
	}
}

// TestSocketQueueInAnotherRoot: a pool's socket in a root of its own was
// bound by the path its php-fpm sees, which names another file on the
// host, or none: its queue is found by the socket's file, reached through
// /proc/PID/root as discovery reaches it. With the one worker busy, two
// requests wait.
func TestSocketQueueInAnotherRoot(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 1}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		addr := fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen}
		if fpm.Root != "" {
			root := "/proc/" + strconv.Itoa(fpm.MasterPID()) + "/root"
			addr = fastcgi.Address{Network: "unix", Addr: root + fpm.InRoot(addr.Addr), Root: root}
		}
		// One request holds the worker; the two others wait.
		fpm.Background(t, 3, "sleep.php", "ms=600000")
		fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			q, err := ReadSocketQueue(addr)
			return fmt.Sprint(q, err), err == nil && q.Length == 2 && q.Max > 0
		})
	})
}
