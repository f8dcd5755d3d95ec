package fpmtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// PHP scripts the tests put in a pool's document root.
const (
	// SleepPHP sleeps ?ms= milliseconds (1000 by default): a blocked worker.
	SleepPHP = `<?php usleep((int)($_GET['ms'] ?? 1000) * 1000); echo "slept\n";`
	// SpinPHP burns a CPU for ?s= seconds (30 by default): a spinning worker.
	SpinPHP = `<?php $end = microtime(true) + (int)($_GET['s'] ?? 30); $x = 0; while (microtime(true) < $end) { $x++; } echo $x;`
)

// Request sends one request for the script name, with query, to pool www,
// waiting up to a minute, as a client of the site would.
func (f *FPM) Request(ctx context.Context, name, query string) error {
	_, err := fastcgi.Client{Timeout: 60 * time.Second}.Do(ctx, fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen},
		fastcgi.Request{Path: "/" + name, Query: query, Script: f.Script(name)})
	return err
}

// Background starts n requests to pool www that end with the test: they
// hold workers as long as the script runs.
func (f *FPM) Background(t testing.TB, n int, name, query string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { _ = f.Request(ctx, name, query) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}
