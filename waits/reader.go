package waits

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Target is a worker whose wait to read. StartTicks and PPID, when set,
// make sure the pid still names that worker: a pid reused by another
// process is reported unknown, never read as the worker's wait.
type Target struct {
	PID        int
	StartTicks uint64 // its start, in clock ticks since boot (/proc/PID/stat field 22); 0: not checked
	PPID       int    // its master; 0: not checked
}

// Reader reads workers' waits. It is safe for concurrent use.
type Reader struct {
	// Ports names services by the peer's port; the package's Ports when
	// nil.
	Ports map[uint16]Service
	// Warn, when set, is told once, the first time fpmguard may not read
	// what a worker waits for, which file it could not read and which
	// capability it lacks.
	Warn func(msg string)

	proc     procFS
	open     func(netns string) (diagConn, error)
	warnOnce sync.Once

	mu   sync.Mutex
	last map[procKey]proved // the last proved wait of each worker

	// between, when set, runs between the first and the last reading of
	// a worker's state in each attempt (tests).
	between func(pid int)
}

// NewReader reads this host's /proc and sockets.
func NewReader() *Reader {
	return &Reader{proc: hostProc{root: "/proc"}, open: openDiag}
}

// proved is a wait read while its worker did not run, with what showed
// it: the worker's run count and system call line. A worker that has not
// run since, and sleeps in the same call, still waits on the same thing:
// anything that could change it (the peer closing, the lock's holder
// letting go) wakes the worker. A hung worker is read on every tick for as
// long as it hangs; this makes every reading after the first three small
// files.
type proved struct {
	runs uint64
	line string
	wait Wait
}

// maxProved bounds the proved waits kept, should workers come and go
// faster than they are forgotten.
const maxProved = 4096

// attempts is how many times a worker is read before its wait is called
// unknown for changing under the reader: a worker polling with a short
// timeout (curl wakes every second) is stable on the next try.
const attempts = 3

// Read reads what each target waits for, in order. The targets of one call
// share one reading of /proc/locks and one dump of each socket table.
// When ctx ends, the workers not read yet are unknown.
func (r *Reader) Read(ctx context.Context, targets []Target) []Wait {
	b := &batch{r: r, views: newViews(r.proc, r.open), proved: map[procKey]proved{}}
	defer b.views.close()
	out := make([]Wait, 0, len(targets))
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			out = append(out, unknown(t.PID, "not read: "+err.Error()))
			continue
		}
		out = append(out, b.read(t))
	}
	r.remember(b.proved)
	return out
}

// remember keeps the waits proved in a Read for the next ones. Workers
// that exit leave theirs behind until there are maxProved: then all are
// forgotten, and the next reading of each is a full one.
func (r *Reader) remember(ps map[procKey]proved) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil || len(r.last)+len(ps) > maxProved {
		r.last = make(map[procKey]proved, len(ps))
	}
	for k, p := range ps {
		r.last[k] = p
	}
}

// lastProved returns the wait proved for a worker at the last Read.
func (r *Reader) lastProved(k procKey) (proved, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.last[k]
	return p, ok
}

// batch is the state shared by the workers of one Read.
type batch struct {
	r      *Reader
	views  *views
	locks  []lockLine
	locked bool // locks was read
	proved map[procKey]proved
}

func unknown(pid int, reason string) Wait {
	return Wait{PID: pid, Kind: KindUnknown, FD: -1, Reason: reason}
}

// read reads one worker until two readings of its state around the
// reading of its wait agree.
func (b *batch) read(t Target) Wait {
	for range attempts {
		w, stable := b.attempt(t)
		if stable {
			return w
		}
		b.locked = false // what changed may be a lock: read the table again
	}
	return unknown(t.PID, fmt.Sprintf("it changed while being read, %d times: it is busy, not blocked", attempts))
}

// attempt reads the worker once. A wait is proved only if the worker did
// not run between the first and the last reading of its state: its run
// count (schedstat), state, start time and system call line all unchanged.
// A worker that exits, or whose pid is reused, in between is unknown; an
// fd closed and reused in between would have needed the worker to run.
func (b *batch) attempt(t Target) (Wait, bool) {
	p := b.r.proc
	pre, err := readStat(p, t.PID)
	switch {
	case err != nil && gone(err):
		return unknown(t.PID, "the process has exited"), true
	case err != nil:
		return unknown(t.PID, err.Error()), true
	case t.StartTicks != 0 && pre.start != t.StartTicks, t.PPID != 0 && pre.ppid != t.PPID:
		return unknown(t.PID, fmt.Sprintf("pid %d is now another process (started at tick %d, parent %d), not the worker", t.PID, pre.start, pre.ppid)), true
	}
	switch pre.state {
	case 'Z', 'X':
		return unknown(t.PID, "the process has exited"), true
	case 'T', 't':
		return Wait{PID: t.PID, Start: pre.start, Kind: KindStopped, FD: -1}, true
	case 'R':
		return Wait{PID: t.PID, Start: pre.start, Kind: KindRunning, FD: -1}, true
	}
	sc, scErr := readSyscall(p, t.PID)
	if scErr != nil && gone(scErr) {
		return unknown(t.PID, "the process exited while being read"), true
	}
	key := procKey{t.PID, pre.start}
	if scErr == nil && pre.runs != 0 {
		if last, ok := b.r.lastProved(key); ok && last.runs == pre.runs && last.line == sc.line {
			b.keep(key, last)
			return last.wait, true
		}
	}
	if scErr != nil && denied(scErr) {
		b.r.warnDenied(t.PID, "/proc/PID/syscall", scErr)
	}
	var w Wait
	if scErr != nil {
		w = b.fromWchan(t.PID, pre, scErr)
	} else {
		w = b.classify(t.PID, pre, sc)
	}
	w.PID = t.PID
	if b.r.between != nil {
		b.r.between(t.PID)
	}
	post, err := readStat(p, t.PID)
	if err != nil || post.start != pre.start || post.state == 'Z' || post.state == 'X' {
		return unknown(t.PID, "the process exited while being read"), true
	}
	if post.runs != pre.runs || post.state != pre.state {
		return w, false
	}
	if scErr == nil {
		sc2, err := readSyscall(p, t.PID)
		if err != nil || sc2.line != sc.line {
			return w, false
		}
		if pre.runs != 0 {
			b.keep(key, proved{runs: pre.runs, line: sc.line, wait: w})
		}
	}
	return w, true
}

// keep remembers a proved wait for the next Read.
func (b *batch) keep(k procKey, p proved) { b.proved[k] = p }

func readSyscall(p procFS, pid int) (sysCall, error) {
	b, err := p.readFile(strconv.Itoa(pid) + "/syscall")
	if err != nil {
		return sysCall{}, err
	}
	return parseSyscall(b)
}

// wchan reads the kernel function a process sleeps in, without the
// compiler's suffixes (poll_schedule_timeout.constprop.0).
func wchan(p procFS, pid int) string {
	b, err := p.readFile(strconv.Itoa(pid) + "/wchan")
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	if s == "0" {
		return ""
	}
	return s
}

// warnDenied tells the Reader's Warn, once, that a worker's files could
// not be read.
func (r *Reader) warnDenied(pid int, file string, err error) {
	if r.Warn == nil {
		return
	}
	r.warnOnce.Do(func() {
		r.Warn(fmt.Sprintf("fpmguard may not read what worker %d waits for (%s: %v): reading another user's %s needs CAP_SYS_PTRACE, and its /proc/PID/fd also CAP_DAC_READ_SEARCH; waits are named from what can be read, or unknown",
			pid, file, err, file))
	})
}

// root is the directory the worker sees as /, as fpmguard's root shows it:
// "/" unless the worker is chrooted below fpmguard's root.
func (b *batch) root(pid int) string {
	r, err := b.r.proc.readLink(strconv.Itoa(pid) + "/root")
	if err != nil {
		return "/"
	}
	return r
}

// procLocks reads /proc/locks once per batch.
func (b *batch) procLocks() []lockLine {
	if !b.locked {
		data, _ := b.r.proc.readFile("locks")
		b.locks, b.locked = parseLocks(data), true
	}
	return b.locks
}
