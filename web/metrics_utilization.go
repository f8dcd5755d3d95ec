package web

import "github.com/fpmguard/fpmguard/watch"

// utilizationCollector emits each pool's load against its size, the one
// number an autoscaler needs: the requests in hand or waiting over the
// workers the pool may have. Other exporters leave it to a query that
// cannot tell fpmguard's own status and ping requests from load, nor see
// the kernel's queue on a unix socket.
type utilizationCollector struct{ ratio *metricDesc }

func newUtilizationCollector() *utilizationCollector {
	return &utilizationCollector{ratio: desc("phpfpm", "pool_utilization_ratio",
		"(Busy workers, not counting fpmguard's own probes, + requests waiting in the listen queue, not counting fpmguard's own) / pm.max_children. Above 1, requests wait for a worker.",
		"pool", "master")}
}

func (c *utilizationCollector) descs() []*metricDesc { return []*metricDesc{c.ratio} }

func (c *utilizationCollector) collect(s *watch.Snapshot, m emitter) {
	for _, v := range byName(s) {
		if ratio, ok := utilization(v); ok {
			m.gauge(c.ratio, ratio, v.Report.Name, v.Report.MasterName)
		}
	}
}

// utilization is the pool's ratio, when it was measured: the workers were
// read from the status page (or the ondemand pool had none, and nothing
// was queued), and pm.max_children is known.
func utilization(v *watch.PoolView) (float64, bool) {
	p := v.Report
	if p.Config.MaxChildren <= 0 || !(p.Status.OK || p.Status.Idle) {
		return 0, false
	}
	busy, _ := p.Busy()
	return float64(int64(busy)+p.Queue()) / float64(p.Config.MaxChildren), true
}
