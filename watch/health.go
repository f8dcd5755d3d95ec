package watch

import (
	"fmt"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Live answers the liveness probe: every master alive, and no pool whose
// heartbeat failed UnhealthyAfter times in a row. A heartbeat that proved
// nothing, because fpmguard itself was starved, counts neither way. The
// reasons say which pool and why.
func (w *Watcher) Live() (bool, []string) {
	var reasons []string
	interval := w.pace.Interval()
	window := time.Duration(w.cfg.UnhealthyAfter) * interval
	for _, pw := range w.watched() {
		v := pw.view.Load()
		if v == nil {
			if time.Since(pw.since) > window+w.stuckAfter() {
				reasons = append(reasons, fmt.Sprintf("pool %s: no probe finished yet", pw.name()))
			}
			continue
		}
		r, name := v.Report, pw.name()
		if r.Master != nil && r.Master.Gone() {
			reasons = append(reasons, fmt.Sprintf("pool %s: master is gone", name))
			continue
		}
		if r.Heartbeat.Skipped {
			continue
		}
		switch {
		case v.Failures >= w.cfg.UnhealthyAfter:
			reasons = append(reasons, fmt.Sprintf("pool %s: heartbeat failed %d times in a row: %s", name, v.Failures, r.Heartbeat.Error))
		case w.stuck(v.LastProbe, interval):
			reasons = append(reasons, fmt.Sprintf("pool %s: no probe finished for %s", name, human.FormatDuration(time.Since(v.LastProbe))))
		}
	}
	return len(reasons) == 0, reasons
}

// stuckAfter is how long a probe may take at the most: its status read and
// heartbeat each end by the client's timeout.
func (w *Watcher) stuckAfter() time.Duration { return 2*w.prober.Timeout() + w.cfg.Interval }

// stuck reports a pool whose probes stopped finishing since last, not
// counting the time fpmguard itself could not run.
func (w *Watcher) stuck(last time.Time, interval time.Duration) bool {
	now := time.Now()
	idle := now.Sub(last) - w.prober.Lag.Starved(last, now)
	return idle > time.Duration(w.cfg.UnhealthyAfter)*interval+w.stuckAfter()
}

// Ready answers the readiness probe: every pool can take a request now.
func (w *Watcher) Ready() (bool, []string) {
	var reasons []string
	for _, pw := range w.watched() {
		name := pw.name()
		if start := pw.probeStart.Load(); start != 0 {
			began := time.Unix(0, start)
			// A heartbeat outstanding while fpmguard could not run proves
			// nothing.
			if ok, _ := w.prober.Lag.Judge("heartbeat", began, time.Now()); !ok && time.Since(began) > w.cfg.Interval {
				reasons = append(reasons, fmt.Sprintf("pool %s: a heartbeat has been outstanding for %s", name, human.FormatDuration(time.Since(began))))
				continue
			}
		}
		v := pw.view.Load()
		if v == nil {
			reasons = append(reasons, fmt.Sprintf("pool %s: not probed yet", name))
			continue
		}
		r := v.Report
		switch {
		case r.Heartbeat.Failed():
			reasons = append(reasons, fmt.Sprintf("pool %s: last heartbeat failed: %s", name, r.Heartbeat.Error))
		case r.Saturated(w.cfg.ReadyMaxQueue):
			reasons = append(reasons, fmt.Sprintf("pool %s: saturated: no idle worker and %d requests waiting", name, r.Queue()))
		case r.Health == supervisor.HealthUnhealthy || r.Health == supervisor.HealthDown:
			// Only what makes the verdict: /readyz is open to every
			// client, and a hung worker's reason quotes its URI.
			reasons = append(reasons, fmt.Sprintf("pool %s: %s: %s", name, r.Health, strings.Join(r.DecisiveReasons(), "; ")))
		}
	}
	return len(reasons) == 0, reasons
}
