// Package nginxlog follows nginx's error logs and counts the upstream
// failures of each pool: what nginx answered (502, 504) and why. It imports
// supervisor for the pools, fastcgi for their addresses and event for what
// it reports; it must not import watch, runner or web.
package nginxlog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Failure is one upstream failure nginx logged.
type Failure struct {
	Status   int // what nginx answered the client: 502 or 504
	Cause    Cause
	Upstream string // the upstream's address as nginx writes it, e.g. unix:/run/php/www.sock
}

// causes map the error text nginx writes to what it answered.
var causes = []struct {
	text   string
	status int
	cause  Cause
}{
	{"(111: Connection refused)", 502, CauseRefused},
	{"(2: No such file or directory)", 502, CauseMissing},
	{"(13: Permission denied)", 502, CausePermission},
	{"(11: Resource temporarily unavailable)", 502, CauseBacklog},
	{"upstream prematurely closed connection", 502, CauseReset},
	{"(104: Connection reset by peer)", 502, CauseReset},
	{"upstream timed out (110:", 504, CauseTimeout},
}

// ParseLine reads one line of nginx's error log and returns the
// upstream failure it records, if it records one of a FastCGI upstream.
//
// Parts of the line come from clients: the request line, the Host header
// and the Referer are written as they came. So the cause is looked for only
// in nginx's own message, before ", client: ", and the upstream is the
// first upstream field: it comes right after the request line, which holds
// no spaces (nginx refuses one that does), and before the host and the
// referrer, which could forge another.
func ParseLine(line string) (Failure, bool) {
	var e Failure
	msg, fields, ok := strings.Cut(line, ", client: ")
	if !ok || !strings.Contains(msg, "upstream") {
		return e, false
	}
	for _, c := range causes {
		if strings.Contains(msg, c.text) {
			e.Status, e.Cause = c.status, c.cause
			break
		}
	}
	if e.Status == 0 {
		return e, false
	}
	const key = `, upstream: "fastcgi://`
	i := strings.Index(fields, key)
	if i < 0 {
		return e, false
	}
	rest := fields[i+len(key):]
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return e, false
	}
	up := rest[:end]
	// nginx writes a unix upstream as unix:/path: with a trailing colon.
	if strings.HasPrefix(up, "unix:") {
		up = strings.TrimSuffix(up, ":")
	}
	if up == "" {
		return e, false // no address: nothing to count it against
	}
	e.Upstream = up
	return e, true
}

// Follower follows nginx error logs, counts the upstream failures of each
// pool (matched by its socket address) and turns them into events that say
// what fpmguard saw of the pool at the time.
type Follower struct {
	paths  []string
	pools  map[string]string // canonical address -> pool name
	addrs  map[string]string // pool name -> its address as nginx names it
	events *event.Log
	// ReportEvery is how often new failures become an event.
	ReportEvery time.Duration
	// Describe, when set, says in a few words what fpmguard saw of a pool,
	// for the events.
	Describe func(pool string) string
	// poll is how often the logs are read; drainQuiet how long a rotated
	// log must stay quiet, once nginx writes to the new one, to be closed.
	poll, drainQuiet time.Duration
	// onLine, when set, sees every complete line read; onPass, the end of
	// each pass over a log's open files, with the rotations seen so far
	// (tests).
	onLine func(line string)
	onPass func(rotations int)
	long   atomic.Uint64 // lines dropped for passing maxNginxLine
	opened atomic.Int64  // logs opened at least once

	mu     sync.Mutex
	counts map[Key]uint64
	recent map[Key][]time.Time // within the last minute
	fresh  map[Key]bool        // seen since the last event
}

// NewFollower follows paths for the pools of targets.
func NewFollower(paths []string, targets []supervisor.Target, events *event.Log) *Follower {
	n := &Follower{paths: paths, pools: map[string]string{}, addrs: map[string]string{}, events: events, ReportEvery: 10 * time.Second,
		poll: 250 * time.Millisecond, drainQuiet: 10 * time.Second,
		counts: map[Key]uint64{}, recent: map[Key][]time.Time{}, fresh: map[Key]bool{}}
	for _, t := range targets {
		addr := t.Address
		// A master in another container is reached through /proc/PID/root;
		// nginx, beside it, names the socket by its own path.
		if t.Root != "" && addr.Network == "unix" {
			addr.Addr = strings.TrimPrefix(addr.Addr, t.Root)
		}
		n.pools[addr.String()] = t.Name
		n.pools[t.Address.String()] = t.Name
		n.addrs[t.Name] = addr.String()
	}
	return n
}

// Counts returns the failures counted per pool, status and cause.
func (n *Follower) Counts() map[Key]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.counts)
}

// Opened reports whether every log has been opened: until then, what
// nginx logged is not known, and Counts' zeros do not say "no failure".
func (n *Follower) Opened() bool { return n.opened.Load() >= int64(len(n.paths)) }

// Run follows every log until ctx ends.
func (n *Follower) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range n.paths {
		wg.Go(func() { n.follow(ctx, p) })
	}
	wg.Go(func() {
		tick := time.NewTicker(n.ReportEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n.report()
			}
		}
	})
	wg.Wait()
}

// record counts one failure.
func (n *Follower) record(e Failure) {
	addr, err := fastcgi.ParseAddress(e.Upstream)
	if err != nil {
		return
	}
	pool, ok := n.pools[addr.String()]
	if !ok {
		return // another upstream: not ours
	}
	k := Key{Pool: pool, Status: e.Status, Cause: e.Cause}
	n.mu.Lock()
	n.counts[k]++
	n.recent[k] = append(n.recent[k], time.Now())
	n.fresh[k] = true
	n.mu.Unlock()
}

// report turns the failures seen since the last report into events, with
// the count of the last minute.
func (n *Follower) report() {
	n.mu.Lock()
	cutoff := time.Now().Add(-time.Minute)
	type item struct {
		k     Key
		count int
	}
	var items []item
	for k, times := range n.recent {
		kept := times[:0]
		for _, t := range times {
			if t.After(cutoff) {
				kept = append(kept, t)
			}
		}
		n.recent[k] = kept
		if n.fresh[k] && len(kept) > 0 {
			items = append(items, item{k: k, count: len(kept)})
		}
		delete(n.fresh, k)
	}
	n.mu.Unlock()
	sort.Slice(items, func(i, j int) bool {
		return items[i].k.Pool+string(items[i].k.Cause) < items[j].k.Pool+string(items[j].k.Cause)
	})
	for _, it := range items {
		msg := fmt.Sprintf("%d × %d %s on %s in the last minute", it.count, it.k.Status, causeText(it.k.Cause), n.addrs[it.k.Pool])
		if n.Describe != nil {
			if seen := n.Describe(it.k.Pool); seen != "" {
				msg += " — " + seen
			}
		}
		n.events.Add(event.Event{Pool: it.k.Pool, Kind: event.KindNginxUpstream, Message: msg})
	}
}

// Cause is why nginx could not use the upstream, as its message says.
type Cause string

// The causes fpmguard counts.
const (
	CauseRefused    Cause = "refused"
	CauseMissing    Cause = "missing"
	CausePermission Cause = "permission"
	CauseBacklog    Cause = "backlog"
	CauseReset      Cause = "reset"
	CauseTimeout    Cause = "timeout"
)

// Key labels a count of upstream failures nginx logged.
type Key struct {
	Pool   string
	Status int // what nginx answered: 502 or 504
	Cause  Cause
}

func causeText(cause Cause) string {
	switch cause {
	case CauseTimeout:
		return "upstream timed out"
	case CauseReset:
		return "upstream closed the connection early"
	case CauseBacklog:
		return "listen backlog full (EAGAIN)"
	case CauseRefused:
		return "connection refused"
	case CauseMissing:
		return "socket missing"
	case CausePermission:
		return "permission denied"
	}
	return string(cause)
}

// follow reads new lines of one log as they come, surviving rotation (a
// new file at the path) and truncation. It starts at the end: only what
// happens while fpmguard runs is counted.
//
// On rotation nothing nginx wrote is lost. logrotate renames the file and
// then signals nginx (USR1) to reopen its logs; until each nginx process has
// reopened, it keeps writing to the renamed file through the descriptor it
// holds. So the follower reads the old file to its end before it reads the
// new one, and then keeps the old descriptor and keeps reading it on every
// poll. It closes it only once the file that replaced it has received data
// (nginx has reopened: nothing new should go to the old file) and the old
// one has then been quiet for drainQuiet (a worker busy when the signal came
// reopens a little later), reading it once more just before. A fixed
// number of drains would lose a line written by a late worker; waiting for
// a quiet period alone would lose everything if nginx is never signalled
// (then the new file stays empty and the old one is followed for as long
// as that lasts). Copytruncate loses, by design, what nginx wrote between
// the copy and the truncation: that is gone before anyone can read it.
func (n *Follower) follow(ctx context.Context, path string) {
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
	cur, _ = openLog(path, false) // missing yet: read it whole when it comes
	opened := false
	seen := func() {
		if cur != nil && !opened {
			opened = true
			n.opened.Add(1)
		}
	}
	seen()
	tick := time.NewTicker(n.poll)
	defer tick.Stop()
	for {
		if cur != nil {
			n.drain(cur)
		}
		// Newest first, so that a rotated file's successor was read before
		// this pass reads the file itself. A successor with data means nginx
		// reopened past the file; the read of it that follows that check
		// then sees everything nginx wrote to it, and only then may it close.
		for i := len(old) - 1; i >= 0; i-- {
			o := old[i]
			next := cur
			if i+1 < len(old) {
				next = old[i+1]
			}
			reopened := next != nil && next.got
			if n.drain(o) {
				continue
			}
			if reopened && time.Since(o.lastData) >= n.drainQuiet {
				o.close()
				old = slices.Delete(old, i, i+1)
			}
		}
		if n.onPass != nil {
			n.onPass(rotations)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			continue // rotated away and not recreated yet: keep reading the old file
		}
		if cur == nil {
			cur, _ = openLog(path, true) // the file appeared: read it whole
			seen()
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
			nf, err := openLog(path, true)
			if err != nil {
				continue // gone again: try on the next poll
			}
			n.drain(cur) // to its end, before any line of the new file
			cur.lastData = time.Now()
			old = append(old, cur)
			cur = nf
			rotations++
			for len(old) > maxRotated {
				n.drain(old[0]) // one last time
				old[0].close()
				old = old[1:]
			}
		case ours.Size() < cur.offset:
			_ = cur.rewind() // truncated: a failed seek is retried on the next poll
		}
	}
}

// maxNginxLine skips absurd lines; nginx's own limit is about 2 KB. It is
// also the bound of the buffer holding a line whose end has not come yet.
const maxNginxLine = 64 << 10

// maxRotated bounds the rotated files kept open, should rotations come
// faster than nginx reopens; the oldest then is read one last time and
// closed.
const maxRotated = 4

// logFile is one open log file being read: the one at the path, or a
// rotated one nginx may still write to.
type logFile struct {
	f      *os.File
	r      *bufio.Reader
	offset int64 // bytes read
	// line holds the start of a line whose end has not been written yet;
	// never more than maxNginxLine bytes.
	line []byte
	// skipping: the current line passed maxNginxLine; the rest of it, up
	// to its newline, is dropped as it comes.
	skipping bool
	got      bool      // some read returned data
	lastData time.Time // when a read last returned data
}

// openLog opens path, at its start or at its end.
func openLog(path string, fromStart bool) (*logFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nginx log: %w", err)
	}
	var offset int64
	if !fromStart {
		if offset, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("nginx log %s: %w", path, err)
		}
	}
	return &logFile{f: f, r: bufio.NewReaderSize(f, 64<<10), offset: offset}, nil
}

func (l *logFile) close() { l.f.Close() }

// rewind starts over at the start of a truncated file.
func (l *logFile) rewind() error {
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("nginx log rewind: %w", err)
	}
	l.r.Reset(l.f)
	l.offset = 0
	l.line, l.skipping = l.line[:0], false
	return nil
}

// drain reads l to its current end, and counts the failures of each
// complete line. It reports whether it read anything.
//
// ReadSlice, unlike ReadString, never returns more than the reader's
// buffer: a run of bytes without a newline, however long, costs at most
// the buffer and maxNginxLine.
func (n *Follower) drain(l *logFile) bool {
	read := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(chunk) > 0 {
			read = true
			l.offset += int64(len(chunk))
			if !l.skipping {
				if len(l.line)+len(chunk) > maxNginxLine {
					l.skipping = true
					l.line = l.line[:0]
					n.long.Add(1)
				} else {
					l.line = appendBounded(l.line, chunk)
				}
			}
		}
		if err == bufio.ErrBufferFull {
			continue // a line longer than the buffer: its next part
		}
		if err != nil {
			break // at the end (or unreadable): the rest of the line comes later
		}
		if !l.skipping {
			n.line(string(l.line))
		}
		l.line, l.skipping = l.line[:0], false
	}
	if read {
		l.got, l.lastData = true, time.Now()
	}
	return read
}

// appendBounded appends chunk to line, which with it holds no more than
// maxNginxLine bytes, growing it no further than that: append's own
// growth could double it past the bound.
func appendBounded(line, chunk []byte) []byte {
	if need := len(line) + len(chunk); need > cap(line) {
		grown := make([]byte, len(line), min(max(need, 2*cap(line)), maxNginxLine))
		copy(grown, line)
		line = grown
	}
	return append(line, chunk...)
}

// line handles one complete line of the log.
func (n *Follower) line(line string) {
	if n.onLine != nil {
		n.onLine(line)
	}
	if e, ok := ParseLine(line); ok {
		n.record(e)
	}
}

// LongLines returns how many lines were dropped for passing maxNginxLine.
func (n *Follower) LongLines() uint64 { return n.long.Load() }

func nlink(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1 // unknown: take the file for still linked
}
