package web

import (
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// opcacheCollector emits the opcache of each master.
type opcacheCollector struct {
	up, enabled, used, free, wasted, full, pending *metricDesc
	scripts, keys, maxKeys, hits, misses, restarts *metricDesc
	internedUsed, internedSize, jitFree            *metricDesc
}

func newOpcacheCollector() *opcacheCollector {
	d := func(name, help string, labels ...string) *metricDesc {
		return desc("phpfpm", "opcache_"+name, help, labels...)
	}
	return &opcacheCollector{
		up:           d("up", "1 when the opcache status was read.", "master"),
		enabled:      d("enabled", "1 when the opcache is enabled.", "master"),
		used:         d("memory_used_bytes", "Opcache shared memory in use.", "master"),
		free:         d("memory_free_bytes", "Opcache shared memory free.", "master"),
		wasted:       d("memory_wasted_bytes", "Opcache shared memory wasted by invalidated scripts.", "master"),
		full:         d("cache_full", "1 when the opcache is full.", "master"),
		pending:      d("restart_pending", "1 when an opcache restart is pending.", "master"),
		scripts:      d("cached_scripts", "Scripts in the opcache.", "master"),
		keys:         d("cached_keys", "Keys in the opcache hash table.", "master"),
		maxKeys:      d("max_cached_keys", "Size of the opcache hash table.", "master"),
		hits:         d("hits_total", "Opcache hits.", "master"),
		misses:       d("misses_total", "Opcache misses.", "master"),
		restarts:     d("restarts_total", "Opcache restarts by reason: oom, hash, manual.", "master", "reason"),
		internedUsed: d("interned_strings_used_bytes", "Interned strings buffer in use.", "master"),
		internedSize: d("interned_strings_buffer_bytes", "Size of the interned strings buffer.", "master"),
		jitFree:      d("jit_buffer_free_bytes", "JIT buffer free.", "master"),
	}
}

func (c *opcacheCollector) descs() []*metricDesc {
	return []*metricDesc{
		c.up, c.enabled, c.used, c.free, c.wasted, c.full, c.pending,
		c.scripts, c.keys, c.maxKeys, c.hits, c.misses, c.restarts,
		c.internedUsed, c.internedSize, c.jitFree,
	}
}

func (c *opcacheCollector) collect(s *watch.Snapshot, m emitter) {
	for i := range s.Opcache {
		c.collectOne(&s.Opcache[i], m)
	}
}

func (c *opcacheCollector) collectOne(o *supervisor.OpcacheReport, m emitter) {
	if o.Health == supervisor.HealthUnknown && o.Error == "" {
		return // not read: nothing was measured, not even a failure
	}
	name := o.Master
	m.gauge(c.up, b2f(o.Error == ""), name)
	if o.Error != "" {
		return
	}
	m.gauge(c.enabled, b2f(o.Enabled), name)
	m.gauge(c.used, float64(o.MemoryUsedBytes), name)
	m.gauge(c.free, float64(o.MemoryFreeBytes), name)
	m.gauge(c.wasted, float64(o.MemoryWastedBytes), name)
	m.gauge(c.full, b2f(o.CacheFull), name)
	m.gauge(c.pending, b2f(o.RestartPending), name)
	m.gauge(c.scripts, float64(o.CachedScripts), name)
	m.gauge(c.keys, float64(o.CachedKeys), name)
	m.gauge(c.maxKeys, float64(o.MaxCachedKeys), name)
	m.counter(c.hits, float64(o.Hits), name)
	m.counter(c.misses, float64(o.Misses), name)
	m.counter(c.restarts, float64(o.OOMRestarts), name, "oom")
	m.counter(c.restarts, float64(o.HashRestarts), name, "hash")
	m.counter(c.restarts, float64(o.ManualRestarts), name, "manual")
	m.gauge(c.internedUsed, float64(o.InternedStringsUsedBytes), name)
	m.gauge(c.internedSize, float64(o.InternedStringsBufferBytes), name)
	if o.JITBufferSizeBytes > 0 {
		// No buffer (PHP 7.4, or opcache.jit_buffer_size 0) has no free
		// space either: 0 would read as a full one.
		m.gauge(c.jitFree, float64(o.JITBufferFreeBytes), name)
	}
}
