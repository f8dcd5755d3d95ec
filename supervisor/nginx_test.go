package supervisor

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// TestParseNginxLineOnRealLog reads the error log of a real nginx in front
// of broken upstreams (see fuzz_test.go) and checks each failure is read
// with its cause, and that nothing else is: not the notices, not a missing
// static file whose Referer imitates an upstream failure.
func TestParseNginxLineOnRealLog(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "nginx-error.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		e, ok := ParseNginxLine(line)
		if strings.Contains(line, "favicon.ico") {
			if ok {
				t.Errorf("a forged Referer counted as %+v: %s", e, line)
			}
			continue
		}
		if ok {
			got[e.Cause+" "+e.Upstream]++
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
	tg := Target{Name: "www", Root: root, Address: fastcgi.Address{Network: "unix", Addr: root + "/run/php/www.sock"}}
	n := NewNginxLogs(nil, []Target{tg}, NewEventLog(nil))
	line := `2026/11/26 09:52:24 [error] 7#7: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, server: _, request: "GET /a.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "x"`
	e, ok := ParseNginxLine(line)
	if !ok {
		t.Fatal("line not read")
	}
	n.record(e)
	if got := n.Counts()[NginxKey{Pool: "www", Status: 504, Cause: "timeout"}]; got != 1 {
		t.Errorf("counts %v", n.Counts())
	}
}

// TestSlowlogEntryOnlyReadsFiles: a slowlog that is not a regular file (a
// container's /proc/self/fd/2, a pipe) is never read: the read would not
// end.
func TestSlowlogEntryOnlyReadsFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "slow.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() { done <- slowlogEntry(Target{Slowlog: fifo}, 42) }()
	select {
	case got := <-done:
		if got != "" {
			t.Errorf("got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("reading a FIFO slowlog blocked")
	}
	file := filepath.Join(t.TempDir(), "slow.log")
	entry := "[26-Nov-2026 09:00:00]  [pool www] pid 42\nscript_filename = /var/www/a.php\n[0x1] sleep() /var/www/a.php:2"
	if err := os.WriteFile(file, []byte("[26-Nov-2026 08:59:00]  [pool www] pid 7\nscript_filename = /x.php\n\n"+entry+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := slowlogEntry(Target{Slowlog: file}, 42); got != entry {
		t.Errorf("entry %q, want %q", got, entry)
	}
}
