package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/opcache"
)

// OpcacheReport is the opcache of one master: every pool under a master
// shares one segment, so it is reported once per master, not per pool.
type OpcacheReport struct {
	MasterPID int      `json:"master_pid"`
	Master    string   `json:"master"` // the master's config path: a name that survives restarts
	Pools     []string `json:"pools"`
	Via       string   `json:"via,omitempty"` // the address the script ran through
	Script    string   `json:"script,omitempty"`
	Error     string   `json:"error,omitempty"`

	Enabled           bool `json:"enabled"`
	FileCacheOnly     bool `json:"file_cache_only,omitempty"`
	CacheFull         bool `json:"cache_full"`
	RestartPending    bool `json:"restart_pending"`
	RestartInProgress bool `json:"restart_in_progress"`

	MemoryUsedBytes   int64   `json:"memory_used_bytes"`
	MemoryFreeBytes   int64   `json:"memory_free_bytes"`
	MemoryWastedBytes int64   `json:"memory_wasted_bytes"`
	FillRatio         float64 `json:"fill_ratio"`
	WastedRatio       float64 `json:"wasted_ratio"`
	MaxWastedRatio    float64 `json:"max_wasted_ratio"`

	CachedScripts int64 `json:"cached_scripts"`
	CachedKeys    int64 `json:"cached_keys"`
	MaxCachedKeys int64 `json:"max_cached_keys"`

	InternedStringsUsedBytes   int64 `json:"interned_strings_used_bytes"`
	InternedStringsBufferBytes int64 `json:"interned_strings_buffer_bytes"`

	Hits    int64   `json:"hits"`
	Misses  int64   `json:"misses"`
	HitRate float64 `json:"hit_rate"`

	OOMRestarts    int64 `json:"oom_restarts"`
	HashRestarts   int64 `json:"hash_restarts"`
	ManualRestarts int64 `json:"manual_restarts"`

	JITEnabled         bool    `json:"jit_enabled"`
	JITBufferSizeBytes int64   `json:"jit_buffer_size_bytes"`
	JITBufferFreeBytes int64   `json:"jit_buffer_free_bytes"`
	JITBufferFill      float64 `json:"jit_buffer_fill_ratio"`

	// The settings behind the figures, for advice.
	MemoryConsumptionBytes int64 `json:"memory_consumption_bytes,omitempty"`
	// PoolMemoryConsumptionBytes is the opcache.memory_consumption the pool
	// read through set for itself, which php-fpm ignores; 0 when none.
	PoolMemoryConsumptionBytes int64 `json:"pool_memory_consumption_bytes,omitempty"`
	MaxAcceleratedFiles        int64 `json:"max_accelerated_files,omitempty"` // as written; MaxCachedKeys is what php-fpm uses
	ValidateTimestamps         bool  `json:"validate_timestamps"`
	RevalidateFreqSeconds      int64 `json:"revalidate_freq_seconds"`

	StartTime       *time.Time `json:"start_time,omitempty"`
	LastRestartTime *time.Time `json:"last_restart_time,omitempty"`
	// PendingSince is when fpmguard first saw the pending restart.
	PendingSince *time.Time `json:"restart_pending_since,omitempty"`

	Health  Health   `json:"health"`
	Reasons []string `json:"reasons"`
	// Inconclusive says why this read proved nothing: it timed out while
	// fpmguard was starved of CPU. The figures are then the last read's.
	Inconclusive string `json:"inconclusive,omitempty"`

	status *opcache.Status // for the next verdict's comparisons
}

// OpcacheProber reads the opcache of each master once.
type OpcacheProber struct {
	Client fastcgi.Client
	// Script is the status script's path as php-fpm sees it, deployed by
	// the operator (--opcache-script). Empty: fpmguard installs its own
	// copy into Dir.
	Script string
	// Dir is the directory, as php-fpm sees it, where fpmguard installs
	// the status script and writes the script of each reset or invalidate
	// (opcache.DefaultDir when empty). For a master in another container
	// it is inside that container's root.
	Dir string
	// Lag is fpmguard's own lag, as in Prober.
	Lag *lag.Monitor
}

// client is the opcache client for the master of target t, pid: its
// scripts placed in php-fpm's own file system, the master's root when it
// lives in another container, and the pool's chroot below it.
func (o *OpcacheProber) client(t Target, pid int) (opcache.Client, error) {
	root := opcache.Root{Chroot: t.Chroot}
	if pid > 0 && t.Root != "" {
		root.MasterPID = pid
	} else if pid > 0 {
		// A root that cannot be compared (no SYS_PTRACE) counts as this
		// host's here, as the script is then read on fpmguard's side.
		if other, _ := foreignRoot(pid); other != "" {
			root.MasterPID = pid
		}
	}
	dir := o.Dir
	if dir == "" {
		dir = opcache.DefaultDir
	}
	c := opcache.Client{FastCGI: o.Client, Script: o.Script, Actions: opcache.Place{Root: root, Dir: dir}}
	if o.Script != "" {
		// The operator placed it: checked inside php-fpm's root before
		// each use, as php-fpm will read it.
		return c, root.Verify(o.Script)
	}
	// Install verifies an existing copy and rewrites one that differs.
	script, err := c.Actions.Install()
	c.Script = script
	return c, err
}

// masterKey groups pools by master: the master's pid when known, else the
// pool's own address, so unknown masters never merge.
func masterKey(p PoolReport) string {
	if p.Master != nil && p.Master.PID > 0 {
		return fmt.Sprintf("pid:%d", p.Master.PID)
	}
	return "pool:" + p.Address
}

// masterGroup is one master and the pools under it.
type masterGroup struct {
	pid    int
	name   string
	pools  []string
	target Target // the pool the script runs through
}

// groupByMaster groups the probed pools by master and picks for each the
// pool to run the script through: one with pm.status_listen when there is
// one (it still answers when every main worker is busy), else the first.
// Pools that are down have no php-fpm to run it.
func groupByMaster(targets []Target, pools []PoolReport) []masterGroup {
	index := map[string]int{}
	var out []masterGroup
	for i, p := range pools {
		// A down pool has no php-fpm to run the script, and an idle
		// ondemand pool would start a worker for it.
		if p.Health == HealthDown || p.Heartbeat.Idle {
			continue
		}
		k := masterKey(p)
		j, seen := index[k]
		if !seen {
			g := masterGroup{target: targets[i], name: p.MasterName}
			if p.Master != nil {
				g.pid = p.Master.PID
			}
			index[k] = len(out)
			out = append(out, g)
			j = len(out) - 1
		}
		g := &out[j]
		g.pools = append(g.pools, p.Name)
		if g.target.StatusAddress.IsZero() && !targets[i].StatusAddress.IsZero() {
			g.target = targets[i]
		}
	}
	return out
}

// Probe reads the opcache once per master of the probed pools. prev holds
// the previous reports by master pid.
func (o *OpcacheProber) Probe(ctx context.Context, targets []Target, pools []PoolReport, prev map[int]*OpcacheReport) []OpcacheReport {
	groups := groupByMaster(targets, pools)
	out := make([]OpcacheReport, len(groups))
	// Masters are read at once: one silent master must not delay another.
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			out[i] = o.read(ctx, g.pid, g.pools, g.target, prev[g.pid])
			out[i].Master = g.name
		})
	}
	wg.Wait()
	return out
}

// OpcacheAction is the result of a reset or invalidate on one master.
type OpcacheAction struct {
	MasterPID int             `json:"master_pid"`
	Pools     []string        `json:"pools"`
	Via       string          `json:"via"`
	OK        bool            `json:"ok"`
	Error     string          `json:"error,omitempty"`
	Paths     map[string]bool `json:"paths,omitempty"` // invalidate: the result per path
	// ManualRestarts after a reset: php counts the restart when it is
	// scheduled.
	ManualRestarts int64 `json:"manual_restarts,omitempty"`
}

// Reset runs opcache_reset() inside each master of the probed pools.
func (o *OpcacheProber) Reset(ctx context.Context, targets []Target, pools []PoolReport) []OpcacheAction {
	return o.each(targets, pools, func(c opcache.Client, g masterGroup, a *OpcacheAction) error {
		addr := g.target.StatusVia()
		ok, st, err := c.Reset(ctx, addr)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("opcache_reset() refused: %s", st.Error)
		}
		// php counts the restart when it happens, at a later request once
		// no worker uses the old cache: wait for it, within the timeout.
		wait := o.Client.Timeout
		if wait <= 0 {
			wait = fastcgi.DefaultTimeout
		}
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		for {
			now, err := c.Read(ctx, addr)
			if err == nil && now.ManualRestarts > st.ManualRestarts {
				a.OK, a.ManualRestarts = true, now.ManualRestarts
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("opcache_reset() accepted, but the restart has not happened yet: a worker still holds the old cache (it will happen within opcache.force_restart_timeout)")
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// Invalidate runs opcache_invalidate(path, true) inside each master for the
// paths and the glob's matches, as php-fpm sees them.
func (o *OpcacheProber) Invalidate(ctx context.Context, targets []Target, pools []PoolReport, paths []string, glob string) []OpcacheAction {
	return o.each(targets, pools, func(c opcache.Client, g masterGroup, a *OpcacheAction) error {
		res, err := c.Invalidate(ctx, g.target.StatusVia(), paths, glob)
		if err != nil {
			return err
		}
		a.Paths, a.OK = res, true
		return nil
	})
}

func (o *OpcacheProber) each(targets []Target, pools []PoolReport, do func(opcache.Client, masterGroup, *OpcacheAction) error) []OpcacheAction {
	var out []OpcacheAction
	for _, g := range groupByMaster(targets, pools) {
		a := OpcacheAction{MasterPID: g.pid, Pools: g.pools, Via: g.target.StatusVia().String()}
		c, err := o.client(g.target, g.pid)
		if err == nil {
			err = do(c, g, &a)
		}
		if err != nil {
			a.OK, a.Error = false, err.Error()
		}
		out = append(out, a)
	}
	return out
}

func (o *OpcacheProber) read(ctx context.Context, pid int, pools []string, t Target, prev *OpcacheReport) OpcacheReport {
	// Unknown until read: a verdict needs figures.
	r := OpcacheReport{MasterPID: pid, Pools: pools, Via: t.StatusVia().String(), Reasons: []string{}, Health: HealthUnknown}
	if past(ctx) {
		// The one-shot commands read the opcache in what time the pools'
		// probes left: none is left when a pool used all of it.
		r.Inconclusive = "the opcache was not read: the pools' probes used the whole timeout"
		return r
	}
	c, err := o.client(t, pid)
	if err != nil {
		return failedOpcache(r, err)
	}
	r.Script = c.Script
	start := time.Now()
	st, err := c.Read(ctx, t.StatusVia())
	if err != nil {
		if past(ctx) {
			// The one-shot commands give the whole probe one deadline.
			r.Inconclusive = "the opcache read did not finish before the deadline: " + err.Error()
			return r
		}
		if fastcgi.ClassOf(err) == fastcgi.ClassTimeout {
			if starved, why := o.Lag.Judge("opcache read", start, time.Now()); starved {
				// Keep the last figures and verdict, if any: this read
				// says nothing.
				if prev != nil {
					r = *prev
				}
				r.Inconclusive = why + ": " + err.Error()
				return r
			}
		}
		return failedOpcache(r, err)
	}
	fillOpcache(&r, st)
	now := time.Now().UTC()
	var prevStatus *opcache.Status
	var pendingFor time.Duration
	if prev != nil {
		prevStatus = prev.status
		if st.RestartPending && prev.PendingSince != nil {
			r.PendingSince = prev.PendingSince
			pendingFor = now.Sub(*prev.PendingSince)
		}
	}
	if st.RestartPending && r.PendingSince == nil {
		r.PendingSince = &now
	}
	v := opcache.Judge(st, prevStatus, pendingFor)
	r.Health, r.Reasons = Health(v.Health), v.Reasons
	return r
}

func failedOpcache(r OpcacheReport, err error) OpcacheReport {
	r.Error = err.Error()
	r.Health = HealthDegraded
	reason := "cannot read the opcache: " + err.Error()
	if fe, ok := fastcgi.AsError(err); ok && fe.Hint != "" {
		reason += " — " + fe.Hint
	}
	if errors.Is(err, os.ErrPermission) {
		reason += " — run fpmguard as root, or give it an opcache directory of its own"
	}
	r.Reasons = []string{reason}
	return r
}

func fillOpcache(r *OpcacheReport, st *opcache.Status) {
	r.status = st
	r.Enabled, r.FileCacheOnly = st.Enabled, st.FileCacheOnly
	r.CacheFull, r.RestartPending, r.RestartInProgress = st.CacheFull, st.RestartPending, st.RestartInProgress
	r.MemoryUsedBytes, r.MemoryFreeBytes, r.MemoryWastedBytes = st.MemoryUsed, st.MemoryFree, st.MemoryWasted
	r.FillRatio, r.WastedRatio, r.MaxWastedRatio = st.FillRatio(), st.WastedRatio(), st.Config.MaxWastedPercentage
	r.CachedScripts, r.CachedKeys, r.MaxCachedKeys = st.CachedScripts, st.CachedKeys, st.MaxCachedKeys
	r.InternedStringsUsedBytes, r.InternedStringsBufferBytes = st.InternedUsed, st.InternedSize
	r.Hits, r.Misses, r.HitRate = st.Hits, st.Misses, st.HitRate()
	r.OOMRestarts, r.HashRestarts, r.ManualRestarts = st.OOMRestarts, st.HashRestarts, st.ManualRestarts
	r.JITEnabled, r.JITBufferSizeBytes, r.JITBufferFreeBytes = st.JITEnabled, st.JITBufferSize, st.JITBufferFree
	r.MemoryConsumptionBytes, r.MaxAcceleratedFiles = st.Config.MemoryConsumption, st.Config.MaxAcceleratedFiles
	r.PoolMemoryConsumptionBytes = st.PoolMemoryConsumption
	r.ValidateTimestamps, r.RevalidateFreqSeconds = st.Config.ValidateTimestamps, st.Config.RevalidateFreq
	if st.JITBufferSize > 0 {
		r.JITBufferFill = 1 - float64(st.JITBufferFree)/float64(st.JITBufferSize)
	}
	if !st.StartTime.IsZero() {
		t := st.StartTime
		r.StartTime = &t
	}
	if !st.LastRestartTime.IsZero() {
		t := st.LastRestartTime
		r.LastRestartTime = &t
	}
}

// past reports a context whose deadline has come, or that has ended. Its
// Err may not say so yet at the very instant of the deadline.
func past(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || (ok && !time.Now().Before(d))
}
