package supervisor

import (
	"context"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/fastcgi"
	"golang.org/x/sys/unix"
)

// Idle judges an ondemand pool without waking it. A status read or a ping
// is served by a worker, and an ondemand pool forks one for it, or keeps
// an idle one alive for another pm.process_idle_timeout: probing every
// second would keep workers alive for good, the opposite of what ondemand
// is chosen for. So while every worker of the pool waits in accept() (none
// serves a request) and nothing waits on its socket, the pool is judged
// from what costs php-fpm nothing: its master is alive and its socket
// listens with an empty queue. Its idle workers then end as php-fpm means
// them to. ok is false when the pool must be probed in full: it is not
// ondemand, its master is not known to be alive, a worker serves a
// request (or cannot be read), requests wait, or the socket does not
// listen.
func (pr *Prober) Idle(ctx context.Context, t Target) (r PoolReport, ok bool) {
	if t.PM != "ondemand" {
		return r, false
	}
	m := pr.master(ctx, t, nil)
	if m == nil || !m.Alive {
		return r, false
	}
	if pr.serving(ctx, m.PID, t.Name) {
		return r, false
	}
	q, err := ReadSocketQueue(t.Address)
	if err != nil || q.Length > 0 {
		return r, false
	}
	r = PoolReport{
		Name:          t.Name,
		MasterName:    t.MasterName(),
		Address:       t.Address.String(),
		Config:        PoolLimits{PM: t.PM, MaxChildren: t.MaxChildren, MinWorkers: t.MinWorkers},
		Master:        m,
		SocketQueue:   q,
		ProbeRequests: fastcgi.RequestsSent(t.Address),
		Processes:     []ProcessState{},
		// Not sent, not read; and skipped as well for a pool without
		// ping.path or pm.status_path, so that an idle pool is judged
		// monitored, or not, as it is when it serves.
		Heartbeat: Heartbeat{Idle: true, Skipped: t.PingPath == ""},
		Status:    StatusRead{Idle: true, Skipped: t.StatusPath == ""},
	}
	if !t.StatusAddress.IsZero() {
		r.StatusAddress = t.StatusAddress.String()
	}
	return r, true
}

// serving reports whether a worker of pool name, a child of master, is not
// waiting for a request: from the kernel's list of the master's children,
// their titles, and the system call each is blocked in. When anything
// cannot be read, it answers yes: a full probe is never wrong, only
// dearer.
func (pr *Prober) serving(ctx context.Context, master int, name string) bool {
	id := strconv.Itoa(master)
	b, err := readSmallFile("/proc/"+id+"/task/"+id+"/children", maxProcFile)
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
		switch {
		case p.State == OSGone || p.State == OSZombie:
			// A worker ended at pm.process_idle_timeout, reaped since the
			// list was read or waiting to be: it serves nothing, and a
			// probe now would make php-fpm start another.
			continue
		case err != nil:
			return true
		case IsMasterTitle(p.Title):
			// Fresh from fork, it shows the master's title: it may be
			// the pool's, starting for a request.
			return true
		case p.Title == title && !inAccept(pid):
			return true
		}
	}
	return false
}

// inAccept reports whether a process is blocked in accept(), as an idle
// php-fpm worker is. /proc/PID/syscall needs the right to trace the
// process: without it, the answer is no.
func inAccept(pid int) bool {
	b, err := readProcFile(pid, "syscall")
	if err != nil {
		return false
	}
	nr, _, _ := strings.Cut(string(b), " ")
	n, err := strconv.Atoi(nr)
	return err == nil && (n == unix.SYS_ACCEPT || n == unix.SYS_ACCEPT4)
}
