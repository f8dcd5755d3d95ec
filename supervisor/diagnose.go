package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/phpstack"
	"github.com/fpmguard/fpmguard/waits"
)

// The diagnosis of held-up workers: what each waits for (package waits),
// the PHP stack of the hung ones (package phpstack) and php-fpm's slowlog
// backtrace of their request, grouped by cause (waitgroup.go). It costs a
// few small /proc reads per worker, so it is read only for workers already
// hung, or whose request is older than SlowAfter: idle workers and short
// requests cost nothing. Stacks are read for hung workers only.

// Diagnoser reads the diagnosis. One serves every pool; it is safe for
// concurrent use.
type Diagnoser struct {
	Waits  *waits.Reader
	Stacks *phpstack.Reader
	Trust  Trust
	// Warn, when set, hears once each problem that keeps fpmguard from
	// seeing what workers wait for or where they are in their code: a
	// permission fpmguard lacks (and how to grant it), a PHP build the
	// stack reader does not know, a slowlog it cannot read. master is
	// the master it concerns, 0 for all.
	Warn func(master int, msg string)

	mu       sync.Mutex
	warned   map[string]bool
	waitsMsg string            // the waits reader's warning, once given
	reading  map[titleKey]bool // workers whose stack is being read
}

// NewDiagnoser reads this host's workers.
func NewDiagnoser(tr Trust) *Diagnoser {
	d := &Diagnoser{Stacks: &phpstack.Reader{}, Trust: tr, warned: map[string]bool{}}
	d.Waits = waits.NewReader()
	d.Waits.Warn = func(msg string) {
		d.mu.Lock()
		d.waitsMsg = msg
		d.mu.Unlock()
		d.warn("waits", 0, msg)
	}
	return d
}

// maxWarned bounds the problems remembered as told.
const maxWarned = 1024

// warn tells Warn of a problem once per key.
func (d *Diagnoser) warn(key string, master int, msg string) {
	d.mu.Lock()
	if d.warned == nil || len(d.warned) >= maxWarned {
		d.warned = map[string]bool{}
	}
	told := d.warned[key]
	d.warned[key] = true
	d.mu.Unlock()
	if !told && d.Warn != nil {
		d.Warn(master, msg)
	}
}

// PoolDiagnosis is one pool's diagnosis across its probes: how long each
// worker has waited on the same thing, the stacks read, the slowlog as
// last read. The watch loop keeps one per pool; a one-shot command makes
// one per call. Only one Read of it runs at a time.
type PoolDiagnosis struct {
	tracker waits.Tracker
	stacks  map[requestKey]*Stack
	slowlog slowlogCache
}

// requestKey names one request of one worker: its pid, its start, and
// php-fpm's count of its requests, which counts one as each begins.
type requestKey struct {
	pid      int
	start    uint64
	requests uint64
}

// SlowAfter is the request age past which a worker's wait is read: the
// pool's request_slowlog_timeout, or half of hungAfter if that comes
// first.
func SlowAfter(t Target, hungAfter time.Duration) time.Duration {
	after := hungAfter / 2
	if s := t.RequestSlowlogTimeout; s > 0 && s < after {
		after = s
	}
	return after
}

// Candidate is a worker whose wait to read.
type Candidate struct {
	PID      int
	Start    uint64 // start time in clock ticks: with the pid, one process
	Requests uint64
	Hung     bool
	OSState  OSState
	Script   string
	// RequestStart is when its request began, by php-fpm's count of its
	// age at the status read.
	RequestStart time.Time
}

func (c Candidate) key() requestKey { return requestKey{c.PID, c.Start, c.Requests} }

// Candidates are the workers of r to diagnose: serving a request that is
// not one of fpmguard's probes, hung or older than SlowAfter. None for a
// pool whose requests are all short: nothing is allocated then.
func Candidates(t Target, r *PoolReport, hungAfter time.Duration) []Candidate {
	after := SlowAfter(t, hungAfter).Seconds()
	var out []Candidate
	for i := range r.Processes {
		p := &r.Processes[i]
		if p.Idle() || p.probeRequest || (!p.Hung && p.RequestDurationSeconds <= after) || p.startTicks == 0 {
			continue
		}
		out = append(out, Candidate{PID: p.PID, Start: p.startTicks, Requests: p.Requests, Hung: p.Hung, OSState: p.OSState, Script: p.Script,
			RequestStart: r.at.Add(-time.Duration(p.RequestDurationSeconds * float64(time.Second)))})
	}
	return out
}

// Reading is what one Read saw of a pool's candidates.
type Reading struct {
	At      time.Time
	Workers map[int]WorkerReading // by pid
	// Advice says what would let fpmguard see more, from what this
	// reading could not read.
	Advice []string

	permission bool // a stack read was refused: said in Advice
}

// WorkerReading is what was read of one worker.
type WorkerReading struct {
	key     requestKey
	Wait    *waits.Wait
	Stack   *Stack   // hung workers only
	Slowlog []string // the top of the slowlog's backtrace of the request
}

// stackEvery is how often the stack of a hung worker that waits on the
// same thing is read again: a worker blocked in one call stays in one
// stack, and a stack read walks its memory.
const stackEvery = 10 * time.Second

// slowlogFrames is how many frames of a slowlog backtrace are shown
// beside a wait.
const slowlogFrames = 3

// Read reads the waits of cands, workers of pool t under master (0: not
// known), and the stacks and slowlog backtraces of the hung ones, into a
// reading pd remembers. When ctx ends, what is not read yet is not.
func (d *Diagnoser) Read(ctx context.Context, t Target, master int, cands []Candidate, pd *PoolDiagnosis) *Reading {
	rd := &Reading{At: time.Now(), Workers: make(map[int]WorkerReading, len(cands))}
	targets := make([]waits.Target, len(cands))
	for i, c := range cands {
		targets[i] = waits.Target{PID: c.PID, StartTicks: c.Start, PPID: master}
	}
	ws := d.Waits.Read(ctx, targets)
	pd.tracker.Update(rd.At, ws)
	unknown := false
	for i, c := range cands {
		w := ws[i]
		unknown = unknown || w.Kind == waits.KindUnknown
		rd.Workers[c.PID] = WorkerReading{key: c.key(), Wait: &w}
	}
	if unknown {
		d.mu.Lock()
		if d.waitsMsg != "" {
			rd.Advice = append(rd.Advice, d.waitsMsg)
		}
		d.mu.Unlock()
	}
	d.readStacks(ctx, master, cands, pd, rd)
	d.readSlowlog(t, master, cands, pd, rd)
	return rd
}

// readStacks reads the stack of each hung candidate, or keeps the one read
// before while it waits on the same thing.
func (d *Diagnoser) readStacks(ctx context.Context, master int, cands []Candidate, pd *PoolDiagnosis, rd *Reading) {
	if d.Stacks == nil {
		return
	}
	kept := make(map[requestKey]*Stack, len(cands))
	for _, c := range cands {
		wr := rd.Workers[c.PID]
		if !c.Hung || ctx.Err() != nil {
			continue
		}
		if c.OSState == OSDiskSleep {
			// Its memory may be held by the I/O it waits on: a read of it
			// could wait as long.
			continue
		}
		old := pd.stacks[c.key()]
		fresh := old != nil && old.Error == "" && rd.At.Sub(old.At) < stackEvery &&
			wr.Wait.Kind != waits.KindRunning && !wr.Wait.Since.After(old.At)
		if !fresh {
			var err error
			old, err = d.ReadStack(ctx, c.PID, c.Start, master)
			if note := d.stackProblem(master, err, rd); note != "" {
				// The advice says it once, for every worker alike.
				old.Error = note
			}
		}
		kept[c.key()] = old
		wr.Stack = old
		rd.Workers[c.PID] = wr
	}
	pd.stacks = kept
}

// stackProblem tells of a stack read that failed for a reason that holds
// for every worker: a permission fpmguard lacks, once per master (in the
// reading's advice, and to Warn), or a PHP build it does not know, once
// per binary. For a permission, it returns the worker's stack error that
// points at the advice: the same for every worker, so outputs say it once.
func (d *Diagnoser) stackProblem(master int, err error, rd *Reading) string {
	var perm *phpstack.PermissionError
	var unsupported *phpstack.UnsupportedError
	switch {
	case errors.As(err, &perm):
		d.warn(fmt.Sprintf("stack-permission:%d", master), master, err.Error())
		if !rd.permission {
			rd.permission = true
			rd.Advice = append(rd.Advice, err.Error())
		}
		return "fpmguard may not read its memory: see the advice (" + missingWhat(perm.Missing) + ")"
	case errors.As(err, &unsupported):
		d.warn("stack-unsupported:"+unsupported.Binary, master, err.Error())
	}
	return ""
}

// missingWhat names in a few words what a refused stack read lacks.
func missingWhat(m phpstack.Missing) string {
	switch m {
	case phpstack.MissingCapSysPtrace, phpstack.MissingDumpable:
		return "CAP_SYS_PTRACE"
	case phpstack.MissingPtraceScope:
		return "kernel.yama.ptrace_scope"
	}
	return "a security module or user namespace"
}

// slowlogCache is a pool's slowlog tail as last read, kept while the file
// does not change.
type slowlogCache struct {
	size  int64
	mtime time.Time
	tail  slowlogTail
}

// readSlowlog finds the slowlog's backtrace of each hung candidate's
// request, when the slowlog has one.
func (d *Diagnoser) readSlowlog(t Target, master int, cands []Candidate, pd *PoolDiagnosis, rd *Reading) {
	if t.Slowlog == "" || !slices.ContainsFunc(cands, func(c Candidate) bool { return c.Hung }) {
		return
	}
	tail, err := pd.slowlog.read(t, d.Trust)
	if err != nil {
		var se *SlowlogError
		if errors.As(err, &se) && se.Reason == SlowlogUnreadable {
			d.warn("slowlog:"+t.Address.String(), master, err.Error())
		}
		return
	}
	for _, c := range cands {
		if !c.Hung {
			continue
		}
		e, ok := tail.newest(c.PID)
		if !ok || !e.ofRequest(c.Script, c.RequestStart) {
			continue
		}
		wr := rd.Workers[c.PID]
		wr.Slowlog = e.Frames[:min(len(e.Frames), slowlogFrames)]
		rd.Workers[c.PID] = wr
	}
}

// read returns the slowlog's tail, read again only when the file changed.
func (c *slowlogCache) read(t Target, tr Trust) (slowlogTail, error) {
	tail, size, mtime, err := readSlowlogTailIf(t, tr, c.size, c.mtime)
	if err != nil {
		*c = slowlogCache{}
		return nil, err
	}
	if tail != nil {
		*c = slowlogCache{size: size, mtime: mtime, tail: tail}
	}
	return c.tail, nil
}

// Apply puts the reading into r: each worker's wait, stack and slowlog
// backtrace, for the workers still in the request that was read, and the
// hung workers' groups.
func (rd *Reading) Apply(r *PoolReport) {
	if rd == nil {
		return
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		wr, ok := rd.Workers[p.PID]
		if !ok || p.Idle() || wr.key != (requestKey{p.PID, p.startTicks, p.Requests}) {
			continue
		}
		p.Wait, p.Stack, p.SlowlogTrace = wr.Wait, wr.Stack, wr.Slowlog
	}
	r.Waits = groupWaits(r, rd.At)
	for _, a := range rd.Advice {
		if !slices.Contains(r.Advice, a) {
			r.Advice = append(r.Advice, a)
		}
	}
}

// StartDiagnosis reads the diagnosis of r's held-up workers on a goroutine
// of its own, r marked (Mark) already; the function it returns waits for
// the reading until ctx ends, and returns it, or nil when it did not come
// in time or there was nothing to read. A one-shot command reads it while
// the heartbeat waits.
func (d *Diagnoser) StartDiagnosis(ctx context.Context, t Target, r *PoolReport, hungAfter time.Duration, pd *PoolDiagnosis) func() *Reading {
	cands := Candidates(t, r, hungAfter)
	if len(cands) == 0 {
		return func() *Reading { return nil }
	}
	master := 0
	if r.Master != nil && r.Master.Alive {
		master = r.Master.PID
	}
	done := make(chan *Reading, 1)
	go func() { done <- d.Read(ctx, t, master, cands, pd) }()
	return func() *Reading {
		select {
		case rd := <-done:
			return rd
		default:
		}
		select {
		case rd := <-done:
			return rd
		case <-ctx.Done():
			return nil
		}
	}
}
