package supervisor

import (
	"fmt"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// Thresholds tune the verdict.
type Thresholds struct {
	// HungAfter is the request age past which a worker counts as hung.
	HungAfter time.Duration
	// MasterRestarted says that a master that dies is restarted by
	// fpmguard itself (fpmguard run): the verdict then says so, instead of
	// asking the user to do it.
	MasterRestarted bool
}

// DefaultHungAfter is the default of HungAfter.
const DefaultHungAfter = 30 * time.Second

func (th *Thresholds) fill() {
	if th.HungAfter <= 0 {
		th.HungAfter = DefaultHungAfter
	}
}

// Judge gives a pool its verdict from what was observed, with a reason for
// every finding. prev is the pool's previous report, or nil: counters that
// matter only when they rise are judged against it. Hung workers are those
// Mark marked. It is the one verdict every command uses.
func Judge(r *PoolReport, prev *PoolReport, th Thresholds) {
	th.fill()
	r.Health = HealthOK
	r.Reasons = nil
	worse := func(h Health, format string, args ...any) {
		if h.Rank() > r.Health.Rank() {
			r.Health = h
		}
		r.Reasons = append(r.Reasons, fmt.Sprintf(format, args...))
	}

	r.Inconclusive = nil
	if m := r.Master; m != nil && m.Unknown != "" {
		r.Inconclusive = append(r.Inconclusive, m.Unknown)
	}
	if r.Heartbeat.Inconclusive != "" {
		r.Inconclusive = append(r.Inconclusive, r.Heartbeat.Inconclusive)
	}
	if r.Status.Inconclusive != "" {
		r.Inconclusive = append(r.Inconclusive, r.Status.Inconclusive)
	}
	if m := r.Master; m != nil && m.Gone() {
		if m.PID == 0 {
			worse(HealthDown, "master not running: %s", m.Error)
		} else {
			fix := "restart php-fpm"
			if th.MasterRestarted {
				fix = "fpmguard run is restarting php-fpm"
			}
			worse(HealthDown, "master process %d is gone: nothing will respawn workers; %s", m.PID, fix)
		}
	}
	if f := r.Heartbeat.Failure; f != nil {
		switch f.Reason {
		case fastcgi.ReasonRefused:
			worse(HealthDown, "nothing listens on %s (%s): %s", r.Address, f.Class, f.Hint)
		case fastcgi.ReasonBacklog:
			worse(HealthUnhealthy, "saturated: %s", f.Error)
		case fastcgi.ReasonBadResponse:
			if r.Heartbeat.Misconfigured() {
				worse(HealthDegraded, "heartbeat misconfigured: %s", f.Error)
				break
			}
			worse(HealthUnhealthy, "heartbeat failed: %s", f.Error)
		default:
			worse(HealthUnhealthy, "heartbeat failed (nginx would answer %d): %s", f.NginxStatus, f.Error)
		}
	}
	if r.Status.Failed() && r.Health.Rank() < HealthDown.Rank() {
		worse(HealthDegraded, "cannot see the workers: %s", r.Status.Error)
	}

	if hung, total := r.HungCount(), len(r.Processes); total > 0 && hung == total {
		// php-fpm's own clock says so: no timing of fpmguard's is involved,
		// so this holds even while fpmguard is starved.
		worse(HealthUnhealthy, "all %d workers are hung: the pool takes no new request until one ends", total)
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		if p.Hung {
			worse(HealthDegraded, "worker %d has run %s %s for %s (hung after %s)", p.PID, p.RequestMethod, p.RequestURI, p.Age(), th.HungAfter)
		}
		switch p.OSState {
		case OSStopped:
			worse(HealthDegraded, "worker %d is stopped (SIGSTOP or a tracer) while php-fpm says %s: it serves nothing", p.PID, p.State)
		case OSZombie:
			worse(HealthDegraded, "worker %d is a zombie: it exited and its master has not reaped it", p.PID)
		}
	}
	if q := r.Queue(); q > 0 {
		worse(HealthDegraded, "listen queue %d: requests are waiting for a worker", q)
	}
	if c := r.Counters; c != nil {
		if prev != nil && prev.Counters != nil && c.MaxChildrenReached > prev.Counters.MaxChildrenReached {
			worse(HealthDegraded, "max children reached went up by %d (now %d): pm.max_children = %d is too low for the load, or workers are held up",
				c.MaxChildrenReached-prev.Counters.MaxChildrenReached, c.MaxChildrenReached, r.Config.MaxChildren)
		}
	}
	if r.Status.OK {
		busy, total := r.Busy()
		if total > 0 && busy == total {
			worse(HealthDegraded, "all %d workers are busy: new requests wait in the listen queue", total)
		}
		if r.Config.MinWorkers > 0 && total < r.Config.MinWorkers {
			worse(HealthDegraded, "%d workers, the config promises at least %d (pm = %s)", total, r.Config.MinWorkers, r.Config.PM)
		}
	}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
}
