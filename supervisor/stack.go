package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/phpstack"
)

// Stack is a worker's PHP stack as read from its memory (package
// phpstack), without stopping it: for a hung worker, on a person's
// request, and at the moment fpmguard decides to kill one.
type Stack struct {
	// Frames are innermost first. Names and files are PHP's users' text.
	Frames []Frame `json:"frames"`
	// Incomplete says why the frames end before the main script.
	Incomplete string `json:"incomplete,omitempty"`
	// Error says why nothing could be read: the worker exited, fpmguard
	// may not read its memory (and how to grant it), or its PHP build is
	// not one fpmguard knows.
	Error string `json:"error,omitempty"`
	// At is when it was read.
	At time.Time `json:"time"`
}

// Frame is one frame of a PHP stack.
type Frame struct {
	Function string `json:"function"` // as backtraces name it: "Repo->find", "sleep", "<main>"
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
}

// String is the frame with its place: "Repo->find (/app/Repo.php:12)".
func (f Frame) String() string {
	if f.File == "" {
		return f.Function
	}
	return fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)
}

// maxLineFrames bounds the frames a stack shows on one line.
const maxLineFrames = 5

// Names is the stack's functions on one line, innermost first, without
// the main script: "sleep <- wait_db <- Repo::find <- handle". "" for a
// stack without frames.
func (s *Stack) Names() string {
	var names []string
	for _, f := range s.Frames {
		if f.Function == "<main>" {
			break
		}
		if len(names) == maxLineFrames {
			names = append(names, "…")
			break
		}
		names = append(names, f.Function)
	}
	return strings.Join(names, " <- ")
}

// Places is the stack on one line with the file and line of each frame,
// the main script's included: "sleep <- wait_db (/app/db.php:4) <- …".
func (s *Stack) Places() string {
	parts := make([]string, 0, len(s.Frames)+1)
	for _, f := range s.Frames {
		parts = append(parts, f.String())
	}
	if s.Incomplete != "" {
		parts = append(parts, "? ("+s.Incomplete+")")
	}
	return strings.Join(parts, " <- ")
}

// stackOf turns what phpstack read into a report's stack.
func stackOf(st phpstack.Stack, at time.Time) *Stack {
	out := &Stack{At: at, Frames: []Frame{}}
	for _, f := range st.Frames {
		out.Frames = append(out.Frames, Frame{Function: f.Name(), File: f.File, Line: f.Line})
	}
	if st.Incomplete != nil {
		out.Incomplete = st.Incomplete.Error()
	}
	return out
}

// ReadStack reads the PHP stack of worker pid, which must still be the
// process that started at start ticks (0: not checked) with parent master
// (0: not checked): a pid reused by another process is never read as the
// worker. The read runs on a goroutine of its own and is given up when
// ctx ends: a read of a worker's memory can wait on the kernel (a worker
// in disk sleep holding its memory map's lock). While such a read has not
// ended, the worker's stack is not read again: each read would wait as
// long, on a goroutine of its own. The stack says in Error why it holds no
// frames; the error returned is the reader's, for errors.As
// (*phpstack.PermissionError, *phpstack.UnsupportedError).
func (d *Diagnoser) ReadStack(ctx context.Context, pid int, start uint64, master int) (*Stack, error) {
	key := titleKey{pid, start}
	d.mu.Lock()
	if d.reading == nil {
		d.reading = map[titleKey]bool{}
	}
	if d.reading[key] {
		d.mu.Unlock()
		err := fmt.Errorf("worker %d: an earlier read of its PHP stack has not ended: what it waits on holds its memory", pid)
		return &Stack{At: time.Now(), Frames: []Frame{}, Error: err.Error()}, err
	}
	d.reading[key] = true
	d.mu.Unlock()
	type result struct {
		s   *Stack
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := readStackChecked(d.Stacks, pid, start, master)
		d.mu.Lock()
		delete(d.reading, key)
		d.mu.Unlock()
		done <- result{s, err}
	}()
	select {
	case res := <-done:
		return res.s, res.err
	case <-ctx.Done():
		err := fmt.Errorf("worker %d: the read of its PHP stack did not end in time: %w", pid, ctx.Err())
		return &Stack{At: time.Now(), Frames: []Frame{}, Error: err.Error()}, err
	}
}

// readStackChecked reads the stack between two checks of the worker's
// identity: the same start time and parent before and after, so that what
// was read in between was that process's memory.
func readStackChecked(r *phpstack.Reader, pid int, start uint64, master int) (*Stack, error) {
	at := time.Now()
	fail := func(err error) (*Stack, error) {
		return &Stack{At: at, Frames: []Frame{}, Error: err.Error()}, err
	}
	if err := notTheWorker(pid, start, master); err != nil {
		return fail(err)
	}
	st, err := r.Read(pid)
	if err := notTheWorker(pid, start, master); err != nil {
		return fail(err)
	}
	if err != nil {
		return fail(err)
	}
	return stackOf(st, at), nil
}

// errNotTheWorker: the pid names another process than the worker now.
var errNotTheWorker = errors.New("the pid is now another process, not the worker")

// notTheWorker says why pid is no longer the worker that started at start
// under master, nil while it is.
func notTheWorker(pid int, start uint64, master int) error {
	b, err := readProcFile(pid, "stat")
	if err != nil {
		return fmt.Errorf("worker %d: %w", pid, phpstack.ErrExited)
	}
	var p OSProcess
	if err := parseStat(b, &p); err != nil {
		return fmt.Errorf("worker %d: %w", pid, err)
	}
	switch {
	case p.State == OSZombie:
		return fmt.Errorf("worker %d: %w", pid, phpstack.ErrExited)
	case start != 0 && p.StartTicks != start, master != 0 && p.PPID != master:
		return fmt.Errorf("pid %d: %w", pid, errNotTheWorker)
	}
	return nil
}
