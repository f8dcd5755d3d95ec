package nginxlog

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// TestParseLineOnRealLog reads the error log of a real nginx in front
// of broken upstreams (see fuzz_test.go) and checks each failure is read
// with its cause, and that nothing else is: not the notices, not a missing
// static file whose Referer imitates an upstream failure.
func TestParseLineOnRealLog(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "nginx-error.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		e, ok := ParseLine(line)
		if strings.Contains(line, "favicon.ico") {
			if ok {
				t.Errorf("a forged Referer counted as %+v: %s", e, line)
			}
			continue
		}
		if ok {
			got[string(e.Cause)+" "+e.Upstream]++
			if (e.Cause == "timeout") != (e.Status == 504) {
				t.Errorf("%+v: a timeout is nginx's 504, everything else its 502", e)
			}
		}
	}
	want := map[string]int{
		"refused unix:/tmp/fpmguard-nginx/refused.sock": 1,
		"backlog unix:/tmp/fpmguard-nginx/backlog.sock": 1,
		"missing unix:/tmp/fpmguard-nginx/missing.sock": 1,
		"permission unix:/tmp/fpmguard-nginx/perm.sock": 1,
		"reset unix:/tmp/fpmguard-nginx/close.sock":     1,
		"timeout unix:/tmp/fpmguard-nginx/hang.sock":    1,
		"reset 127.0.0.1:39797":                         1, // recv() failed (104)
		"reset 127.0.0.1:46343":                         1, // prematurely closed
		"timeout 127.0.0.1:44273":                       1,
		"refused 127.0.0.1:38333":                       1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: read %d times, want %d; all: %v", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("read %v, want %v", got, want)
	}
}

// TestNginxMatchesPoolsInAnotherContainer: fpmguard reaches a discovered
// master's socket through /proc/PID/root, nginx names it by its own path;
// both name one pool.
func TestNginxMatchesPoolsInAnotherContainer(t *testing.T) {
	root := "/proc/4242/root"
	tg := supervisor.Target{Name: "www", Root: root, Address: fastcgi.Address{Network: "unix", Addr: root + "/run/php/www.sock", Root: root}}
	n := NewFollower(nil, []supervisor.Target{tg}, event.NewLog(nil))
	line := `2026/11/26 09:52:24 [error] 7#7: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, server: _, request: "GET /a.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "x"`
	e, ok := ParseLine(line)
	if !ok {
		t.Fatal("line not read")
	}
	n.record(e)
	if got := n.Counts()[Key{Pool: tg.ID(), Status: 504, Cause: "timeout"}]; got != 1 {
		t.Errorf("counts %v", n.Counts())
	}
}

// TestFollowerSetTargets: after php-fpm restarted in its container (a new
// /proc/PID/root) nginx's lines still count for the pool; once the pool is
// gone (a reload dropped it), its counts go, and its socket counts for
// nothing.
func TestFollowerSetTargets(t *testing.T) {
	inRoot := func(pid int) supervisor.Target {
		root := fmt.Sprintf("/proc/%d/root", pid)
		return supervisor.Target{Name: "www", Root: root, RootName: "root:8:1:2", MasterConfig: "/etc/php.conf", Address: fastcgi.Address{Network: "unix", Addr: root + "/run/php/www.sock", Root: root}}
	}
	other := supervisor.Target{Name: "api", Address: fastcgi.Address{Network: "unix", Addr: "/run/php/api.sock"}}
	n := NewFollower(nil, []supervisor.Target{inRoot(4242), other}, event.NewLog(nil))
	e, _ := ParseLine(nginxTimeout(1))
	n.record(e)
	n.SetTargets([]supervisor.Target{inRoot(4343), other})
	n.record(e)
	key := Key{Pool: inRoot(1).ID(), Status: 504, Cause: "timeout"}
	if got := n.Counts()[key]; got != 2 {
		t.Errorf("after the restart: counts %v", n.Counts())
	}
	n.SetTargets([]supervisor.Target{other})
	n.record(e)
	if got := n.Counts(); len(got) != 0 {
		t.Errorf("www gone: counts %v", got)
	}
}

// nginxTimeout is a line nginx writes when pool www times out, numbered by
// seq so that each line is unique.
func nginxTimeout(seq int) string {
	return fmt.Sprintf(`2026/11/26 09:52:24 [error] 7#7: *%d upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, server: _, request: "GET /a.php?seq=%d HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "x"`+"\n", seq, seq)
}

// wwwTimeout counts pool www of the tests, given by its address alone: its
// master is named by its address.
var wwwTimeout = Key{Pool: supervisor.PoolID{Pool: "www", Master: "unix:///run/php/www.sock"}, Status: 504, Cause: "timeout"}

// TestFollowerCountsWhatItReads follows a real file (logtail's tests cover
// rotation and truncation) and counts the lines written to it while it
// runs, each once; a line too long for any nginx line is dropped and
// counted.
func TestFollowerCountsWhatItReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	www := supervisor.Target{Name: "www", Address: fastcgi.Address{Network: "unix", Addr: "/run/php/www.sock"}}
	n := NewFollower([]string{path}, []supervisor.Target{www}, event.NewLog(nil))
	var mu sync.Mutex
	seen := map[string]int{}
	n.onLine = func(line string) { mu.Lock(); seen[line]++; mu.Unlock() }
	count := func(line string) int { mu.Lock(); defer mu.Unlock(); return seen[line] }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// The follower starts at the end of the file: wait until it reads.
	ready := "2026/11/26 09:52:24 [notice] 7#7: ready\n"
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		if _, err := w.WriteString(ready); err != nil {
			t.Fatal(err)
		}
		return count(ready), count(ready) > 0
	})
	if _, err := w.WriteString(strings.Repeat("x", maxNginxLine+1) + "\n"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := w.WriteString(nginxTimeout(i)); err != nil {
			t.Fatal(err)
		}
	}
	fpmtest.Poll(t, 30*time.Second, func() (uint64, bool) { c := n.Counts()[wwwTimeout]; return c, c >= 50 })
	if c := n.Counts()[wwwTimeout]; c != 50 {
		t.Errorf("counted %d timeouts, wrote 50", c)
	}
	if n.LongLines() != 1 {
		t.Errorf("LongLines %d, want 1", n.LongLines())
	}
}
