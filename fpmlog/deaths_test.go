package fpmlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func line(t *testing.T, s string) Line {
	t.Helper()
	l, ok := ParseLine("[05-Dec-2026 01:55:57] WARNING: " + s)
	if !ok {
		t.Fatalf("%q not read", s)
	}
	return l
}

func exitLine(pid, how string) string {
	return "[pool www] child " + pid + " exited " + how + " after 3.000000 seconds from start"
}

// fakeCgroup is a memory cgroup's counter file and limit, as cgroup v2
// writes them.
func fakeCgroup(t *testing.T, c *Classifier, kills string) string {
	t.Helper()
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(s string) {
		if err := os.WriteFile(events, []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill "+s+"\noom_group_kill 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(kills)
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte("536870912\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.oom.watch(events, true); err != nil {
		t.Fatal(err)
	}
	return events
}

func TestClassify(t *testing.T) {
	c := NewClassifier()
	events := fakeCgroup(t, c, "3")
	setKills := func(n string) {
		b, _ := os.ReadFile(events)
		s := strings.Replace(string(b), "oom_kill 3", "oom_kill "+n, 1)
		if err := os.WriteFile(events, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.Signalled(10)
	for _, s := range []string{
		"[pool www] child 11, script '/srv/www/import.php' (request: \"POST /import.php\") execution timed out (30.000000 sec), terminating",
	} {
		if _, ok := c.Line(line(t, s)); ok {
			t.Errorf("%q is no death", s)
		}
	}
	for _, tc := range []struct {
		before func()
		line   string
		cause  Cause
		text   string
	}{
		{nil, exitLine("10", "on signal 15 (SIGTERM)"), CauseFpmguardKill, "worker 10 of pool www was killed by fpmguard (SIGTERM)"},
		{nil, exitLine("10", "on signal 15 (SIGTERM)"), CauseSignal, "worker 10 of pool www was killed by SIGTERM from another process"}, // the note is used once
		{nil, exitLine("11", "on signal 15 (SIGTERM)"), CauseTerminateTimeout, "worker 11 of pool www was ended by php-fpm at request_terminate_timeout (SIGTERM) while running POST /import.php"},
		{nil, exitLine("12", "on signal 11 (SIGSEGV)"), CauseCrash, "worker 12 of pool www crashed (SIGSEGV)"},
		{nil, exitLine("13", "on signal 9 (SIGKILL)"), CauseKilled, "worker 13 of pool www was killed by SIGKILL from another process"},
		{func() { setKills("4") }, exitLine("14", "on signal 9 (SIGKILL)"), CauseOOMKill, "worker 14 of pool www was OOM-killed (cgroup limit 512.0MiB)"},
		{nil, exitLine("15", "on signal 9 (SIGKILL)"), CauseKilled, ""}, // one OOM kill, claimed once
		{nil, exitLine("16", "with code 0"), CauseMaxRequests, "worker 16 of pool www exited after its last request (pm.max_requests)"},
		{nil, exitLine("17", "with code 70"), CauseExitCode, "worker 17 of pool www exited with code 70"},
		{nil, "[pool od] child 18 has been killed by the process management after 2.266733 seconds from start", CauseIdle, "worker 18 of pool od was ended idle by the process manager"},
		{nil, "[pool \x1b[2J] child 19 exited on signal 6 (SIGABRT - core dumped) after 1.000000 seconds from start", CauseCrash, `worker 19 of pool \x1b[2J crashed (SIGABRT, core dumped)`},
	} {
		if tc.before != nil {
			tc.before()
		}
		d, ok := c.Line(line(t, tc.line))
		if !ok || d.Cause != tc.cause || tc.text != "" && d.String() != tc.text {
			t.Errorf("%q: %v %+v %q, want %s %q", tc.line, ok, d, d.String(), tc.cause, tc.text)
		}
		if d.Failure() != (tc.cause != CauseMaxRequests && tc.cause != CauseIdle) {
			t.Errorf("%s: failure %v", tc.cause, d.Failure())
		}
	}
}

// TestOOMKillNotClaimedExpires: an OOM kill no worker's SIGKILL claims
// (the OOM killer chose another process of the cgroup) is not pinned on a
// SIGKILL that comes long after.
func TestOOMKillNotClaimedExpires(t *testing.T) {
	c := NewClassifier()
	now := time.Unix(1000, 0)
	c.now, c.oom.now = func() time.Time { return now }, func() time.Time { return now }
	events := fakeCgroup(t, c, "0")
	b, _ := os.ReadFile(events)
	if err := os.WriteFile(events, []byte(strings.Replace(string(b), "oom_kill 0", "oom_kill 1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Sample()
	now = now.Add(oomWindow + time.Second)
	if d, _ := c.Line(line(t, exitLine("20", "on signal 9 (SIGKILL)"))); d.Cause != CauseKilled {
		t.Errorf("%+v: an old OOM kill was claimed", d)
	}
}

func TestParseOOMKills(t *testing.T) {
	v1 := "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
	if n, err := parseOOMKills([]byte(v1)); err != nil || n != 1 {
		t.Errorf("v1: %d %v", n, err)
	}
	if _, err := parseOOMKills([]byte("oom_kill_disable 0\nunder_oom 0\n")); err == nil {
		t.Error("a file without oom_kill read")
	}
}
