package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/safefile"
)

// What is read of a slowlog: its tail, and of an entry, its start.
const (
	maxSlowlogRead = 256 << 10
	maxSlowlogKept = 4 << 10
)

// SlowlogEntry is php-fpm's slowlog entry for one worker: written when a
// request of it ran past request_slowlog_timeout, with the PHP backtrace
// php-fpm read from it by ptrace at that moment.
type SlowlogEntry struct {
	// Time is when php-fpm wrote it, read in fpmguard's time zone (php-fpm
	// writes its own, without one); zero when it could not be read.
	Time   time.Time
	PID    int
	Script string // script_filename: client text
	// Frames are the backtrace's lines, innermost first, without their
	// addresses: "sleep() /var/www/report.php:3". Client text.
	Frames []string
	// Text is the entry as php-fpm wrote it, bounded.
	Text string
}

// SlowlogReason says why no slowlog entry could be given.
type SlowlogReason string

// The reasons.
const (
	// SlowlogNone: the pool has no slowlog, or no request_slowlog_timeout.
	SlowlogNone SlowlogReason = "no_slowlog"
	// SlowlogUnreadable: the slowlog is there, but fpmguard may not or
	// cannot read it: not a regular file (a container's /proc/self/fd/2,
	// a pipe), a link, owned by a user fpmguard does not trust, or refused.
	SlowlogUnreadable SlowlogReason = "unreadable"
	// SlowlogNoEntry: the slowlog was read and holds no entry for the
	// worker: none of its requests ran past request_slowlog_timeout, or
	// php-fpm could not trace it (the master lacks CAP_SYS_PTRACE).
	SlowlogNoEntry SlowlogReason = "no_entry"
)

// SlowlogError is why a slowlog entry could not be given, and what to do.
type SlowlogError struct {
	Pool   string
	Path   string // the slowlog as the pool's config names it
	PID    int
	Reason SlowlogReason
	Err    error // the read's error, for SlowlogUnreadable
}

func (e *SlowlogError) Unwrap() error { return e.Err }

func (e *SlowlogError) Error() string {
	switch e.Reason {
	case SlowlogNone:
		return fmt.Sprintf("pool %s has no slowlog: set slowlog and request_slowlog_timeout in its config", e.Pool)
	case SlowlogNoEntry:
		return fmt.Sprintf("the slowlog of pool %s (%s) has no entry for worker %d: php-fpm writes one when a request runs past request_slowlog_timeout, and none where its master lacks CAP_SYS_PTRACE to trace the worker", e.Pool, e.Path, e.PID)
	}
	return fmt.Sprintf("the slowlog of pool %s cannot be read: %s", e.Pool, slowlogFix(e.Pool, e.Path, e.Err))
}

// slowlogFix says what is wrong with a slowlog fpmguard could not read,
// and what to do about it.
func slowlogFix(pool, path string, err error) string {
	var errno syscall.Errno
	switch {
	case strings.HasPrefix(path, "/proc/self/fd/") || strings.HasPrefix(path, "/dev/std") || path == "/dev/fd/2":
		return fmt.Sprintf("%s is php-fpm's own output, which no other process can read back; give the pool a slowlog file (slowlog = /var/log/php-fpm/%s.slow) on a volume fpmguard sees", path, pool)
	case errors.Is(err, safefile.ErrNotRegular):
		return fmt.Sprintf("%s is not a regular file (a pipe or a device would never end a read); give the pool a slowlog file", path)
	case errors.Is(err, syscall.ELOOP):
		return fmt.Sprintf("%s is a symbolic link, which fpmguard does not follow for a file the pool's user may replace; name the file itself in the pool's slowlog", path)
	case errors.Is(err, safefile.ErrOwner):
		return fmt.Sprintf("%s is owned by a user fpmguard does not trust for a master's files; the master (root, or --fpm-master-user) should own it", path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist (yet): php-fpm creates it at its first entry", path)
	case errors.As(err, &errno) && (errno == syscall.EACCES || errno == syscall.EPERM):
		return fmt.Sprintf("%s: permission denied; run fpmguard as root, or with CAP_DAC_READ_SEARCH, or make the slowlog readable by its user", path)
	}
	return fmt.Sprintf("%s: %v", path, err)
}

// ReadSlowlog returns the pool's newest slowlog entry for pid. The slowlog
// is read inside the master's root, as a regular file (a container's
// slowlog is often /proc/self/fd/2, from here fpmguard's own stderr, where
// a read would never end) that is no link, owned by a user whose masters
// tr trusts: the master writes it, and the pool user may own its
// directory. An error is a *SlowlogError, which says why and what to do.
func ReadSlowlog(t Target, pid int, tr Trust) (SlowlogEntry, error) {
	entries, err := readSlowlogTail(t, tr)
	if err != nil {
		return SlowlogEntry{}, err
	}
	e, ok := entries.newest(pid)
	if !ok {
		return SlowlogEntry{}, &SlowlogError{Pool: t.Name, Path: t.Slowlog, PID: pid, Reason: SlowlogNoEntry}
	}
	return e, nil
}

// slowlogTail is the last part of a slowlog, as read.
type slowlogTail []byte

// readSlowlogTail reads the end of the pool's slowlog.
func readSlowlogTail(t Target, tr Trust) (slowlogTail, error) {
	tail, _, _, err := readSlowlogTailIf(t, tr, -1, time.Time{})
	return tail, err
}

// readSlowlogTailIf reads the end of the pool's slowlog unless its size
// and modification time are still size and mtime: then the tail is nil.
func readSlowlogTailIf(t Target, tr Trust, size int64, mtime time.Time) (slowlogTail, int64, time.Time, error) {
	if t.Slowlog == "" {
		return nil, 0, time.Time{}, &SlowlogError{Pool: t.Name, Reason: SlowlogNone}
	}
	// The bound is on what is read, not on the file: a slowlog grows.
	f, fi, err := safefile.Open(t.Root, t.Slowlog, safefile.Rules{MaxBytes: 1 << 62, Owners: tr.FileOwners()})
	if err != nil {
		return nil, 0, time.Time{}, &SlowlogError{Pool: t.Name, Path: t.Slowlog, Reason: SlowlogUnreadable, Err: err}
	}
	defer f.Close()
	if fi.Size() == size && fi.ModTime().Equal(mtime) {
		return nil, size, mtime, nil
	}
	if fi.Size() > maxSlowlogRead {
		_, _ = f.Seek(fi.Size()-maxSlowlogRead, io.SeekStart)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSlowlogRead))
	if err != nil {
		return nil, 0, time.Time{}, &SlowlogError{Pool: t.Name, Path: t.Slowlog, Reason: SlowlogUnreadable, Err: err}
	}
	if data == nil {
		data = slowlogTail{}
	}
	return data, fi.Size(), fi.ModTime(), nil
}

// newest finds the last entry of pid in the tail.
func (data slowlogTail) newest(pid int) (SlowlogEntry, bool) {
	marker := []byte("] pid " + strconv.Itoa(pid) + "\n")
	at := bytes.LastIndex(data, marker)
	if at < 0 {
		return SlowlogEntry{}, false
	}
	start := bytes.LastIndexByte(data[:at], '\n') + 1
	entry := data[start:]
	if end := bytes.Index(entry, []byte("\n\n")); end >= 0 {
		entry = entry[:end]
	}
	if len(entry) > maxSlowlogKept {
		entry = entry[:maxSlowlogKept]
	}
	return parseSlowlogEntry(strings.TrimSpace(string(entry)), pid), true
}

// slowlogTime is how php-fpm writes the time of an entry (fpm_php_trace.c).
const slowlogTime = "02-Jan-2006 15:04:05"

// parseSlowlogEntry reads an entry's time, script and frames:
//
//	[26-Nov-2026 09:00:00]  [pool www] pid 4711
//	script_filename = /var/www/report.php
//	[0x00007f0e2c813f40] sleep() /var/www/report.php:3
func parseSlowlogEntry(text string, pid int) SlowlogEntry {
	e := SlowlogEntry{PID: pid, Text: text}
	lines := strings.Split(text, "\n")
	if first := lines[0]; strings.HasPrefix(first, "[") {
		if end := strings.IndexByte(first, ']'); end > 0 {
			e.Time, _ = time.ParseInLocation(slowlogTime, first[1:end], time.Local)
		}
	}
	for _, l := range lines[1:] {
		if s, ok := strings.CutPrefix(l, "script_filename = "); ok {
			e.Script = s
			continue
		}
		if strings.HasPrefix(l, "[0x") {
			if i := strings.IndexByte(l, ']'); i > 0 {
				e.Frames = append(e.Frames, strings.TrimSpace(l[i+1:]))
			}
		}
	}
	return e
}

// ofRequest reports whether the entry was written during the request of
// script that began at start: after it began (a second's slack: php-fpm
// writes whole seconds), for the same script.
func (e SlowlogEntry) ofRequest(script string, start time.Time) bool {
	return !e.Time.IsZero() && e.Script == script && !e.Time.Before(start.Add(-time.Second).Truncate(time.Second))
}
