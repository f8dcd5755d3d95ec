package watch

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/supervisor"
)

// ActionConfig switches actions on. Everything is off by default: fpmguard
// reports only.
type ActionConfig struct {
	// KillHungAfter: SIGTERM a worker whose request is older than this,
	// SIGKILL after KillGrace if it is still there. 0 is off.
	KillHungAfter time.Duration
	KillGrace     time.Duration // 5s if 0
	// MaxKillRatio caps the workers of a pool killed in one interval (at
	// least one): a slow database must not turn into a kill storm.
	MaxKillRatio float64 // 0.5 if 0
	// ReloadUnhealthy: when the heartbeat keeps failing and killing hung
	// workers did not help, test the config and SIGUSR2 the master.
	ReloadUnhealthy bool
	// PHPFPMBinary runs the config test (php-fpm -t): "" for the binary
	// the master runs, when it is a php-fpm only root may change.
	PHPFPMBinary string
	// Budget actions per pool in each BudgetWindow; beyond it fpmguard
	// reports and stops acting.
	Budget       int           // 10 if 0
	BudgetWindow time.Duration // 10m if 0
	// DryRun logs and counts what would be done, and does nothing.
	DryRun bool
}

// Defaults of ActionConfig.
const (
	DefaultKillGrace    = 5 * time.Second
	DefaultMaxKillRatio = 0.5
	DefaultBudget       = 10
	DefaultBudgetWindow = 10 * time.Minute
)

func (c *ActionConfig) fill() {
	if c.KillGrace <= 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.MaxKillRatio <= 0 {
		c.MaxKillRatio = DefaultMaxKillRatio
	}
	if c.Budget <= 0 {
		c.Budget = DefaultBudget
	}
	if c.BudgetWindow <= 0 {
		c.BudgetWindow = DefaultBudgetWindow
	}
}

// Action is what fpmguard does to php-fpm.
type Action string

// The actions.
const (
	ActionKill    Action = "kill"    // SIGTERM a hung worker
	ActionSIGKILL Action = "sigkill" // SIGKILL a worker still there after the grace
	ActionReload  Action = "reload"  // SIGUSR2 the master
)

// Result is how an action went.
type Result string

// The results.
const (
	ResultOK            Result = "ok"
	ResultError         Result = "error"
	ResultDryRun        Result = "dry_run"        // only reported, under --dry-run
	ResultRefused       Result = "refused"        // a safety rule said no
	ResultCapped        Result = "capped"         // more than the share per interval
	ResultBudget        Result = "budget"         // the pool's action budget is spent
	ResultConfigInvalid Result = "config_invalid" // php-fpm -t failed: no reload
)

// ActionKey labels an action count.
type ActionKey struct {
	Pool   supervisor.PoolID
	Action Action
	Result Result
}

// Actor carries out actions with every safety check: only processes whose
// parent is the pool's master and whose title is the pool's, never an idle
// worker, a capped share per interval, a budget per pool.
type Actor struct {
	cfg    ActionConfig
	prober *supervisor.Prober
	events *event.Log
	// signal is the one place a signal leaves fpmguard.
	signal func(pid int, sig syscall.Signal) error
	// output runs a command without a shell; under `run` it goes through
	// the reaper, the only caller of wait.
	output func(ctx context.Context, name string, args ...string) ([]byte, error)

	mu         sync.Mutex
	spent      map[supervisor.PoolID][]time.Time // pool -> action times in the window
	pending    map[int]uint64                    // SIGTERMed pid -> its start time, until it is gone
	lastKill   map[supervisor.PoolID]time.Time
	lastReload map[supervisor.PoolID]time.Time
	counts     map[ActionKey]uint64
	escalating sync.WaitGroup
}

func newActor(cfg ActionConfig, pr *supervisor.Prober, events *event.Log) *Actor {
	return &Actor{
		cfg: cfg, prober: pr, events: events,
		signal: func(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) },
		output: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		},
		spent:      map[supervisor.PoolID][]time.Time{},
		pending:    map[int]uint64{},
		lastKill:   map[supervisor.PoolID]time.Time{},
		lastReload: map[supervisor.PoolID]time.Time{},
		counts:     map[ActionKey]uint64{},
	}
}

// Counts returns how many actions of each kind were taken, or refused.
func (a *Actor) Counts() map[ActionKey]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.counts)
}

func (a *Actor) count(pool supervisor.PoolID, action Action, result Result) {
	a.mu.Lock()
	a.counts[ActionKey{pool, action, result}]++
	a.mu.Unlock()
}

// wait lets pending escalations finish.
func (a *Actor) wait() { a.escalating.Wait() }

// event records an event and returns its message.
func (a *Actor) event(t supervisor.Target, r *supervisor.PoolReport, kind event.Kind, pid int, w *event.WorkerRecord, format string, args ...any) string {
	e := event.Event{Pool: t.Name, MasterName: t.MasterName(), PID: pid, Kind: kind, Worker: w, Message: fmt.Sprintf(format, args...)}
	if r.Master != nil {
		e.Master = r.Master.PID
	}
	a.events.Add(e)
	return e.Message
}

// takeBudget spends one action of the pool's budget, or says it is spent.
func (a *Actor) takeBudget(pool supervisor.PoolID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	kept := a.spent[pool][:0]
	for _, at := range a.spent[pool] {
		if now.Sub(at) < a.cfg.BudgetWindow {
			kept = append(kept, at)
		}
	}
	a.spent[pool] = kept
	if len(kept) >= a.cfg.Budget {
		return false
	}
	a.spent[pool] = append(kept, now)
	return true
}

// killHung SIGTERMs the oldest hung workers, at most MaxKillRatio of the
// pool, and returns how many it signalled.
func (a *Actor) killHung(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport) int {
	if a.cfg.KillHungAfter <= 0 {
		return 0
	}
	a.mu.Lock()
	var cands []supervisor.ProcessState
	for _, p := range r.Processes {
		_, pending := a.pending[p.PID]
		if !p.Idle() && !p.ProbeRequest() && !pending && p.RequestDurationSeconds > a.cfg.KillHungAfter.Seconds() {
			cands = append(cands, p)
		}
	}
	a.mu.Unlock()
	if len(cands) == 0 {
		return 0
	}
	if r.Master == nil || !r.Master.Alive {
		a.count(t.ID(), ActionKill, ResultRefused)
		a.event(t, r, event.KindActionRefused, 0, nil, "not killing %d hung workers of pool %s: its master is not known to be alive, so nothing would respawn them", len(cands), t.Name)
		return 0
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].RequestDurationSeconds > cands[j].RequestDurationSeconds })
	limit := a.killLimit(len(r.Processes))

	// The status page was read a moment ago; read it again so that a
	// request that just ended does not cost an idle worker its life.
	busy, err := a.stillBusy(ctx, t)
	if err != nil {
		a.count(t.ID(), ActionKill, ResultRefused)
		a.event(t, r, event.KindActionRefused, 0, nil, "not killing hung workers of pool %s: cannot re-read its status page: %v", t.Name, err)
		return 0
	}
	killed := 0
	for i, p := range cands {
		if killed >= limit {
			a.count(t.ID(), ActionKill, ResultCapped)
			a.event(t, r, event.KindActionRefused, 0, nil, "%d more hung workers of pool %s wait for a later interval: at most %d of %d workers are killed per interval (--max-kill-ratio %.2f)",
				len(cands)-i, t.Name, limit, len(r.Processes), a.cfg.MaxKillRatio)
			break
		}
		if !busy[p.PID] {
			continue // its request ended meanwhile
		}
		res, _ := a.killOne(ctx, t, r, p, fmt.Sprintf("older than --kill-hung-after %s", a.cfg.KillHungAfter))
		switch res {
		case ResultBudget:
			return killed
		case ResultOK, ResultDryRun:
			killed++
		}
	}
	return killed
}

// killLimit is the most workers of a pool of n killed at once: a share of
// the pool (--max-kill-ratio), and at least one.
func (a *Actor) killLimit(n int) int { return max(1, int(a.cfg.MaxKillRatio*float64(n))) }

// killOne SIGTERMs worker p of t, whose request is known to be in flight,
// once it passes the last checks: it is the pool's worker (parent, title,
// start time) and the budget allows. why says why it dies, for the event.
// It counts and records the outcome, and returns it with its event's words.
func (a *Actor) killOne(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, p supervisor.ProcessState, why string) (Result, string) {
	if reason := a.notOurs(ctx, t, r.Master.PID, p.PID, p.StartTicks()); reason != "" {
		a.count(t.ID(), ActionKill, ResultRefused)
		return ResultRefused, a.event(t, r, event.KindActionRefused, p.PID, nil, "not killing pid %d named by the status page of pool %s: %s", p.PID, t.Name, reason)
	}
	if !a.takeBudget(t.ID()) {
		a.count(t.ID(), ActionKill, ResultBudget)
		return ResultBudget, a.event(t, r, event.KindBudget, p.PID, nil, "action budget of pool %s spent (%d per %s): reporting only, not killing worker %d", t.Name, a.cfg.Budget, a.cfg.BudgetWindow, p.PID)
	}
	rec := &event.WorkerRecord{State: p.State, URI: p.RequestURI, Script: p.Script, Method: p.RequestMethod, AgeSeconds: p.RequestDurationSeconds,
		CPUSeconds: p.CPUSeconds, RSSBytes: p.RSSBytes, OSState: p.OSState, HungKind: p.HungKind, Slowlog: slowlogEntry(t, p.PID, a.prober.Trust)}
	kind := p.HungKind
	if kind == "" {
		kind = "hung"
		if !p.Hung {
			kind = "busy"
		}
	}
	if a.cfg.DryRun {
		a.count(t.ID(), ActionKill, ResultDryRun)
		return ResultDryRun, a.event(t, r, event.KindAction, p.PID, rec, "dry run: would SIGTERM worker %d of pool %s (%s): %s %s for %s, %s",
			p.PID, t.Name, kind, p.RequestMethod, p.RequestURI, p.Age(), why)
	}
	if err := a.signal(p.PID, syscall.SIGTERM); err != nil {
		a.count(t.ID(), ActionKill, ResultError)
		return ResultError, a.event(t, r, event.KindAction, p.PID, rec, "SIGTERM to worker %d of pool %s failed: %v", p.PID, t.Name, err)
	}
	a.count(t.ID(), ActionKill, ResultOK)
	msg := a.event(t, r, event.KindAction, p.PID, rec, "SIGTERM worker %d of pool %s (%s): %s %s for %s, %s; the master respawns it",
		p.PID, t.Name, kind, p.RequestMethod, p.RequestURI, p.Age(), why)
	a.mu.Lock()
	a.pending[p.PID] = p.StartTicks()
	a.lastKill[t.ID()] = time.Now()
	a.mu.Unlock()
	a.escalating.Go(func() { a.escalate(ctx, t, r, p) })
	return ResultOK, msg
}

// stillBusy re-reads the status page and returns the pids serving a request.
func (a *Actor) stillBusy(ctx context.Context, t supervisor.Target) (map[int]bool, error) {
	if t.StatusPath == "" {
		return nil, fmt.Errorf("the pool has no pm.status_path")
	}
	st, err := a.prober.Client.Status(ctx, t.StatusVia(), t.StatusPath)
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, p := range st.Processes {
		if !p.Idle() {
			out[p.PID] = true
		}
	}
	return out, nil
}

// notOurs returns why pid must not be signalled as a worker of t, or "" when
// it may: its parent must be the pool's master, its title the pool's, and
// its start time the one observed, so a reused pid is never hit.
func (a *Actor) notOurs(ctx context.Context, t supervisor.Target, master, pid int, startTicks uint64) string {
	osp, err := a.prober.Procs.ReadProcess(ctx, pid)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot read it: %v", err)
	case osp.PPID != master:
		return fmt.Sprintf("its parent is %d, not the pool's master %d", osp.PPID, master)
	case osp.Title != supervisor.PoolTitle(t.Name):
		return fmt.Sprintf("its title is %q, not %q", osp.Title, supervisor.PoolTitle(t.Name))
	case startTicks != 0 && osp.StartTicks != startTicks:
		return "its pid was reused by another process"
	case osp.State == supervisor.OSZombie || osp.State == supervisor.OSGone:
		return "it has already exited"
	}
	return ""
}

// escalate SIGKILLs a SIGTERMed worker still there after the grace period.
func (a *Actor) escalate(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, p supervisor.ProcessState) {
	defer func() {
		a.mu.Lock()
		delete(a.pending, p.PID)
		a.mu.Unlock()
	}()
	timer := time.NewTimer(a.cfg.KillGrace)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return
	case <-timer.C:
	}
	osp, err := a.prober.Procs.ReadProcess(ctx, p.PID)
	if err != nil || osp.StartTicks != p.StartTicks() || osp.State == supervisor.OSZombie {
		return // it ended, as SIGTERM asked
	}
	if why := a.notOurs(ctx, t, r.Master.PID, p.PID, p.StartTicks()); why != "" {
		a.count(t.ID(), ActionSIGKILL, ResultRefused)
		a.event(t, r, event.KindActionRefused, p.PID, nil, "not sending SIGKILL to pid %d: %s", p.PID, why)
		return
	}
	if err := a.signal(p.PID, syscall.SIGKILL); err != nil {
		a.count(t.ID(), ActionSIGKILL, ResultError)
		a.event(t, r, event.KindAction, p.PID, nil, "SIGKILL to worker %d of pool %s failed: %v", p.PID, t.Name, err)
		return
	}
	a.count(t.ID(), ActionSIGKILL, ResultOK)
	a.event(t, r, event.KindAction, p.PID, nil, "SIGKILL worker %d of pool %s: still there %s after SIGTERM (os state %s)", p.PID, t.Name, a.cfg.KillGrace, osp.State)
}
