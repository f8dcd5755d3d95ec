package supervisor

import (
	"fmt"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/human"
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
	r.Reasons, r.decisive = nil, nil
	worse := func(h Health, format string, args ...any) {
		reason := fmt.Sprintf(format, args...)
		switch {
		case h.Rank() > r.Health.Rank():
			r.Health, r.decisive = h, []string{reason}
		case h == r.Health:
			r.decisive = append(r.decisive, reason)
		}
		r.Reasons = append(r.Reasons, reason)
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
		switch {
		case f.Misconfigured:
			// A worker answered: the pool serves what nginx sends it.
			worse(HealthDegraded, "heartbeat misconfigured: %s", f.Error)
		case f.Reason == fastcgi.ReasonBadResponse:
			worse(HealthUnhealthy, "heartbeat failed: %s", f.Error)
		default:
			judgeConnection(r, f, "heartbeat failed", worse)
		}
	}
	if c := r.Connect; c != nil && c.Failure != nil {
		judgeConnection(r, c.Failure, "cannot connect", worse)
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
			worse(HealthDegraded, "worker %d has run %s %s for %s (hung after %s)", p.PID, p.RequestMethod, p.RequestURI, p.Age(), human.Duration(th.HungAfter))
		}
		switch p.OSState {
		case OSStopped:
			worse(HealthDegraded, "worker %d is stopped (SIGSTOP or a tracer) while php-fpm says %s: it serves nothing", p.PID, p.State)
		case OSZombie:
			worse(HealthDegraded, "worker %d is a zombie: it exited and its master has not reaped it", p.PID)
		}
	}
	if q := r.Waiting(); q > 0 {
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
	if !r.Monitored() {
		// Seeing nothing wrong is not seeing it serve.
		worse(HealthUnknown, "not monitored: the pool has no ping.path and no pm.status_path, so fpmguard can only connect to its socket; see the advice")
	}
	r.RequestsPerSecond = requestRate(r, prev)
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
}

// judgeConnection judges a failure to reach the pool through its main
// socket, the one nginx uses, as nginx would meet it: what failed says
// what was tried (a heartbeat, a bare connection).
func judgeConnection(r *PoolReport, f *Failure, what string, worse func(Health, string, ...any)) {
	switch f.Reason {
	case fastcgi.ReasonRefused:
		worse(HealthDown, "nothing listens on %s (%s): %s", r.Address, f.Class, f.Hint)
	case fastcgi.ReasonBacklog:
		worse(HealthUnhealthy, "saturated: %s", f.Error)
	default:
		worse(HealthUnhealthy, "%s (nginx would answer %d): %s", what, f.NginxStatus, f.Error)
	}
}

// requestRate is the rate of requests php-fpm accepted between prev and
// r, less the connections fpmguard made: its users' requests. nil when
// it cannot be told: no two status reads of one php-fpm to compare.
func requestRate(r, prev *PoolReport) *float64 {
	if prev == nil || r.Counters == nil || prev.Counters == nil || r.at.IsZero() || !r.at.After(prev.at) || prev.at.IsZero() {
		return nil
	}
	c, p := r.Counters, prev.Counters
	if !c.StartTime.Equal(p.StartTime) || c.AcceptedConn < p.AcceptedConn || r.ProbeRequests < prev.ProbeRequests {
		return nil // php-fpm restarted
	}
	// A probe counted by fpmguard when it connected and by php-fpm only
	// once a worker took it may fall on either side of a status read.
	n := max(0, float64(c.AcceptedConn-p.AcceptedConn)-float64(r.ProbeRequests-prev.ProbeRequests))
	rate := n / r.at.Sub(prev.at).Seconds()
	return &rate
}
