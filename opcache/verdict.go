package opcache

import (
	"fmt"
	"time"
)

// Health is the opcache's verdict: ok, degraded or unhealthy. The words are
// the same as a pool's.
type Health string

// The verdicts.
const (
	OK        Health = "ok"
	Degraded  Health = "degraded"
	Unhealthy Health = "unhealthy"
)

// Verdict is a judged opcache status.
type Verdict struct {
	Health  Health
	Reasons []string
}

// PendingTooLong is how long a pending restart may last before it counts as
// unhealthy: php-fpm serves without the cache meanwhile, and ends it by
// killing workers after opcache.force_restart_timeout.
const PendingTooLong = 10 * time.Second

// Judge gives the opcache its verdict, with advice in each reason. prev is
// the previous status of the same master or nil; pendingFor is how long a
// restart has been seen pending, 0 when unknown.
func Judge(s *Status, prev *Status, pendingFor time.Duration) Verdict {
	v := Verdict{Health: OK, Reasons: []string{}}
	worse := func(h Health, format string, args ...any) {
		if h == Unhealthy || v.Health == OK {
			v.Health = h
		}
		v.Reasons = append(v.Reasons, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Restricted:
		worse(Degraded, "cannot read the opcache: %s", s.Error)
		return v
	case !s.Loaded:
		worse(Degraded, "the opcache extension is not loaded: every request compiles its PHP; add zend_extension=opcache")
		return v
	case s.Error != "":
		worse(Degraded, "cannot read the opcache: %s", s.Error)
		return v
	case s.FileCacheOnly:
		return v // no shared memory to judge
	case !s.Enabled:
		worse(Degraded, "the opcache is disabled: every request compiles its PHP; set opcache.enable=1")
		return v
	}

	if s.RestartPending {
		if pendingFor >= PendingTooLong {
			worse(Unhealthy, "restart pending for %s (force_restart_timeout %ds): php-fpm runs without the cache until an old worker lets go, then kills workers", pendingFor.Round(time.Second), s.Config.ForceRestartTimeout)
		} else {
			worse(Degraded, "restart pending: php-fpm runs without the cache until every worker has left it")
		}
	}
	if s.RestartInProgress {
		worse(Degraded, "restart in progress")
	}
	if s.CacheFull || s.KeysFull() {
		what, advice := "memory", fmt.Sprintf("raise opcache.memory_consumption to at least %d", suggestMemoryMB(s))
		if s.KeysFull() {
			what = fmt.Sprintf("keys %d/%d", s.CachedKeys, s.MaxCachedKeys)
			advice = fmt.Sprintf("raise opcache.max_accelerated_files to at least %d", suggestKeys(s))
		}
		wasted, limit := 100*s.WastedRatio(), 100*s.Config.MaxWastedPercentage
		if wasted < limit {
			worse(Degraded, "cache full (%s) and no restart will come: wasted %.0f%% < max_wasted_percentage %.0f%%; new scripts compile on every request — %s", what, wasted, limit, advice)
		} else {
			worse(Degraded, "cache full (%s): a restart is due, since wasted %.0f%% ≥ max_wasted_percentage %.0f%% — %s", what, wasted, limit, advice)
		}
	}
	if n := rising(s.OOMRestarts, prev, func(p *Status) int64 { return p.OOMRestarts }); n > 0 {
		worse(Degraded, "%d OOM restarts (out of shared memory): each empties the cache — raise opcache.memory_consumption to at least %d", n, suggestMemoryMB(s))
	}
	if n := rising(s.HashRestarts, prev, func(p *Status) int64 { return p.HashRestarts }); n > 0 {
		worse(Degraded, "%d hash restarts (key table full): each empties the cache — raise opcache.max_accelerated_files to at least %d", n, suggestKeys(s))
	}
	if s.InternedFull() {
		worse(Degraded, "interned strings buffer full (%d MB): strings go to each worker's own memory — raise opcache.interned_strings_buffer to %d", s.InternedSize>>20, 2*max(s.Config.InternedStringsBuffer, s.InternedSize>>20))
	}
	if s.JITEnabled && s.JITBufferSize > 0 && s.JITBufferFree == 0 {
		worse(Degraded, "JIT buffer full (%d MB): new code is no longer compiled to machine code — raise opcache.jit_buffer_size", s.JITBufferSize>>20)
	}
	return v
}

// rising returns how much a restart counter grew since prev, or its whole
// value when there is no prev: one restart means more will come under the
// same load.
func rising(cur int64, prev *Status, field func(*Status) int64) int64 {
	if prev == nil {
		return cur
	}
	return cur - field(prev)
}

// suggestMemoryMB doubles the shared memory, in megabytes.
func suggestMemoryMB(s *Status) int64 {
	total := s.Config.MemoryConsumption
	if total == 0 {
		total = s.MemoryUsed + s.MemoryFree + s.MemoryWasted
	}
	return max(2*(total>>20), 64)
}

// suggestKeys is twice the scripts php-fpm tried to cache, at least twice
// the current table. PHP rounds max_accelerated_files up to a prime itself.
func suggestKeys(s *Status) int64 {
	return max(2*s.MaxCachedKeys, 2*s.CachedScripts, 2*s.Config.MaxAcceleratedFiles)
}
