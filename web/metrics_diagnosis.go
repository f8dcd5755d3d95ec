package web

import (
	"fmt"
	"sort"

	"github.com/fpmguard/fpmguard/fpmlog"
	"github.com/fpmguard/fpmguard/waits"
	"github.com/fpmguard/fpmguard/watch"
)

// diagnosisCollector emits what hung workers wait for and why workers
// died (issue 21). Every label value comes from a closed vocabulary:
// never a peer address, a path or a pid.
type diagnosisCollector struct{ hungByWait, exits *metricDesc }

// noService labels a wait without a peer.
const noService = "none"

func newDiagnosisCollector() *diagnosisCollector {
	return &diagnosisCollector{
		hungByWait: desc("phpfpm", "hung_processes_by_wait", fmt.Sprintf(
			"Hung workers (as phpfpm_hung_processes) by what they wait for: wait is one of %d kinds (network-read, network-write, connect, dns, lock, sleep, disk, futex, child, stopped, running, unknown: not read or not proved), service the peer's by its port or socket name (mysql, postgresql, redis, memcached, dns, http, https, fastcgi, other) or none: at most %d series a pool, one for each pair present now.",
			len(waits.Kinds), len(waits.Kinds)*(len(waits.Services)+1)), "pool", "master", "wait", "service"),
		exits: desc("phpfpm", "worker_exits_total", fmt.Sprintf(
			"Workers that exited, by cause, as php-fpm's error log says and fpmguard classifies (oom_kill, fpmguard_kill, terminate_timeout, crash, killed, signal, exit_code; max_requests and idle are how php-fpm retires workers, never failures): %d series a pool whose master's error log fpmguard follows, none for the others.",
			len(fpmlog.Causes)), "pool", "master", "cause"),
	}
}

func (c *diagnosisCollector) descs() []*metricDesc { return []*metricDesc{c.hungByWait, c.exits} }

type waitLabels struct {
	wait    waits.Kind
	service string
}

func (c *diagnosisCollector) collect(s *watch.Snapshot, m emitter) {
	for _, v := range byName(s) {
		p := v.Report
		if !v.Probed() || !p.Status.OK {
			continue
		}
		counts := map[waitLabels]int{}
		for i := range p.Processes {
			w := &p.Processes[i]
			if !w.Hung {
				continue
			}
			l := waitLabels{waits.KindUnknown, noService}
			if w.Wait != nil {
				l.wait = w.Wait.Kind
				if svc := w.Wait.Service(); svc != waits.ServiceNone {
					l.service = string(svc)
				}
			}
			counts[l]++
		}
		keys := make([]waitLabels, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].service != keys[j].service {
				return keys[i].service < keys[j].service
			}
			return keys[i].wait < keys[j].wait
		})
		for _, k := range keys {
			m.gauge(c.hungByWait, float64(counts[k]), p.Name, p.MasterName, string(k.wait), k.service)
		}
	}
	keys := make([]watch.ExitKey, 0, len(s.Exits))
	for k := range s.Exits {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c := keys[i].Pool.Compare(keys[j].Pool); c != 0 {
			return c < 0
		}
		return keys[i].Cause < keys[j].Cause
	})
	for _, k := range keys {
		m.counter(c.exits, float64(s.Exits[k]), k.Pool.Pool, k.Pool.Master, string(k.Cause))
	}
}
