package supervisor

import (
	"context"
	"os"
	"strconv"
	"strings"
)

// Idle judges an ondemand pool without waking it. A status read or a ping
// is served by a worker, and an ondemand pool with none forks one for it
// and keeps it for pm.process_idle_timeout: probing every second would keep
// workers alive for good, the opposite of what ondemand is chosen for. So
// while the pool has no worker and nothing waits on its socket, it is
// judged from what costs php-fpm nothing: its master is alive and its
// socket listens with an empty queue. ok is false when the pool must be
// probed in full: it is not ondemand, its master is not known to be alive,
// a worker exists, requests wait, or the socket does not listen.
func (pr *Prober) Idle(ctx context.Context, t Target) (r PoolReport, ok bool) {
	if t.PM != "ondemand" {
		return r, false
	}
	m := pr.master(ctx, t, nil)
	if m == nil || !m.Alive {
		return r, false
	}
	if pr.hasWorkers(ctx, m.PID, t.Name) {
		return r, false
	}
	q, err := ReadSocketQueue(t.Address)
	if err != nil || q.Length > 0 {
		return r, false
	}
	r = PoolReport{
		Name:        t.Name,
		Address:     t.Address.String(),
		Config:      PoolLimits{PM: t.PM, MaxChildren: t.MaxChildren, MinWorkers: t.MinWorkers},
		Master:      m,
		SocketQueue: q,
		Processes:   []ProcessState{},
		Heartbeat:   Heartbeat{Idle: true},
		Status:      StatusRead{Idle: true},
	}
	if !t.StatusAddress.IsZero() {
		r.StatusAddress = t.StatusAddress.String()
	}
	return r, true
}

// hasWorkers reports whether master has a worker of pool name, from the
// kernel's list of its children and their titles. When the list cannot be
// read, it answers yes: a full probe is never wrong, only dearer.
func (pr *Prober) hasWorkers(ctx context.Context, master int, name string) bool {
	id := strconv.Itoa(master)
	b, err := os.ReadFile("/proc/" + id + "/task/" + id + "/children")
	if err != nil {
		return true
	}
	title := PoolTitle(name)
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		p, err := pr.Procs.ReadProcess(ctx, pid)
		// A child fresh from fork still shows the master's title: it may
		// be the pool's.
		if err == nil && (p.Title == title || IsMasterTitle(p.Title)) {
			return true
		}
	}
	return false
}
