// Package supervisor watches php-fpm pools: it finds them, probes each one
// through FastCGI and the OS, and gives each a verdict with reasons. Later
// it acts on what it finds and serves the results over HTTP.
package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// Prober probes pools. Its zero value is not ready: set Procs.
type Prober struct {
	Client     fastcgi.Client
	Procs      ProcReader
	Thresholds Thresholds
	ShowQuery  bool           // keep query strings in request URIs
	Opcache    *OpcacheProber // nil: do not read the opcache
	// ReadPSS reads each worker's proportional memory, at most every
	// pssEvery per worker: it walks the process's mappings.
	ReadPSS bool

	pssMu sync.Mutex
	pss   map[titleKey]pssSample
}

type pssSample struct {
	bytes uint64
	at    time.Time
}

const pssEvery = 10 * time.Second

// Probe reads the status page, then runs the heartbeat, then reads the OS
// view of the master and of every worker the status page names, and judges
// the pool. prev is the pool's previous report, or nil. The status page
// comes first so that it never shows the heartbeat's own request as load.
func (pr *Prober) Probe(ctx context.Context, t Target, prev *PoolReport) PoolReport {
	r := pr.Observe(ctx, t)
	pr.Beat(ctx, t, &r)
	Judge(&r, prev, pr.Thresholds)
	return r
}

// Observe reads everything but the heartbeat: the status page, the OS view
// of the master and of every worker it names, and the socket's queue.
func (pr *Prober) Observe(ctx context.Context, t Target) PoolReport {
	r := PoolReport{
		Name:    t.Name,
		Address: t.Address.String(),
		Config:  PoolLimits{PM: t.PM, MaxChildren: t.MaxChildren, MinWorkers: t.MinWorkers},
	}
	if !t.StatusAddress.IsZero() {
		r.StatusAddress = t.StatusAddress.String()
	}
	st, status := pr.readStatus(ctx, t)
	r.Status = status
	if st != nil {
		r.Counters = counters(st)
		r.Processes = pr.processes(ctx, t, st)
	}
	r.at = time.Now()
	if q, err := ReadSocketQueue(t.Address); err == nil {
		r.SocketQueue = q
	}
	if r.Processes == nil {
		r.Processes = []ProcessState{}
	}
	r.Master = pr.master(ctx, t, r.Processes)
	if r.Master != nil {
		for i := range r.Processes {
			r.Processes[i].ParentOK = r.Processes[i].ParentOK && r.Master.Alive && r.Processes[i].parent == r.Master.PID
		}
	}
	return r
}

// Beat runs the heartbeat into r, and the advice that depends on it.
func (pr *Prober) Beat(ctx context.Context, t Target, r *PoolReport) {
	r.Heartbeat = pr.heartbeat(ctx, t)
	r.Advice = advice(t, *r)
}

func (pr *Prober) heartbeat(ctx context.Context, t Target) Heartbeat {
	if t.PingPath == "" {
		return Heartbeat{Skipped: true}
	}
	d, err := pr.Client.Ping(ctx, t.Address, t.PingPath, t.PingResponse)
	hb := Heartbeat{LatencySeconds: d.Seconds()}
	if err != nil {
		hb.Error = fmt.Sprintf("heartbeat of pool %s: %v", t.Name, err)
		hb.Failure = failure(err)
		return hb
	}
	hb.OK = true
	return hb
}

func (pr *Prober) readStatus(ctx context.Context, t Target) (*fastcgi.Status, StatusRead) {
	if t.StatusPath == "" {
		return nil, StatusRead{Skipped: true}
	}
	via := "main"
	if !t.StatusAddress.IsZero() {
		via = "status_listen"
	}
	st, err := pr.Client.Status(ctx, t.StatusVia(), t.StatusPath)
	if err != nil {
		return nil, StatusRead{Via: via, Error: fmt.Sprintf("reading status of pool %s: %v", t.Name, err), Failure: failure(err)}
	}
	return st, StatusRead{OK: true, Via: via}
}

func failure(err error) *Failure {
	fe, ok := fastcgi.AsError(err)
	if !ok {
		return &Failure{Error: err.Error(), Reason: "bad_response", Class: "unknown"}
	}
	return &Failure{Error: err.Error(), Reason: fe.Class.Reason(), Class: fe.Class.String(), NginxStatus: fe.NginxStatus(), Hint: fe.Hint}
}

func counters(st *fastcgi.Status) *Counters {
	c := &Counters{
		ProcessManager:     st.ProcessManager,
		StartTime:          st.StartTime,
		StartSinceSeconds:  st.StartSince,
		AcceptedConn:       st.AcceptedConn,
		ListenQueue:        st.ListenQueue,
		MaxListenQueue:     st.MaxListenQueue,
		ListenQueueLen:     st.ListenQueueLen,
		IdleProcesses:      st.IdleProcesses,
		ActiveProcesses:    st.ActiveProcesses,
		TotalProcesses:     st.TotalProcesses,
		MaxActiveProcesses: st.MaxActiveProcesses,
		MaxChildrenReached: st.MaxChildrenReached,
		SlowRequests:       st.SlowRequests,
	}
	if st.MemoryPeak >= 0 {
		c.MemoryPeakBytes = st.MemoryPeak
	}
	return c
}

// processes joins the status page's workers with their OS view.
func (pr *Prober) processes(ctx context.Context, t Target, st *fastcgi.Status) []ProcessState {
	out := make([]ProcessState, 0, len(st.Processes))
	title := PoolTitle(t.Name)
	for _, p := range st.Processes {
		uri := p.RequestURI
		if !pr.ShowQuery {
			uri = StripQuery(uri)
		}
		ps := ProcessState{
			PID:               p.PID,
			State:             p.State,
			RequestDuration:   p.RequestDuration.Seconds(),
			RequestMethod:     p.RequestMethod,
			RequestURI:        uri,
			Script:            p.Script,
			Requests:          p.Requests,
			LastRequestCPU:    p.LastRequestCPU,
			LastRequestMemory: p.LastRequestMemory,
			probeRequest:      !p.Idle() && isProbe(t, StripQuery(p.RequestURI)),
		}
		osp, err := pr.Procs.ReadProcess(ctx, p.PID)
		ps.OSState = osp.State
		if err == nil {
			ps.CPUSeconds = osp.CPUSeconds
			ps.RSSBytes = osp.RSSBytes
			ps.parent = osp.PPID
			ps.startTicks = osp.StartTicks
			if !p.Idle() {
				// Only a busy worker can be hung, and only a hung one needs
				// telling spinning from blocked.
				ps.onCPU, ps.runQueue = ReadSchedstat(p.PID)
			}
			if pr.ReadPSS {
				ps.PSSBytes = pr.pssOf(p.PID, osp.StartTicks)
			}
			// A pid the status page names is ours only with the pool's title.
			ps.ParentOK = osp.Title == title
		}
		out = append(out, ps)
	}
	return out
}

// pssOf returns a worker's PSS, read again when older than pssEvery.
func (pr *Prober) pssOf(pid int, start uint64) uint64 {
	key := titleKey{pid, start}
	pr.pssMu.Lock()
	s, ok := pr.pss[key]
	pr.pssMu.Unlock()
	if ok && time.Since(s.at) < pssEvery {
		return s.bytes
	}
	s = pssSample{bytes: ReadPSS(pid), at: time.Now()}
	pr.pssMu.Lock()
	if pr.pss == nil || len(pr.pss) >= maxTitles {
		pr.pss = map[titleKey]pssSample{}
	}
	pr.pss[key] = s
	pr.pssMu.Unlock()
	return s.bytes
}

// master finds and reads the pool's master: the known pid, else the pid
// file, else the parent of the workers.
func (pr *Prober) master(ctx context.Context, t Target, procs []ProcessState) *MasterReport {
	pid := t.MasterPID
	if pid == 0 && t.MasterPIDFile != "" {
		n, err := readPIDFile(filepath.Join(t.Root, t.MasterPIDFile))
		if err != nil {
			return &MasterReport{Config: t.MasterConfig, Error: err.Error()}
		}
		pid = n
	}
	if pid == 0 {
		for _, p := range procs {
			if p.parent > 0 {
				pid = p.parent
				break
			}
		}
	}
	if pid == 0 {
		return nil
	}
	m := &MasterReport{PID: pid, Config: t.MasterConfig}
	osp, err := pr.Procs.ReadProcess(ctx, pid)
	m.OSState = osp.State
	// A pid that now belongs to something else is a master that is gone.
	m.Alive = err == nil && osp.State != OSZombie && IsMasterTitle(osp.Title)
	if cfg, ok := MasterConfigFromTitle(osp.Title); ok && m.Config == "" {
		m.Config = cfg
	}
	return m
}

// isProbe reports whether a request path is a status or ping request.
func isProbe(t Target, path string) bool {
	return path != "" && (path == t.StatusPath || path == t.PingPath)
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading php-fpm pid file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("php-fpm pid file %s holds %q, not a pid", path, truncate(strings.TrimSpace(string(b)), 20))
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// advice lists the config lines that would let fpmguard see the pool fully.
func advice(t Target, r PoolReport) []string {
	var out []string
	where := "to pool [" + t.Name + "]"
	if r.Status.Skipped {
		out = append(out, fmt.Sprintf("add `pm.status_path = %s` %s so fpmguard can see its workers", DefaultStatusPath, where))
	}
	if t.StatusAddress.IsZero() && !r.Status.Skipped {
		out = append(out, fmt.Sprintf("add `pm.status_listen = %s` %s so its status still answers when every worker is busy", suggestStatusListen(t), where))
	}
	if r.Heartbeat.Skipped {
		out = append(out, fmt.Sprintf("add `ping.path = %s` %s so fpmguard can send a heartbeat through a worker", DefaultPingPath, where))
	}
	if f := r.Status.Failure; f != nil && f.Hint != "" {
		out = append(out, f.Hint)
	}
	if f := r.Heartbeat.Failure; f != nil && f.Hint != "" && (r.Status.Failure == nil || f.Hint != r.Status.Failure.Hint) {
		out = append(out, f.Hint)
	}
	return out
}

func suggestStatusListen(t Target) string {
	if t.Address.Network == "unix" {
		return strings.TrimSuffix(t.Address.Addr, ".sock") + "-status.sock"
	}
	return "127.0.0.1:9001"
}

// ProbeAll probes every target at once, then reads the opcache of each
// master, and returns the report in target order. prev is the previous
// report, or nil.
func (pr *Prober) ProbeAll(ctx context.Context, targets []Target, prev *Report) *Report {
	rep := &Report{Version: ReportVersion, Time: time.Now().UTC(), Pools: make([]PoolReport, len(targets))}
	prevPools := map[string]*PoolReport{}
	prevOpcache := map[int]*OpcacheReport{}
	if prev != nil {
		for i := range prev.Pools {
			prevPools[prev.Pools[i].Address] = &prev.Pools[i]
		}
		for i := range prev.Opcache {
			prevOpcache[prev.Opcache[i].MasterPID] = &prev.Opcache[i]
		}
	}
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { rep.Pools[i] = pr.Probe(ctx, t, prevPools[t.Address.String()]) })
	}
	wg.Wait()
	if pr.Opcache != nil {
		rep.Opcache = pr.Opcache.Probe(ctx, targets, rep.Pools, prevOpcache)
	}
	return rep
}
