package main

import (
	"regexp"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// opcacheNotRead is how a one-shot command says the opcache read got no
// time, or not enough, within the deadline.
const opcacheNotRead = `the opcache (was not read: the pools' probes used the whole timeout|read did not finish before the deadline)`

// TestOneShotBounded: against pools that never answer, status, check and
// opcache status end within one --timeout, not one per read and pool, and
// say what each read was waiting for.
func TestOneShotBounded(t *testing.T) {
	const timeout = time.Second
	var args []string
	for _, name := range []string{"a", "b", "c"} {
		h := fpmtest.StartHostile(t, "unix", fpmtest.Silent)
		args = append(args, "--pool", "unix://"+h.Addr+",name="+name)
	}
	args = append(args, "--timeout", timeout.String(), "--opcache-dir", opcacheDir(t))
	for _, tc := range []struct {
		cmd  []string
		code int
		want []string
	}{
		{[]string{"status"}, statusFailing, []string{`timeout after 1s, waiting for the first byte of the answer`, opcacheNotRead}},
		{[]string{"check"}, supervisor.CheckCritical, []string{`heartbeat failed \(nginx would answer 504\)`}},
		{[]string{"opcache", "status"}, 0, []string{opcacheNotRead}},
	} {
		t.Run(tc.cmd[0], func(t *testing.T) {
			start := time.Now()
			code, out, stderr := runCLI(t, append(tc.cmd, args...)...)
			took := time.Since(start)
			// Read one after another, the 3 pools' status, heartbeat and
			// opcache would take 9 timeouts; at once they take one. Two
			// leave room for a loaded machine and no room for a second
			// round of reads.
			if took >= 2*timeout {
				t.Errorf("took %v with --timeout %v", took, timeout)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			t.Logf("%s against 3 silent pools: %v", tc.cmd[0], took.Round(time.Millisecond))
		})
	}
}
