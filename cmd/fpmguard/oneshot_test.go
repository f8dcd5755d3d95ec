package main

import (
	"context"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// opcacheNotRead is how a one-shot command says the opcache read got no
// time, or not enough, within the deadline.
const opcacheNotRead = `the opcache (was not read: the pools' probes used the whole timeout|read did not finish before the deadline)`

// overlap counts the requests silent peers hold, and the most held at once.
type overlap struct {
	mu         sync.Mutex
	open, most int
	total      int
}

// peer is fpmtest.Silent, counted: it never answers, and the client's
// timeout ends each request.
func (o *overlap) peer(ctx context.Context, conn net.Conn) {
	o.mu.Lock()
	o.open++
	o.total++
	o.most = max(o.most, o.open)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.open--
		o.mu.Unlock()
	}()
	fpmtest.Silent(ctx, conn)
}

func (o *overlap) counts() (most, total int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.most, o.total
}

// TestOneShotBounded: against pools that never answer, status, check and
// opcache status end within one --timeout, not one per read and pool: every
// read they make is held at once by the silent peers, which only reads made
// together can be (one after another, each would wait out its timeout
// alone). And they say what each read was waiting for.
func TestOneShotBounded(t *testing.T) {
	// Long enough that the reads of a pool, the heartbeat 200 ms after the
	// status read, overlap on any machine.
	const timeout = 3 * time.Second
	for _, tc := range []struct {
		cmd  []string
		code int
		want []string
	}{
		{[]string{"status"}, statusFailing, []string{`timeout after 3s, waiting for the first byte of the answer`, opcacheNotRead}},
		{[]string{"check"}, supervisor.CheckCritical, []string{`heartbeat failed \(nginx would answer 504\)`}},
		{[]string{"opcache", "status"}, 0, []string{opcacheNotRead}},
	} {
		t.Run(tc.cmd[0], func(t *testing.T) {
			var o overlap
			var args []string
			for _, name := range []string{"a", "b", "c"} {
				h := fpmtest.StartHostile(t, "unix", o.peer)
				args = append(args, "--pool", "unix://"+h.Addr+",name="+name)
			}
			args = append(args, "--timeout", timeout.String(), "--opcache-dir", opcacheDir(t))
			start := time.Now()
			code, out, stderr := runCLI(t, append(tc.cmd, args...)...)
			took := time.Since(start)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			most, total := o.counts()
			if total < 3 || most != total {
				t.Errorf("%d requests to the 3 silent pools, at most %d at once: want every one at once", total, most)
			}
			t.Logf("%s against 3 silent pools with --timeout %v: %d requests, all at once, in %v", tc.cmd[0], timeout, total, took.Round(time.Millisecond))
		})
	}
}
