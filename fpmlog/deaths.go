package fpmlog

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/termsafe"
)

// Cause is why a worker exited. The set is closed: it is a metric label.
type Cause string

// The causes, failures first. A failure may have cost a request: the
// client got a reset (nginx: 502). The last two are how php-fpm retires
// workers, and never failures.
const (
	// CauseOOMKill: SIGKILLed while the oom_kill counter of a memory
	// cgroup fpmguard watches moved: the kernel's OOM killer.
	CauseOOMKill Cause = "oom_kill"
	// CauseFpmguardKill: fpmguard signalled it (a hung worker killed).
	CauseFpmguardKill Cause = "fpmguard_kill"
	// CauseTerminateTimeout: php-fpm's own SIGTERM at
	// request_terminate_timeout.
	CauseTerminateTimeout Cause = "terminate_timeout"
	// CauseCrash: a signal of a fault: SIGSEGV, SIGBUS, SIGILL, SIGFPE,
	// SIGABRT, SIGSYS, SIGTRAP.
	CauseCrash Cause = "crash"
	// CauseKilled: a SIGKILL from someone else.
	CauseKilled Cause = "killed"
	// CauseSignal: any other signal, such as a SIGTERM from someone else.
	CauseSignal Cause = "signal"
	// CauseExitCode: a non-zero exit code, such as a worker that failed to
	// start.
	CauseExitCode Cause = "exit_code"
	// CauseMaxRequests: exit code 0, a worker ending by itself once its
	// request is done: pm.max_requests recycling, or a SIGQUIT asking it
	// to finish and quit. Normal.
	CauseMaxRequests Cause = "max_requests"
	// CauseIdle: the process manager ended an idle worker
	// (pm.process_idle_timeout, a dynamic pool's spare count). Normal;
	// php-fpm logs it at log_level debug only.
	CauseIdle Cause = "idle"
)

// Causes lists every cause, for metrics that show each.
var Causes = []Cause{CauseOOMKill, CauseFpmguardKill, CauseTerminateTimeout, CauseCrash, CauseKilled, CauseSignal, CauseExitCode, CauseMaxRequests, CauseIdle}

// Failure reports whether the cause may have cost a request.
func (c Cause) Failure() bool { return c != CauseMaxRequests && c != CauseIdle }

// Death is a worker that exited, and why.
type Death struct {
	Time  time.Time `json:"time"`
	Pool  string    `json:"pool"`
	PID   int       `json:"pid"`
	Cause Cause     `json:"cause"`
	// Signal is the signal's name (SIGKILL), "" for an exit.
	Signal string `json:"signal,omitempty"`
	// ExitCode is the exit code, -1 for a signal.
	ExitCode   int           `json:"exit_code"`
	CoreDumped bool          `json:"core_dumped,omitempty"`
	Uptime     time.Duration `json:"uptime_ns"`
	// Script and Request are what php-fpm said the worker ran when it
	// ended it at request_terminate_timeout (client text, untrusted).
	Script  string `json:"script,omitempty"`
	Request string `json:"request,omitempty"`
	// Cgroup is the memory cgroup whose OOM killer ended it, LimitBytes
	// its limit (0: none read).
	Cgroup     string `json:"cgroup,omitempty"`
	LimitBytes uint64 `json:"limit_bytes,omitempty"`
}

// Failure reports whether the death may have cost a request.
func (d Death) Failure() bool { return d.Cause.Failure() }

// String says what happened, for people, escaped for a terminal:
// `worker 4711 of pool www was OOM-killed (cgroup limit 512.0MiB)`.
func (d Death) String() string {
	s := fmt.Sprintf("worker %d of pool %s ", d.PID, termsafe.String(d.Pool))
	switch d.Cause {
	case CauseOOMKill:
		s += "was OOM-killed"
		if d.LimitBytes > 0 {
			s += fmt.Sprintf(" (cgroup limit %s)", human.FormatBytes(d.LimitBytes))
		}
	case CauseFpmguardKill:
		s += "was killed by fpmguard (" + d.Signal + ")"
	case CauseTerminateTimeout:
		s += "was ended by php-fpm at request_terminate_timeout (" + d.Signal + ")"
		if d.Request != "" {
			s += " while running " + termsafe.String(d.Request)
		}
	case CauseCrash:
		s += "crashed (" + d.Signal
		if d.CoreDumped {
			s += ", core dumped"
		}
		s += ")"
	case CauseKilled, CauseSignal:
		s += "was killed by " + d.Signal + " from another process"
	case CauseExitCode:
		s += fmt.Sprintf("exited with code %d", d.ExitCode)
	case CauseMaxRequests:
		s += "exited after its last request (pm.max_requests)"
	case CauseIdle:
		s += "was ended idle by the process manager"
	default:
		s += "exited"
	}
	return s
}

// crashSignals are the signals of a fault in the worker itself.
var crashSignals = map[int]bool{
	int(syscall.SIGSEGV): true, int(syscall.SIGBUS): true, int(syscall.SIGILL): true, int(syscall.SIGFPE): true,
	int(syscall.SIGABRT): true, int(syscall.SIGSYS): true, int(syscall.SIGTRAP): true,
}

// Classifier turns php-fpm's lines into deaths with their causes. It
// remembers what came before an exit: php-fpm's own timeout, fpmguard's
// signal, the memory cgroups' OOM kills. It is safe for concurrent use.
type Classifier struct {
	mu        sync.Mutex
	signalled map[int]time.Time // pids fpmguard signalled
	timedOut  map[int]Line      // pids php-fpm said it ends at request_terminate_timeout
	oom       *oomWatch
	now       func() time.Time
}

// remember is how long a note about a pid (signalled, timed out) waits
// for its exit: php-fpm logs the exit as soon as it reaps the worker; a
// pid reused later must not inherit the note.
const remember = 2 * time.Minute

// NewClassifier returns a classifier watching no cgroup yet.
func NewClassifier() *Classifier {
	return &Classifier{signalled: map[int]time.Time{}, timedOut: map[int]Line{}, oom: newOOMWatch(), now: time.Now}
}

// Signalled tells the classifier fpmguard sent pid a signal: its next exit
// is fpmguard's kill.
func (c *Classifier) Signalled(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signalled[pid] = c.now()
	c.prune()
}

// WatchCgroupOf watches the memory cgroup pid is in (a master, a worker)
// for OOM kills: from now on, a SIGKILL while its oom_kill counter moved is
// an OOM kill. Watching the same cgroup twice is one watch.
func (c *Classifier) WatchCgroupOf(pid int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.oom.watchPID(pid)
}

// Sample reads the watched cgroups' OOM kill counts, so that a kill is
// dated when it happened, not when a worker's exit line asks: call it
// every second or so.
func (c *Classifier) Sample() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.oom.sample()
}

// Line reads one parsed line and returns the death it records, if it
// records one.
func (c *Classifier) Line(l Line) (Death, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch l.Kind {
	case KindTimedOut:
		l.Time = c.now()
		c.timedOut[l.PID] = l
		c.prune()
		return Death{}, false
	case KindPMKilled:
		return Death{Time: c.at(l), Pool: l.Pool, PID: l.PID, Cause: CauseIdle, ExitCode: -1, Uptime: l.Uptime}, true
	case KindExited:
	default:
		return Death{}, false
	}
	d := Death{Time: c.at(l), Pool: l.Pool, PID: l.PID, Signal: l.SignalName, ExitCode: l.ExitCode, CoreDumped: l.CoreDumped, Uptime: l.Uptime}
	if d.Signal == "" && l.Signal > 0 {
		d.Signal = fmt.Sprintf("signal %d", l.Signal)
	}
	_, ours := c.signalled[l.PID]
	timedOut, byFPM := c.timedOut[l.PID]
	delete(c.signalled, l.PID)
	delete(c.timedOut, l.PID)
	switch {
	case l.Signal == 0 && l.ExitCode == 0:
		d.Cause = CauseMaxRequests
	case l.Signal == 0:
		d.Cause = CauseExitCode
	case ours:
		d.Cause = CauseFpmguardKill
	case byFPM && l.Signal == int(syscall.SIGTERM) || byFPM && l.Signal == int(syscall.SIGKILL):
		d.Cause, d.Script, d.Request = CauseTerminateTimeout, timedOut.Script, timedOut.Request
	case crashSignals[l.Signal]:
		d.Cause = CauseCrash
	case l.Signal == int(syscall.SIGKILL):
		d.Cause = CauseKilled
		if g, ok := c.oom.moved(); ok {
			d.Cause, d.Cgroup, d.LimitBytes = CauseOOMKill, g.dir, g.limit()
		}
	default:
		d.Cause = CauseSignal
	}
	return d, true
}

// at is when a line happened: its own time, or now for one without.
func (c *Classifier) at(l Line) time.Time {
	if l.Time.IsZero() {
		return c.now()
	}
	return l.Time
}

// prune forgets notes past remember.
func (c *Classifier) prune() {
	cutoff := c.now().Add(-remember)
	for pid, t := range c.signalled {
		if t.Before(cutoff) {
			delete(c.signalled, pid)
		}
	}
	for pid, l := range c.timedOut {
		if l.Time.Before(cutoff) {
			delete(c.timedOut, pid)
		}
	}
}
