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
	tg := supervisor.Target{Name: "www", Root: root, Address: fastcgi.Address{Network: "unix", Addr: root + "/run/php/www.sock"}}
	n := NewFollower(nil, []supervisor.Target{tg}, event.NewLog(nil))
	line := `2026/11/26 09:52:24 [error] 7#7: *3 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, server: _, request: "GET /a.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "x"`
	e, ok := ParseLine(line)
	if !ok {
		t.Fatal("line not read")
	}
	n.record(e)
	if got := n.Counts()[Key{Pool: "www", Status: 504, Cause: "timeout"}]; got != 1 {
		t.Errorf("counts %v", n.Counts())
	}
}

// nginxTimeout is a line nginx writes when pool www times out, numbered by
// seq so that each line is unique.
func nginxTimeout(seq int) string {
	return fmt.Sprintf(`2026/11/26 09:52:24 [error] 7#7: *%d upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.7, server: _, request: "GET /a.php?seq=%d HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "x"`+"\n", seq, seq)
}

var wwwTimeout = Key{Pool: "www", Status: 504, Cause: "timeout"}

// linesSeen counts the lines a follower read, each by its text, and its
// passes over the files.
type linesSeen struct {
	mu        sync.Mutex
	n         map[string]int
	passes    int
	rotations int
}

func (s *linesSeen) pass(rotations int) {
	s.mu.Lock()
	s.passes++
	s.rotations = rotations
	s.mu.Unlock()
}

func (s *linesSeen) progress() (passes, rotations int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passes, s.rotations
}

func (s *linesSeen) add(line string) {
	s.mu.Lock()
	s.n[line]++
	s.mu.Unlock()
}

func (s *linesSeen) count(line string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[line]
}

// followForTest follows path for pool www, polling often, and waits until
// it reads what w writes: it starts at the end of the file, so lines
// written before it opened it would not count. A rotated file is closed as
// soon as it allows: no line may depend on the follower waiting.
func followForTest(t *testing.T, path string, w **os.File) (*Follower, *linesSeen) {
	t.Helper()
	www := supervisor.Target{Name: "www", Address: fastcgi.Address{Network: "unix", Addr: "/run/php/www.sock"}}
	n := NewFollower([]string{path}, []supervisor.Target{www}, event.NewLog(nil))
	n.poll, n.drainQuiet = 2*time.Millisecond, 0
	seen := &linesSeen{n: map[string]int{}}
	n.onLine, n.onPass = seen.add, seen.pass
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ready := "2026/11/26 09:52:24 [notice] 7#7: ready\n"
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		writeLine(t, *w, ready)
		return seen.count(ready), seen.count(ready) > 0
	})
	return n, seen
}

func writeLine(t *testing.T, f *os.File, line string) {
	t.Helper()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func appendOnly(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNginxRotationLosesNothing rotates the log as logrotate does (rename,
// a new file at the path, then nginx reopens) while lines keep coming, and
// checks that every line was read exactly once. Like nginx before it
// reopens, the writer keeps writing to the renamed file after the new one
// appears, even after the follower has switched to it and read the old
// file once more, or while no file is there yet; each rotation also
// renames over the previous rotated file, which the follower may still be
// reading. Rotations come after the follower has read some of the current
// file, as they would come hours apart, but the writer never waits for it
// to read the file's last lines: those are the ones a follower switching
// too early loses.
func TestNginxRotationLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	w := appendOnly(t, path)
	defer func() { w.Close() }()
	n, seen := followForTest(t, path, &w)

	const rotations, perFile, late = 8, 600, 50
	seq := 0
	write := func(f *os.File, count int) {
		for range count {
			writeLine(t, f, nginxTimeout(seq))
			seq++
		}
	}
	for r := range rotations {
		first := seq
		write(w, perFile/2)
		// The follower reads this file: the rotation may come.
		fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return first, seen.count(nginxTimeout(first)) == 1 })
		write(w, perFile/2)
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		var nw *os.File
		if r%2 == 0 {
			nw = appendOnly(t, path) // logrotate's create
			// nginx not reopened yet, while the follower has switched to
			// the new file and gone over the old one after that.
			fpmtest.Poll(t, 30*time.Second, func() (int, bool) { _, rot := seen.progress(); return rot, rot > r })
			p0, _ := seen.progress()
			fpmtest.Poll(t, 30*time.Second, func() (int, bool) { p, _ := seen.progress(); return p, p >= p0+2 })
			write(w, late)
		} else {
			write(w, late) // no file at the path yet
			nw = appendOnly(t, path)
		}
		w.Close()
		w = nw
	}
	write(w, perFile)
	total := seq

	fpmtest.Poll(t, 30*time.Second, func() (uint64, bool) { c := n.Counts()[wwwTimeout]; return c, c >= uint64(total) })
	// A last line read means the follower went over everything before it:
	// a line read twice would show by now.
	end := "2026/11/26 09:52:24 [notice] 7#7: end\n"
	writeLine(t, w, end)
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(end), seen.count(end) > 0 })
	if c := n.Counts()[wwwTimeout]; c != uint64(total) {
		t.Errorf("counted %d upstream timeouts, wrote %d", c, total)
	}
	for i := range total {
		if c := seen.count(nginxTimeout(i)); c != 1 {
			t.Errorf("line %d read %d times", i, c)
		}
	}
}

// TestNginxTruncationStartsOver: after a copytruncate, the lines written
// to the emptied file are read, once.
func TestNginxTruncationStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	w := appendOnly(t, path)
	defer w.Close()
	n, seen := followForTest(t, path, &w)
	for i := range 20 {
		writeLine(t, w, nginxTimeout(i))
	}
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(nginxTimeout(19)), seen.count(nginxTimeout(19)) > 0 })
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	// One short line first: a file grown past the old offset before the
	// follower looks would not show it was truncated.
	writeLine(t, w, nginxTimeout(20))
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(nginxTimeout(20)), seen.count(nginxTimeout(20)) > 0 })
	for i := 21; i < 40; i++ {
		writeLine(t, w, nginxTimeout(i))
	}
	fpmtest.Poll(t, 30*time.Second, func() (uint64, bool) { c := n.Counts()[wwwTimeout]; return c, c >= 40 })
	for i := range 40 {
		if c := seen.count(nginxTimeout(i)); c != 1 {
			t.Errorf("line %d read %d times", i, c)
		}
	}
}

// TestNginxLongLineBounded: a run of bytes without a newline, far longer
// than any line nginx writes, never makes the follower hold more than
// maxNginxLine of it; the line is dropped and counted, and the lines after
// it are read. A line of exactly maxNginxLine bytes is still read.
func TestNginxLongLineBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	w := appendOnly(t, path)
	defer w.Close()
	l, err := openLog(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	www := supervisor.Target{Name: "www", Address: fastcgi.Address{Network: "unix", Addr: "/run/php/www.sock"}}
	n := NewFollower(nil, []supervisor.Target{www}, event.NewLog(nil))
	var lines []string
	n.onLine = func(line string) { lines = append(lines, line) }

	garbage := strings.Repeat("x", 10000) // 800 writes: 8 MB
	for range 800 {
		writeLine(t, w, garbage)
		n.drain(l)
		if cap(l.line) > maxNginxLine {
			t.Fatalf("holding %d bytes of a line without its end", cap(l.line))
		}
	}
	writeLine(t, w, garbage+"\n")
	exact := strings.Repeat("y", maxNginxLine-1) + "\n"
	writeLine(t, w, exact)
	writeLine(t, w, "z"+exact) // one byte too long
	writeLine(t, w, nginxTimeout(1))
	n.drain(l)
	if cap(l.line) > maxNginxLine {
		t.Errorf("holding %d bytes", cap(l.line))
	}
	if len(lines) != 2 || lines[0] != exact || lines[1] != nginxTimeout(1) {
		t.Errorf("read %d lines, want the one of maxNginxLine bytes and the timeout", len(lines))
	}
	if got := n.Counts()[wwwTimeout]; got != 1 {
		t.Errorf("counted %d timeouts after the long line, want 1", got)
	}
	if got := n.LongLines(); got != 2 {
		t.Errorf("LongLines %d, want 2", got)
	}
	if l.offset != int64(800*len(garbage)+len(garbage)+1+2*len(exact)+1+len(nginxTimeout(1))) {
		t.Errorf("offset %d: not every byte read", l.offset)
	}
}
