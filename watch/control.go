package watch

import (
	"context"
	"errors"
	"fmt"

	"github.com/fpmguard/fpmguard/supervisor"
)

// Control acts on one worker, or reads more of it, at a person's request:
// the kill key and the slowlog and stack keys of `fpmguard top`, and
// serve's POST /kill, GET /slowlog and GET /stack. The watcher is one; a
// serve over HTTP (web.Remote) is the other. Every call takes its context
// first and returns a real error: a refusal of a kill is a result, but a
// slowlog or stack that cannot be read says why.
type Control interface {
	// KillWorker asks for worker pid of pool to be killed through the
	// watchdog's rules; who names the asker for the event (a remote
	// serve names its HTTP client instead).
	KillWorker(ctx context.Context, pool string, pid int, who string) (KillResult, error)
	// Slowlog returns the pool's newest slowlog entry for pid; an error
	// says why there is none (*supervisor.SlowlogError).
	Slowlog(ctx context.Context, pool string, pid int) (string, error)
	// Stack reads the PHP stack of worker pid of pool now.
	Stack(ctx context.Context, pool string, pid int) (*supervisor.Stack, error)
}

var _ Control = (*Watcher)(nil)

// Slowlog returns the newest entry of pool's slowlog for worker pid. The
// error says why there is none: the pool has no slowlog, it cannot be
// read (and what to do), or it has no entry for that worker.
func (w *Watcher) Slowlog(ctx context.Context, pool string, pid int) (string, error) {
	pw, err := w.findPool(pool)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	pw.mu.Lock()
	t := pw.target
	pw.mu.Unlock()
	e, err := supervisor.ReadSlowlog(t, pid, w.prober.Trust)
	if err != nil {
		return "", err
	}
	return e.Text, nil
}

// ErrNotAWorker is returned for a stack asked of a pid that is not a
// worker of the pool the latest status page named.
var ErrNotAWorker = errors.New("not a worker of the pool")

// Stack reads the PHP stack of worker pid of pool now, on a person's
// request: only a pid the pool's latest status page names, whose parent,
// title and start time are still the worker's. Its memory is read, never
// stopped.
func (w *Watcher) Stack(ctx context.Context, pool string, pid int) (*supervisor.Stack, error) {
	pw, err := w.findPool(pool)
	if err != nil {
		return nil, err
	}
	d := w.prober.Diagnoser
	if d == nil {
		return nil, errors.New("this fpmguard reads no PHP stacks")
	}
	v := pw.view.Load()
	if v == nil || v.Report.Master == nil {
		return nil, fmt.Errorf("pid %d: pool %s has not been probed yet: %w", pid, pool, ErrNotAWorker)
	}
	for _, p := range v.Report.Processes {
		if p.PID != pid {
			continue
		}
		pw.mu.Lock()
		t := pw.target
		pw.mu.Unlock()
		if why := w.actions.notOurs(ctx, t, v.Report.Master.PID, pid, p.StartTicks()); why != "" {
			return nil, fmt.Errorf("not reading the stack of pid %d: %s: %w", pid, why, ErrNotAWorker)
		}
		st, err := d.ReadStack(ctx, pid, p.StartTicks(), v.Report.Master.PID)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("pid %d: the latest status page of pool %s does not name it: %w", pid, pool, ErrNotAWorker)
}
