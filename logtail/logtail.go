// Package logtail follows a log file another program appends to, line by
// line, as `tail -F` does, and loses nothing across rotation or
// truncation. fpmguard follows nginx's and php-fpm's error logs with it.
//
// It imports only the standard library; it must not import any fpmguard
// package.
package logtail

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// Follower follows one log file.
type Follower struct {
	// Path is the log file. It may not exist yet: it is read whole when it
	// appears.
	Path string
	// Line is called with every complete line, newline included, in the
	// order written, from the goroutine running Run.
	Line func(line string)
	// Poll is how often the file is read; 250 ms if 0.
	Poll time.Duration
	// DrainQuiet is how long a rotated file must stay quiet, once the
	// writer writes to the new one, to be closed; 10 s if 0, none if
	// negative.
	DrainQuiet time.Duration
	// MaxLine is the longest line read, in bytes; longer ones are dropped
	// and counted (LongLines). 64 KiB if 0.
	MaxLine int
	// Open, when set, opens the file at Path for reading instead of
	// os.Open: a file in another process's root, or one its directory's
	// owner may replace, is opened through package safefile.
	Open func(path string) (*os.File, error)

	// onPass, when set, sees the end of each pass over the open files,
	// with the rotations seen so far (tests).
	onPass func(rotations int)
	long   atomic.Uint64
	opened atomic.Bool
}

// Opened reports whether the file has been opened: before, nothing of what
// was written to it is known.
func (f *Follower) Opened() bool { return f.opened.Load() }

// Defaults.
const (
	defaultPoll       = 250 * time.Millisecond
	defaultDrainQuiet = 10 * time.Second
	defaultMaxLine    = 64 << 10
)

// LongLines returns how many lines were dropped for passing MaxLine.
func (f *Follower) LongLines() uint64 { return f.long.Load() }

func (f *Follower) maxLine() int {
	if f.MaxLine > 0 {
		return f.MaxLine
	}
	return defaultMaxLine
}

// Run reads new lines as they come until ctx ends. It starts at the end
// of the file: only what is written while it runs is read.
//
// On rotation nothing written is lost. logrotate renames the file and then
// signals the writer (nginx: USR1, php-fpm: USR1) to reopen its log; until
// it has reopened, it keeps writing to the renamed file through the
// descriptor it holds. So the follower reads the old file to its end
// before it reads the new one, and then keeps the old descriptor and keeps
// reading it on every poll. It closes it only once the file that replaced
// it has received data (the writer has reopened: nothing new should go to
// the old file) and the old one has then been quiet for DrainQuiet (an
// nginx worker busy when the signal came reopens a little later), reading
// it once more just before. A fixed number of drains would lose a line
// written late; waiting for a quiet period alone would lose everything if
// the writer is never signalled (then the new file stays empty and the old
// one is followed for as long as that lasts). Copytruncate loses, by
// design, what was written between the copy and the truncation: that is
// gone before anyone can read it.
func (f *Follower) Run(ctx context.Context) {
	poll, quiet := f.Poll, f.DrainQuiet
	if poll <= 0 {
		poll = defaultPoll
	}
	if quiet == 0 {
		quiet = defaultDrainQuiet
	}
	var cur *logFile   // the file at the path, as last seen
	var old []*logFile // rotated away, oldest first, still read
	rotations := 0
	defer func() {
		for _, o := range old {
			o.close()
		}
		if cur != nil {
			cur.close()
		}
	}()
	cur, _ = f.openLog(false) // missing yet: read it whole when it comes
	f.opened.Store(cur != nil)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if cur != nil {
			f.drain(cur)
		}
		// Newest first, so that a rotated file's successor was read before
		// this pass reads the file itself. A successor with data means the
		// writer reopened past the file; the read of it that follows that
		// check then sees everything written to it, and only then may it
		// close.
		for i := len(old) - 1; i >= 0; i-- {
			o := old[i]
			next := cur
			if i+1 < len(old) {
				next = old[i+1]
			}
			reopened := next != nil && next.got
			if f.drain(o) {
				continue
			}
			if reopened && time.Since(o.lastData) >= quiet {
				o.close()
				old = slices.Delete(old, i, i+1)
			}
		}
		if f.onPass != nil {
			f.onPass(rotations)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(f.Path)
		if err != nil {
			continue // rotated away and not recreated yet: keep reading the old file
		}
		if cur == nil {
			cur, _ = f.openLog(true) // the file appeared: read it whole
			f.opened.Store(cur != nil)
			continue
		}
		ours, err := cur.f.Stat()
		if err != nil {
			continue
		}
		switch {
		case !os.SameFile(fi, ours) || nlink(ours) == 0:
			// A new file at the path (a deleted file's inode may be reused:
			// hence the link count of ours).
			nf, err := f.openLog(true)
			if err != nil {
				continue // gone again: try on the next poll
			}
			f.drain(cur) // to its end, before any line of the new file
			cur.lastData = time.Now()
			old = append(old, cur)
			cur = nf
			rotations++
			for len(old) > maxRotated {
				f.drain(old[0]) // one last time
				old[0].close()
				old = old[1:]
			}
		case ours.Size() < cur.offset:
			_ = cur.rewind() // truncated: a failed seek is retried on the next poll
		}
	}
}

// maxRotated bounds the rotated files kept open, should rotations come
// faster than the writer reopens; the oldest then is read one last time
// and closed.
const maxRotated = 4

// logFile is one open log file being read: the one at the path, or a
// rotated one the writer may still write to.
type logFile struct {
	f      *os.File
	r      *bufio.Reader
	offset int64 // bytes read
	// line holds the start of a line whose end has not been written yet;
	// never more than MaxLine bytes.
	line []byte
	// skipping: the current line passed MaxLine; the rest of it, up to its
	// newline, is dropped as it comes.
	skipping bool
	got      bool      // some read returned data
	lastData time.Time // when a read last returned data
}

// openLog opens the file at the path, at its start or at its end.
func (fl *Follower) openLog(fromStart bool) (*logFile, error) {
	path, open := fl.Path, fl.Open
	if open == nil {
		open = os.Open
	}
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("following a log: %w", err)
	}
	var offset int64
	if !fromStart {
		if offset, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("following the log %s: %w", path, err)
		}
	}
	return &logFile{f: f, r: bufio.NewReaderSize(f, 64<<10), offset: offset}, nil
}

func (l *logFile) close() { l.f.Close() }

// rewind starts over at the start of a truncated file.
func (l *logFile) rewind() error {
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding the log %s: %w", l.f.Name(), err)
	}
	l.r.Reset(l.f)
	l.offset = 0
	l.line, l.skipping = l.line[:0], false
	return nil
}

// drain reads l to its current end, and hands on each complete line. It
// reports whether it read anything.
//
// ReadSlice, unlike ReadString, never returns more than the reader's
// buffer: a run of bytes without a newline, however long, costs at most
// the buffer and MaxLine.
func (f *Follower) drain(l *logFile) bool {
	maxLine := f.maxLine()
	read := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(chunk) > 0 {
			read = true
			l.offset += int64(len(chunk))
			if !l.skipping {
				if len(l.line)+len(chunk) > maxLine {
					l.skipping = true
					l.line = l.line[:0]
					f.long.Add(1)
				} else {
					l.line = appendBounded(l.line, chunk, maxLine)
				}
			}
		}
		if err == bufio.ErrBufferFull {
			continue // a line longer than the buffer: its next part
		}
		if err != nil {
			break // at the end (or unreadable): the rest of the line comes later
		}
		if !l.skipping && f.Line != nil {
			f.Line(string(l.line))
		}
		l.line, l.skipping = l.line[:0], false
	}
	if read {
		l.got, l.lastData = true, time.Now()
	}
	return read
}

// appendBounded appends chunk to line, which with it holds no more than
// limit bytes, growing it no further than that: append's own growth could
// double it past the bound.
func appendBounded(line, chunk []byte, limit int) []byte {
	if need := len(line) + len(chunk); need > cap(line) {
		grown := make([]byte, len(line), min(max(need, 2*cap(line)), limit))
		copy(grown, line)
		line = grown
	}
	return append(line, chunk...)
}

func nlink(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1 // unknown: take the file for still linked
}
