package logtail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// numbered is a line numbered by seq, so that each line is unique.
func numbered(seq int) string {
	return fmt.Sprintf("2026/11/26 09:52:24 [error] 7#7: *%d upstream timed out (110: Connection timed out)\n", seq)
}

// linesSeen counts the lines a follower read, each by its text, and its
// passes over the files.
type linesSeen struct {
	mu        sync.Mutex
	n         map[string]int
	total     int
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
	s.total++
	s.mu.Unlock()
}

func (s *linesSeen) count(line string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[line]
}

func (s *linesSeen) all() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// followForTest follows path, polling often, and waits until it reads what
// w writes: it starts at the end of the file, so lines written before it
// opened it would not count. A rotated file is closed as soon as it
// allows: no line may depend on the follower waiting.
func followForTest(t *testing.T, path string, w **os.File) *linesSeen {
	t.Helper()
	seen := &linesSeen{n: map[string]int{}}
	f := &Follower{Path: path, Line: seen.add, Poll: 2 * time.Millisecond, DrainQuiet: -1, onPass: seen.pass}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) {
		writeLine(t, *w, ready)
		return seen.count(ready), seen.count(ready) > 0
	})
	return seen
}

// ready is the line followForTest writes until the follower reads it.
const ready = "2026/11/26 09:52:24 [notice] 7#7: ready\n"

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

// TestRotationLosesNothing rotates the log as logrotate does (rename, a
// new file at the path, then the writer reopens) while lines keep coming,
// and checks that every line was read exactly once. Like nginx before it
// reopens, the writer keeps writing to the renamed file after the new one
// appears, even after the follower has switched to it and read the old
// file once more, or while no file is there yet; each rotation also
// renames over the previous rotated file, which the follower may still be
// reading. Rotations come after the follower has read some of the current
// file, as they would come hours apart, but the writer never waits for it
// to read the file's last lines: those are the ones a follower switching
// too early loses.
func TestRotationLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	w := appendOnly(t, path)
	defer func() { w.Close() }()
	seen := followForTest(t, path, &w)
	// followForTest may have written its line more than once: the late
	// copies may come in later.
	before, readyBefore := seen.all(), seen.count(ready)

	const rotations, perFile, late = 8, 600, 50
	seq := 0
	write := func(f *os.File, count int) {
		for range count {
			writeLine(t, f, numbered(seq))
			seq++
		}
	}
	for r := range rotations {
		first := seq
		write(w, perFile/2)
		// The follower reads this file: the rotation may come.
		fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return first, seen.count(numbered(first)) == 1 })
		write(w, perFile/2)
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		var nw *os.File
		if r%2 == 0 {
			nw = appendOnly(t, path) // logrotate's create
			// The writer has not reopened yet, while the follower has
			// switched to the new file and gone over the old one after that.
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

	// A last line read means the follower went over everything before it:
	// a line read twice would show by now.
	end := "2026/11/26 09:52:24 [notice] 7#7: end\n"
	writeLine(t, w, end)
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(end), seen.count(end) > 0 })
	for i := range total {
		if c := seen.count(numbered(i)); c != 1 {
			t.Errorf("line %d read %d times", i, c)
		}
	}
	if got := seen.all() - before - seen.count(end) - (seen.count(ready) - readyBefore); got != total {
		t.Errorf("read %d lines, wrote %d", got, total)
	}
}

// TestTruncationStartsOver: after a copytruncate, the lines written to the
// emptied file are read, once.
func TestTruncationStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	w := appendOnly(t, path)
	defer w.Close()
	seen := followForTest(t, path, &w)
	for i := range 20 {
		writeLine(t, w, numbered(i))
	}
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(numbered(19)), seen.count(numbered(19)) > 0 })
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	// One short line first: a file grown past the old offset before the
	// follower looks would not show it was truncated.
	writeLine(t, w, numbered(20))
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(numbered(20)), seen.count(numbered(20)) > 0 })
	for i := 21; i < 40; i++ {
		writeLine(t, w, numbered(i))
	}
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.count(numbered(39)), seen.count(numbered(39)) > 0 })
	for i := range 40 {
		if c := seen.count(numbered(i)); c != 1 {
			t.Errorf("line %d read %d times", i, c)
		}
	}
}

// TestLongLineBounded: a run of bytes without a newline, far longer than
// any line a log holds, never makes the follower hold more than MaxLine of
// it; the line is dropped and counted, and the lines after it are read. A
// line of exactly MaxLine bytes is still read.
func TestLongLineBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	w := appendOnly(t, path)
	defer w.Close()
	var lines []string
	f := &Follower{Path: path, Line: func(line string) { lines = append(lines, line) }}
	l, err := f.openLog(true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	maxLine := f.maxLine()

	garbage := strings.Repeat("x", 10000) // 800 writes: 8 MB
	for range 800 {
		writeLine(t, w, garbage)
		f.drain(l)
		if cap(l.line) > maxLine {
			t.Fatalf("holding %d bytes of a line without its end", cap(l.line))
		}
	}
	writeLine(t, w, garbage+"\n")
	exact := strings.Repeat("y", maxLine-1) + "\n"
	writeLine(t, w, exact)
	writeLine(t, w, "z"+exact) // one byte too long
	writeLine(t, w, numbered(1))
	f.drain(l)
	if cap(l.line) > maxLine {
		t.Errorf("holding %d bytes", cap(l.line))
	}
	if len(lines) != 2 || lines[0] != exact || lines[1] != numbered(1) {
		t.Errorf("read %d lines, want the one of MaxLine bytes and the last", len(lines))
	}
	if got := f.LongLines(); got != 2 {
		t.Errorf("LongLines %d, want 2", got)
	}
	if l.offset != int64(800*len(garbage)+len(garbage)+1+2*len(exact)+1+len(numbered(1))) {
		t.Errorf("offset %d: not every byte read", l.offset)
	}
}

// TestFileAppearsLater: a log that does not exist yet is read whole once
// it appears.
func TestFileAppearsLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	seen := &linesSeen{n: map[string]int{}}
	f := &Follower{Path: path, Line: seen.add, Poll: 2 * time.Millisecond, onPass: seen.pass}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// The follower has looked and found nothing: all of the file comes.
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { p, _ := seen.progress(); return p, p > 0 })
	if err := os.WriteFile(path, []byte(numbered(1)+numbered(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 30*time.Second, func() (int, bool) { return seen.all(), seen.all() == 2 })
}
