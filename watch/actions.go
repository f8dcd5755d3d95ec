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
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
)

// ActionConfig switches actions on. Everything is off by default: fpmguard
// reports only.
type ActionConfig struct {
	// KillHungAfter: SIGTERM a worker whose request is older than this,
	// SIGKILL after KillGrace if it is still there. 0 is off.
	KillHungAfter time.Duration
	KillGrace     time.Duration // 5s if 0
	// MaxKillRatio caps the workers of a pool on their way out at once
	// (at least one), killed by the watchdog or by hand: a slow database
	// must not turn into a kill storm.
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
	ResultCapped        Result = "capped"         // more than the share of the pool on its way out at once
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
// worker, never a request other than the one judged, a capped share of the
// pool on its way out at once, a budget per pool.
type Actor struct {
	cfg    ActionConfig
	prober *supervisor.Prober
	events *event.Log
	// signal is the one place a signal leaves fpmguard.
	signal func(pid int, sig syscall.Signal) error
	// output runs a command without a shell; under `run` it goes through
	// the reaper, the only caller of wait.
	output func(ctx context.Context, name string, args ...string) ([]byte, error)
	// evidence, when set, adds to the record of a worker about to be
	// killed what it waits for and its PHP stack (diagnose.go).
	evidence func(r *supervisor.PoolReport, p supervisor.ProcessState, rec *event.WorkerRecord)
	// gone, when set, is told the pool of a worker sent SIGTERM once it
	// has gone: the kill cap has room again for the kills it held back.
	gone func(pool supervisor.PoolID)

	mu         sync.Mutex
	spent      map[supervisor.PoolID][]time.Time // pool -> action times in the window
	pending    map[int]uint64                    // SIGTERMed pid -> its start time, until it is gone: on its way out
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

// candidate is a request to kill, and the report that showed it.
type candidate struct {
	r *supervisor.PoolReport
	p supervisor.ProcessState
}

// killHung SIGTERMs the workers of r whose request is older than
// --kill-hung-after (kill). It returns how many it signalled, and the ones
// the kill cap held back.
func (a *Actor) killHung(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport) (int, []candidate) {
	if a.cfg.KillHungAfter <= 0 {
		return 0, nil
	}
	var cands []candidate
	for _, p := range r.Processes {
		if supervisor.InRequest(p.State) && !p.ProbeRequest() && p.RequestDurationSeconds > a.cfg.KillHungAfter.Seconds() {
			cands = append(cands, candidate{r, p})
		}
	}
	if len(cands) == 0 {
		return 0, nil
	}
	return a.kill(ctx, t, cands)
}

// kill SIGTERMs the workers of cands, oldest request first, that still run
// the request their report showed, on a status page read again now (once
// for all of them), as many as the kill cap allows. It returns how many it
// signalled (or would have, under --dry-run), and the candidates the cap
// held back: they wait for a worker on its way out to go.
func (a *Actor) kill(ctx context.Context, t supervisor.Target, cands []candidate) (int, []candidate) {
	r := cands[0].r
	if r.Master == nil || !r.Master.Alive {
		a.count(t.ID(), ActionKill, ResultRefused)
		a.event(t, r, event.KindActionRefused, 0, nil, "not killing %d hung workers of pool %s: its master is not known to be alive, so nothing would respawn them", len(cands), t.Name)
		return 0, nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].p.RequestDurationSeconds > cands[j].p.RequestDurationSeconds })
	// The status page was read a moment ago, or at the last probe: read it
	// again, so that a request that ended meanwhile does not cost an idle
	// worker, or the next request of the same worker, its life.
	now, err := a.running(ctx, t)
	if err != nil {
		a.count(t.ID(), ActionKill, ResultRefused)
		a.event(t, r, event.KindActionRefused, 0, nil, "not killing hung workers of pool %s: cannot re-read its status page: %v", t.Name, err)
		return 0, nil
	}
	killed, dying, limit := 0, 0, 0
	var capped []candidate
	for _, c := range cands {
		if !now.same(c.r, c.p) {
			continue // its request ended meanwhile
		}
		if age := now.procs[c.p.PID].RequestDuration; !c.p.Hung {
			// Armed by an earlier probe, killed at its deadline: as it is now.
			c.p = c.r.HungNow(c.p, age)
		}
		var res Result
		switch res, dying, limit = a.claim(now, c.p); res {
		case ResultCapped:
			capped = append(capped, c)
			continue
		case ResultRefused:
			continue // on its way out already
		}
		switch res, _ := a.killOne(ctx, t, c.r, c.p, fmt.Sprintf("older than --kill-hung-after %s", a.cfg.KillHungAfter), now.at); res {
		case ResultBudget:
			return killed, nil
		case ResultOK, ResultDryRun:
			killed++
		}
	}
	if len(capped) > 0 {
		a.count(t.ID(), ActionKill, ResultCapped)
		a.event(t, r, event.KindActionRefused, 0, nil, "%d more hung workers of pool %s wait: %d of its %d workers are on their way out, and at most %d are at once (--max-kill-ratio %.2f); they are killed as those go",
			len(capped), t.Name, dying, len(now.procs), limit, a.cfg.MaxKillRatio)
	}
	return killed, capped
}

// killLimit is the most workers of a pool of n on their way out at once:
// a share of the pool (--max-kill-ratio), and at least one.
func (a *Actor) killLimit(n int) int { return max(1, int(a.cfg.MaxKillRatio*float64(n))) }

// claim is the kill cap, the one rule of the watchdog's kills and of those
// asked by hand: at most killLimit of the pool's workers on their way out
// at once, counted on the status page now read again. A worker is on its
// way out from its SIGTERM until it is gone, which a worker that ignores
// SIGTERM for now (stopped, in disk sleep) is only after its SIGKILL. When
// the cap has room, claim marks p on its way out, before the signal, so
// that two kills at once (a probe's, a deadline's, a person's) cannot pass
// it together, and returns ResultOK. Else ResultCapped, or ResultRefused
// when p is on its way out already; with the workers on their way out and
// the limit.
func (a *Actor) claim(now running, p supervisor.ProcessState) (res Result, dying, limit int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for pid := range now.procs {
		if _, ok := a.pending[pid]; ok {
			dying++
		}
	}
	limit = a.killLimit(len(now.procs))
	switch _, already := a.pending[p.PID]; {
	case already:
		return ResultRefused, dying, limit
	case dying >= limit:
		return ResultCapped, dying, limit
	}
	a.pending[p.PID] = p.StartTicks()
	return ResultOK, dying, limit
}

// unclaim takes back the claim of a kill that did not happen.
func (a *Actor) unclaim(pid int) {
	a.mu.Lock()
	delete(a.pending, pid)
	a.mu.Unlock()
}

// staleAfter is how long fpmguard may have been starved of CPU between
// the status read that showed a request still running and the signal
// meant for it: longer, and the request may have ended meanwhile.
const staleAfter = 20 * time.Millisecond

// killOne SIGTERMs worker p of t, claimed (claim), whose request a status
// page read at readAt showed in flight, once it passes the last checks: it
// is the pool's worker (parent, title, start time), fpmguard was not
// starved since that read, and the budget allows. why says why it dies,
// for the event. It counts and records the outcome, and returns it with
// its event's words. A kill that does not happen gives its claim back.
func (a *Actor) killOne(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, p supervisor.ProcessState, why string, readAt time.Time) (res Result, msg string) {
	defer func() {
		if res != ResultOK {
			a.unclaim(p.PID)
		}
	}()
	rec := &event.WorkerRecord{State: p.State, URI: p.RequestURI, Script: p.Script, Method: p.RequestMethod, AgeSeconds: p.RequestDurationSeconds,
		CPUSeconds: p.CPUSeconds, RSSBytes: p.RSSBytes, OSState: p.OSState, HungKind: p.HungKind, Slowlog: slowlogEntry(t, p.PID, a.prober.Trust)}
	if reason := a.notOurs(ctx, t, r.Master.PID, p.PID, p.StartTicks()); reason != "" {
		a.count(t.ID(), ActionKill, ResultRefused)
		return ResultRefused, a.event(t, r, event.KindActionRefused, p.PID, nil, "not killing pid %d named by the status page of pool %s: %s", p.PID, t.Name, reason)
	}
	if starved := a.prober.Lag.Starved(readAt, time.Now()); starved > staleAfter {
		a.count(t.ID(), ActionKill, ResultRefused)
		return ResultRefused, a.event(t, r, event.KindActionRefused, p.PID, nil, "not killing worker %d of pool %s now: fpmguard was starved of CPU for %s after it read the status page, so the request may have ended; it looks again at its next probe",
			p.PID, t.Name, starved.Round(time.Millisecond))
	}
	if !a.takeBudget(t.ID()) {
		a.count(t.ID(), ActionKill, ResultBudget)
		return ResultBudget, a.event(t, r, event.KindBudget, p.PID, nil, "action budget of pool %s spent (%d per %s): reporting only, not killing worker %d", t.Name, a.cfg.Budget, a.cfg.BudgetWindow, p.PID)
	}
	if a.evidence != nil {
		a.evidence(r, p, rec)
	}
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
	msg = a.event(t, r, event.KindAction, p.PID, rec, "SIGTERM worker %d of pool %s (%s): %s %s for %s, %s; the master respawns it",
		p.PID, t.Name, kind, p.RequestMethod, p.RequestURI, p.Age(), why)
	a.mu.Lock()
	a.lastKill[t.ID()] = time.Now()
	a.mu.Unlock()
	a.escalating.Go(func() { a.escalate(ctx, t, r, p) })
	return ResultOK, msg
}

// running is a status page read again right before a signal: what each
// worker runs, and when the page answered.
type running struct {
	procs map[int]fastcgi.Process
	at    time.Time
}

// running re-reads the status page of t, through its status listener when
// it has one.
func (a *Actor) running(ctx context.Context, t supervisor.Target) (running, error) {
	if t.StatusPath == "" {
		return running{}, fmt.Errorf("the pool has no pm.status_path")
	}
	st, err := a.prober.Client.Status(ctx, t.StatusVia(), t.StatusPath)
	if err != nil {
		return running{}, err
	}
	now := running{procs: make(map[int]fastcgi.Process, len(st.Processes)), at: time.Now()}
	for _, p := range st.Processes {
		now.procs[p.PID] = p
	}
	return now, nil
}

// same reports whether the worker of p still runs the request r showed it
// running: the same pid, in a request, the same request by php-fpm's count
// of the worker's requests (it counts one as each begins), the same URI,
// and a start that agrees to the second.
func (now running) same(r *supervisor.PoolReport, p supervisor.ProcessState) bool {
	q, ok := now.procs[p.PID]
	start, known := r.RequestStart(p)
	if !ok || !known || !supervisor.InRequest(q.State) || q.Requests != p.Requests || supervisor.StripQuery(q.RequestURI) != supervisor.StripQuery(p.RequestURI) {
		return false
	}
	return now.at.Add(-q.RequestDuration).Sub(start).Abs() < time.Second
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
// The worker is on its way out until it is gone; then the pool is looked
// at again, as the kill cap has room.
func (a *Actor) escalate(ctx context.Context, t supervisor.Target, r *supervisor.PoolReport, p supervisor.ProcessState) {
	defer func() {
		a.mu.Lock()
		delete(a.pending, p.PID)
		a.mu.Unlock()
		if a.gone != nil {
			a.gone(t.ID())
		}
	}()
	if a.waitGone(ctx, p, a.cfg.KillGrace) {
		return // it ended, as SIGTERM asked
	}
	osp, err := a.prober.Procs.ReadProcess(ctx, p.PID)
	if err != nil || osp.StartTicks != p.StartTicks() || osp.State == supervisor.OSZombie {
		return // it ended at the last moment
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
	// Its master reaps it at once, unless it waits in disk sleep: on its
	// way out until then, for a grace at most.
	a.waitGone(ctx, p, a.cfg.KillGrace)
}

// waitGone waits up to d for worker p to be gone (no such process, or its
// pid another process's), and reports whether it went. A zombie is still
// on its way out: its master has not reaped it, and its status page may
// still name it.
func (a *Actor) waitGone(ctx context.Context, p supervisor.ProcessState, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		osp, _ := a.prober.Procs.ReadProcess(ctx, p.PID)
		if osp.State == supervisor.OSGone || (osp.StartTicks != 0 && osp.StartTicks != p.StartTicks()) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(pause, left)):
		}
	}
}
