package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

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
