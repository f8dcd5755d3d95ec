package fastcgi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestRequestsSentIsWhatPHPFPMCounts: php-fpm's "accepted conn" of an idle
// pool grows by exactly the connections fpmguard counts it made, requests
// and bare connects alike, and not by the requests sent through the pool's
// status listener, which belong to a hidden pool of their own.
func TestRequestsSentIsWhatPHPFPMCounts(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
	pool := fpm.Pools["www"]
	main, listener := unixAddr(pool.Listen), unixAddr(pool.StatusSocket)
	c := fastcgi.Client{Timeout: patient, Probe: true}
	ctx := context.Background()
	accepted := func() uint64 {
		t.Helper()
		st, err := c.Status(ctx, listener, "/status")
		if err != nil {
			t.Fatal(err)
		}
		return st.AcceptedConn
	}
	before, sentBefore := accepted(), fastcgi.RequestsSent(main)
	for range 5 {
		if _, err := c.Ping(ctx, main, "/ping", "pong"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(ctx, main, "/status"); err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx, main); err != nil {
			t.Fatal(err)
		}
	}
	sent := fastcgi.RequestsSent(main) - sentBefore
	if sent != 15 {
		t.Fatalf("RequestsSent counted %d connections, 15 were made", sent)
	}
	// A client that is no probe is not counted.
	if _, err := (fastcgi.Client{Timeout: patient}).Ping(ctx, main, "/ping", "pong"); err != nil || fastcgi.RequestsSent(main)-sentBefore != sent {
		t.Fatalf("a client that is no probe was counted: %v", err)
	}
	sent++
	// A worker takes a bare connect after it was closed: wait for php-fpm
	// to have counted all of them, never for more.
	got := fpmtest.Poll(t, patient, func() (uint64, bool) {
		n := accepted() - before
		return n, n >= sent
	})
	if got != sent {
		t.Errorf("php-fpm counted %d accepted connections for the %d fpmguard made", got, sent)
	}
}

func TestConnectFails(t *testing.T) {
	dir := fpmtest.Dir(t)
	err := fastcgi.Client{Timeout: patient}.Connect(context.Background(), unixAddr(dir+"/missing.sock"))
	if fastcgi.ClassOf(err) != fastcgi.ClassMissing {
		t.Errorf("connect to a missing socket: %v", err)
	}
	var fe *fastcgi.Error
	if !errors.As(err, &fe) || fe.Hint == "" {
		t.Errorf("no hint in %v", err)
	}
}
