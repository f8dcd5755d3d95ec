package supervisor

import (
	"fmt"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/human"
)

// Monitoring-plugins exit codes, as Nagios, Icinga and exec probes read them.
const (
	CheckOK       = 0
	CheckWarning  = 1
	CheckCritical = 2
	CheckUnknown  = 3
)

var checkNames = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// CheckThresholds add numeric limits on top of the verdict. A zero limit is
// off. The verdict alone already makes degraded a WARNING and unhealthy or
// down a CRITICAL.
type CheckThresholds struct {
	WarnLatency, CritLatency time.Duration // heartbeat round trip
	WarnQueue, CritQueue     int64         // php-fpm's listen queue
	WarnBusy, CritBusy       float64       // busy workers / all workers, 0..1
}

// CheckResult is one status line with perfdata, and its exit code.
type CheckResult struct {
	Code int
	Line string
}

// Check turns a report into a monitoring-plugins result.
func Check(rep *Report, th CheckThresholds) CheckResult {
	if len(rep.Pools) == 0 {
		return CheckResult{Code: CheckUnknown, Line: "FPMGUARD UNKNOWN - no pools to check"}
	}
	code := CheckOK
	var texts, perf []string
	raise := func(c int) {
		if checkRank(c) > checkRank(code) {
			code = c
		}
	}
	// A pool is named alone when no other pool has its name, so that a
	// host with one master keeps the perfdata labels it always had; with
	// its master's name when one does (www of two PHP versions).
	labels := rep.Labels()
	for i := range rep.Pools {
		p := &rep.Pools[i]
		raise(healthCode(p.Health))
		name := labels[p.ID()]
		text := name + " " + string(p.Health)
		if len(p.Reasons) > 0 {
			text += " (" + p.Reasons[0]
			if n := len(p.Reasons) - 1; n > 0 {
				text += fmt.Sprintf("; +%d more", n)
			}
			text += ")"
		}
		if len(p.Waits) > 0 {
			// What the hung workers wait on: the cause an operator needs.
			text += " — " + p.Waits[0].Line
			if n := len(p.Waits) - 1; n > 0 {
				text += fmt.Sprintf(" (+%d more causes)", n)
			}
		}
		if len(p.Inconclusive) > 0 {
			// fpmguard could not judge: say so, as monitoring plugins do.
			raise(CheckUnknown)
			text += " [not judged: " + p.Inconclusive[0] + "]"
		}
		label := perfLabel(name)
		if p.Heartbeat.OK && p.Heartbeat.Inconclusive == "" {
			lat := p.Heartbeat.LatencySeconds
			c := level(lat, th.WarnLatency.Seconds(), th.CritLatency.Seconds())
			raise(c)
			if c > CheckOK {
				text += fmt.Sprintf(" heartbeat %s over %s", human.FormatSeconds(lat), human.FormatDuration(thresholdFor(c, th.WarnLatency, th.CritLatency)))
			}
			perf = append(perf, fmt.Sprintf("'%s_latency'=%.6fs;%s;%s;0", label, lat, limit(th.WarnLatency.Seconds()), limit(th.CritLatency.Seconds())))
		}
		if p.Counters != nil || p.SocketQueue != nil {
			queue := p.Queue()
			q := level(float64(queue), float64(th.WarnQueue), float64(th.CritQueue))
			raise(q)
			if q > CheckOK {
				text += fmt.Sprintf(" listen queue %d", queue)
			}
			perf = append(perf, fmt.Sprintf("'%s_queue'=%d;%s;%s;0", label, queue, limit(float64(th.WarnQueue)), limit(float64(th.CritQueue))))
		}
		if p.Status.OK {
			busy, total := p.Busy()
			if total > 0 {
				ratio := float64(busy) / float64(total)
				b := level(ratio, th.WarnBusy, th.CritBusy)
				raise(b)
				if b > CheckOK {
					text += fmt.Sprintf(" %d of %d workers busy", busy, total)
				}
			}
			maxChildren := ""
			if p.Config.MaxChildren > 0 {
				maxChildren = fmt.Sprint(p.Config.MaxChildren)
			}
			perf = append(perf, fmt.Sprintf("'%s_busy'=%d;;;0;%s", label, busy, maxChildren), fmt.Sprintf("'%s_total'=%d;;;0;%s", label, total, maxChildren), fmt.Sprintf("'%s_hung'=%d;;;0", label, p.HungCount()))
		}
		texts = append(texts, text)
	}
	for _, o := range rep.Opcache {
		raise(healthCode(o.Health))
		text := fmt.Sprintf("opcache of %s (master %d) %s", o.Master, o.MasterPID, o.Health)
		if len(o.Reasons) > 0 {
			text += " (" + o.Reasons[0] + ")"
		}
		if o.Inconclusive != "" {
			raise(CheckUnknown)
			text += " [not judged: " + o.Inconclusive + "]"
		}
		texts = append(texts, text)
		if o.Error == "" && o.Health != HealthUnknown {
			// Named by the master's config, not its pid: a graph goes on
			// across restarts of php-fpm.
			label := perfLabel("opcache@" + o.Master)
			perf = append(perf, fmt.Sprintf("'%s_fill'=%.4f;;;0;1", label, o.FillRatio), fmt.Sprintf("'%s_hit_rate'=%.4f;;;0;1", label, o.HitRate))
		}
	}
	line := "FPMGUARD " + checkNames[code] + " - " + strings.Join(texts, ", ")
	if len(perf) > 0 {
		line += " | " + strings.Join(perf, " ")
	}
	return CheckResult{Code: code, Line: line}
}

// healthCode is a verdict's exit code: what fpmguard could not see is
// UNKNOWN, as monitoring plugins say it.
func healthCode(h Health) int {
	switch h {
	case HealthOK:
		return CheckOK
	case HealthDegraded:
		return CheckWarning
	case HealthUnknown:
		return CheckUnknown
	}
	return CheckCritical
}

// checkRank orders exit codes by severity: UNKNOWN (fpmguard could not
// judge) is worse than WARNING and better than CRITICAL.
func checkRank(code int) int {
	switch code {
	case CheckUnknown:
		return 2
	case CheckCritical:
		return 3
	}
	return code
}

func level(v, warn, crit float64) int {
	switch {
	case crit > 0 && v >= crit:
		return CheckCritical
	case warn > 0 && v >= warn:
		return CheckWarning
	}
	return CheckOK
}

func limit(v float64) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprint(v)
}

func thresholdFor(code int, warn, crit time.Duration) time.Duration {
	if code == CheckCritical {
		return crit
	}
	return warn
}

// perfLabel keeps a name usable inside a quoted perfdata label: no quote,
// no equals sign, no space.
func perfLabel(name string) string {
	return strings.NewReplacer("'", "_", "=", "_", " ", "_").Replace(name)
}
