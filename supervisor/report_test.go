package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStripQuery(t *testing.T) {
	for in, want := range map[string]string{
		"/a.php?token=x": "/a.php",
		"/a.php#frag":    "/a.php",
		"/a.php":         "/a.php",
		"-":              "-",
		"/?":             "/",
	} {
		if got := StripQuery(in); got != want {
			t.Errorf("StripQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInterruptedIsNotProbed: a one-shot probe interrupted before it ended
// judges nothing: the pool is unknown, and check says UNKNOWN.
func TestInterruptedIsNotProbed(t *testing.T) {
	tg, err := ParsePoolSpec("unix://" + t.TempDir() + "/www.sock")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := testProber(time.Minute).ProbeAll(ctx, []Target{tg}, nil)
	r := rep.Pools[0]
	if r.Health != HealthUnknown || r.Heartbeat.Failed() || r.Status.Failed() || !strings.Contains(strings.Join(r.Reasons, ""), "interrupted") {
		t.Errorf("interrupted: %s %q, heartbeat %+v", r.Health, r.Reasons, r.Heartbeat)
	}
	if res := Check(rep, CheckThresholds{}); res.Code != CheckUnknown {
		t.Errorf("check of an interrupted probe: %d %q", res.Code, res.Line)
	}
}
