package web

import (
	"strconv"

	"github.com/fpmguard/fpmguard/watch"
)

// nginxCollector emits the upstream failures counted in nginx's error logs.
type nginxCollector struct{ errors *metricDesc }

func newNginxCollector() *nginxCollector {
	return &nginxCollector{errors: desc("phpfpm", "nginx_upstream_errors_total", "Upstream failures nginx logged for the pool, by the status it answered and the cause.", "pool", "master", "status", "cause")}
}

func (c *nginxCollector) descs() []*metricDesc { return []*metricDesc{c.errors} }

func (c *nginxCollector) collect(s *watch.Snapshot, m emitter) {
	for k, v := range s.Nginx {
		m.counter(c.errors, float64(v), k.Pool.Pool, k.Pool.Master, strconv.Itoa(k.Status), string(k.Cause))
	}
}
