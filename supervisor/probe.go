// Package supervisor knows php-fpm pools: it finds them, probes each one
// through FastCGI and the OS, and gives each a verdict with reasons, in a
// report. It imports fastcgi, fpmconf, opcache, lag, safefile, sockdiag,
// human and phpbin; it must not import event, watch, runner or web, which
// act on and show what it finds.
package supervisor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/opcache"
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
	// Lag is fpmguard's own lag: a read that timed out or answered late
	// while fpmguard was starved of CPU is inconclusive. nil: never.
	Lag *lag.Monitor
	// Trust says whose masters fpmguard acts for (trust.go).
	Trust Trust
	// Diagnoser reads what held-up workers wait for and their PHP stacks
	// (diagnose.go); nil: not read.
	Diagnoser *Diagnoser

	pssMu sync.Mutex
	pss   map[titleKey]pssSample

	trustMu sync.Mutex
	trust   map[titleKey]trustSample
}

type pssSample struct {
	bytes, rss uint64
	at         time.Time
}

// A worker's PSS is read again after pssEvery when its RSS moved by more
// than 1/32 since the last read, else after pssStill: reading smaps_rollup
// walks every mapping of the process, and cost 8% of fpmguard's CPU at 100
// quiet pools when read every 10 s. (The RSS of a worker serving status
// requests moves by a few pages all the time.) Unchanged memory can still
// change PSS (a sibling that shared pages ended), slowly.
const (
	pssEvery = 10 * time.Second
	pssStill = 60 * time.Second
)

// Probe reads the status page, then runs the heartbeat, then reads the OS
// view of the master and of every worker the status page names, and judges
// the pool. prev is the pool's previous report, or nil. The status page
// comes first so that it never shows the heartbeat's own request as load.
func (pr *Prober) Probe(ctx context.Context, t Target, prev *PoolReport) PoolReport {
	r := pr.Observe(ctx, t)
	Mark(&r, pr.Thresholds)
	pr.Beat(ctx, t, &r)
	Judge(&r, prev, pr.Thresholds)
	return r
}

// Observe reads everything but the heartbeat: the status page (through
// pm.status_listen when the pool has it), the OS view of the master and of
// every worker it names, and the socket's queue.
func (pr *Prober) Observe(ctx context.Context, t Target) PoolReport {
	return pr.ObserveThrough(ctx, t, t.StatusVia(), 0)
}

// ObserveThrough is Observe with the status page read through at, the
// pool's own socket or its status listener, waiting for it wait at most (0:
// the client's timeout). The watch loop reads a pool with
// pm.status_listen through its own socket while a worker is free, so that
// the read stands in for the heartbeat (BeatFromStatus) and a tick costs
// one exchange, as it does without pm.status_listen.
func (pr *Prober) ObserveThrough(ctx context.Context, t Target, at fastcgi.Address, wait time.Duration) PoolReport {
	r := PoolReport{
		Name:       t.Name,
		MasterName: t.MasterName(),
		Address:    t.Address.String(),
		Config:     PoolLimits{PM: t.PM, MaxChildren: t.MaxChildren, MinWorkers: t.MinWorkers},
	}
	if !t.StatusAddress.IsZero() {
		r.StatusAddress = t.StatusAddress.String()
	}
	// The kernel's queue first: a dump of it taken while the status read
	// waits in the pool's own socket (another probe loop takes them, once
	// a quarter second) would count fpmguard's own request as one waiting.
	if q, err := ReadSocketQueue(t.Address); err == nil {
		r.SocketQueue = q
	}
	st, status := pr.readStatus(ctx, t, at, wait)
	r.Status = status
	r.ProbeRequests = fastcgi.RequestsSent(t.Address)
	if st != nil {
		r.Counters = counters(st)
		r.Processes = pr.processes(ctx, t, st)
	}
	r.at = time.Now()
	if r.Processes == nil {
		r.Processes = []ProcessState{}
	}
	r.Master = pr.master(ctx, t, r.Processes)
	if r.Master != nil {
		for i := range r.Processes {
			r.Processes[i].ParentOK = r.Processes[i].ParentOK && r.Master.Alive && r.Processes[i].parent == r.Master.PID
		}
	}
	// Last, as the heartbeat comes after: the socket's queue never shows
	// fpmguard's own connection.
	r.Connect = pr.connect(ctx, t, &r)
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
	start := time.Now()
	d, err := pr.Client.Ping(ctx, t.Address, t.PingPath, t.PingResponse)
	hb := Heartbeat{LatencySeconds: d.Seconds()}
	if err != nil {
		hb.Error = fmt.Sprintf("heartbeat of pool %s: %v", t.Name, err)
		if why := pr.starved("heartbeat", start, err); why != "" {
			hb.Error, hb.Inconclusive = "", why+": "+hb.Error
			return hb
		}
		hb.Failure = failure(err)
		return hb
	}
	hb.OK = true
	if d >= lateAnswer {
		// The answer came, so the pool serves; only its latency may be
		// fpmguard's own.
		hb.Inconclusive = pr.starved("heartbeat latency", start, nil)
	}
	return hb
}

// BeatFromStatus makes the status read of r stand in for the heartbeat,
// when it proves what a ping would: it was read through the pool's own
// socket, so a worker took it from the listen queue nginx uses and
// answered it, as it answers a ping. It does so only when the read
// answered in time (a late one is judged as a late ping is) and the pool
// has a ping.path; false when a ping must be sent. The ping's own checks,
// ping.path and ping.response, are left to the pings the caller still
// sends now and then.
func BeatFromStatus(t Target, r *PoolReport) bool {
	if t.PingPath == "" || r.Status.Via != viaMain || !r.Status.OK || r.Status.took <= 0 || r.Status.took >= lateAnswer {
		return false
	}
	r.Heartbeat = Heartbeat{OK: true, LatencySeconds: r.Status.took.Seconds(), Via: "status page"}
	r.Advice = advice(t, *r)
	return true
}

// BeatFromTimeout fails the heartbeat of r without sending it when read, a
// status read through the pool's own socket that waited the client's
// whole timeout, timed out: it waited in the listen queue nginx's requests
// wait in, as a ping would, and a ping would only wait out another
// timeout. False when a ping must be sent: the read did not time out (a
// refusal, a reset or a 404 is the ping's to classify), or proves nothing
// as fpmguard was starved.
func BeatFromTimeout(t Target, r *PoolReport, read StatusRead) bool {
	if t.PingPath == "" || read.Via != viaMain || !read.Failed() || read.Failure.Class != fastcgi.ClassTimeout {
		return false
	}
	f := *read.Failure
	f.Error = fmt.Sprintf("heartbeat of pool %s: %s (its status read stood in for the ping)", t.Name, read.Failure.Error)
	r.Heartbeat = Heartbeat{Error: f.Error, Failure: &f, Via: "status page", LatencySeconds: read.took.Seconds()}
	r.Advice = advice(t, *r)
	return true
}

// BeatFromHung fails the heartbeat without sending it when the status page
// shows that a ping could only wait: every worker is hung, and php-fpm may
// start no other (max_children reached). A ping would wait its whole
// timeout, add one more connection to the queue nginx's requests wait in,
// and hold back the verdict the status page already gives by that long.
// It fails as a timed-out ping does. False when a ping must be sent.
func BeatFromHung(t Target, r *PoolReport) bool {
	n := len(r.Processes)
	if t.PingPath == "" || !r.Status.OK || n == 0 || t.MaxChildren == 0 || n < t.MaxChildren || r.HungCount() < n {
		return false
	}
	msg := fmt.Sprintf("heartbeat of pool %s not sent: all %d workers are hung, so a request could only wait in the listen queue", t.Name, n)
	// Failed as a timed-out ping is: its class, reason and nginx status
	// come from fastcgi's own mapping.
	timeout := &fastcgi.Error{Class: fastcgi.ClassTimeout}
	r.Heartbeat = Heartbeat{Error: msg, WaitsBehindHung: n, Failure: &Failure{Error: msg, Reason: timeout.Class.Reason(), Class: timeout.Class,
		NginxStatus: timeout.NginxStatus(), Hint: "nginx answers at its fastcgi_read_timeout; see the worker table of `fpmguard status`"}}
	r.Advice = advice(t, *r)
	return true
}

// lateAnswer is the latency from which a successful read is checked for
// fpmguard's own starvation: below it, no verdict depends on it.
const lateAnswer = 10 * time.Millisecond

// starved says why a read that began at start and failed with err (or
// answered late, err nil) is inconclusive: fpmguard itself was starved of
// CPU for a large part of it. Only a timeout can be fpmguard's own fault:
// a refused or reset connection is php-fpm's answer, whenever it is read.
// "" when the read is conclusive.
func (pr *Prober) starved(what string, start time.Time, err error) string {
	if err != nil && fastcgi.ClassOf(err) != fastcgi.ClassTimeout {
		return ""
	}
	_, why := pr.Lag.Judge(what, start, time.Now())
	return why
}

// How a status page was read: StatusRead.Via.
const (
	viaMain         = "main"          // through the pool's own socket
	viaStatusListen = "status_listen" // through its pm.status_listen
)

// readStatus reads the status page of t through at, its own socket or its
// status listener, waiting wait at most (0: the client's timeout).
func (pr *Prober) readStatus(ctx context.Context, t Target, at fastcgi.Address, wait time.Duration) (*fastcgi.Status, StatusRead) {
	if t.StatusPath == "" {
		return nil, StatusRead{Skipped: true}
	}
	via := viaMain
	if at != t.Address {
		via = viaStatusListen
	}
	c := pr.Client
	if wait > 0 {
		c.Timeout = min(wait, pr.Timeout())
	}
	start := time.Now()
	st, err := c.Status(ctx, at, t.StatusPath)
	end := time.Now()
	if err != nil {
		msg := fmt.Sprintf("reading status of pool %s: %v", t.Name, err)
		if why := pr.starved("status page", start, err); why != "" {
			return nil, StatusRead{Via: via, Inconclusive: why + ": " + msg}
		}
		return nil, StatusRead{Via: via, Error: msg, Failure: failure(err), took: end.Sub(start)}
	}
	return st, StatusRead{OK: true, Via: via, took: end.Sub(start), at: end}
}

// requestStages are php-fpm's names for the stages of a worker with a
// request in flight (fpm_request.c; "informations" before PHP 7.4).
var requestStages = map[string]bool{
	"Reading headers": true, "Getting request information": true, "Getting request informations": true,
	"Running": true, "Ending": true, "Finishing": true,
}

// InRequest reports whether a worker in state, as the status page names
// it, has a request in flight. A worker fresh from fork shows no stage
// ("(null)") until it first waits for a request: neither idle nor busy.
func InRequest(state string) bool { return requestStages[state] }

// StatusAt is when the status page of r answered: the moment its request
// durations were true, zero when it was not read.
func (r *PoolReport) StatusAt() time.Time { return r.Status.at }

// RequestStart is when p's request in flight began, from its duration on
// the status page of r and the moment the page answered; false for a
// worker with no request in flight, or a page not read.
func (r *PoolReport) RequestStart(p ProcessState) (time.Time, bool) {
	if !InRequest(p.State) || r.Status.at.IsZero() {
		return time.Time{}, false
	}
	return r.Status.at.Add(-time.Duration(p.RequestDurationSeconds * float64(time.Second))), true
}

func failure(err error) *Failure {
	fe, ok := fastcgi.AsError(err)
	if !ok {
		return &Failure{Error: err.Error(), Reason: fastcgi.ReasonBadResponse}
	}
	return &Failure{Error: err.Error(), Reason: fe.Class.Reason(), Class: fe.Class, NginxStatus: fe.NginxStatus(), Hint: fe.Hint, Misconfigured: misconfigured(fe)}
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
		age := p.RequestDuration
		if !p.Idle() && !InRequest(p.State) {
			// A fresh worker: php-fpm counts its duration from the
			// clock's zero (the time since boot), as no request began.
			age = 0
		}
		ps := ProcessState{
			PID:                    p.PID,
			State:                  p.State,
			RequestDurationSeconds: age.Seconds(),
			RequestMethod:          p.RequestMethod,
			RequestURI:             uri,
			Script:                 p.Script,
			Requests:               p.Requests,
			LastRequestCPU:         p.LastRequestCPU,
			LastRequestMemory:      p.LastRequestMemory,
			probeRequest:           !p.Idle() && t.IsProbe(StripQuery(p.RequestURI)),
		}
		osp, err := pr.Procs.ReadProcess(ctx, p.PID)
		ps.OSState = osp.State
		if err == nil {
			ps.CPUSeconds = osp.CPUSeconds
			ps.RSSBytes = osp.RSSBytes
			ps.parent = osp.PPID
			ps.startTicks = osp.StartTicks
			if !p.Idle() && !(ps.probeRequest && p.RequestDuration < time.Second) {
				// Only a busy worker can be hung, and only a hung one needs
				// telling spinning from blocked; the one serving fpmguard's
				// own status request, just begun, is not.
				ps.onCPU, ps.runQueue = ReadSchedstat(p.PID)
			}
			if pr.ReadPSS {
				ps.PSSBytes = pr.pssOf(p.PID, osp.StartTicks, osp.RSSBytes)
			}
			// A pid the status page names is ours only with the pool's title.
			ps.ParentOK = osp.Title == title
		}
		out = append(out, ps)
	}
	return out
}

// pssOf returns a worker's PSS, read again when older than pssEvery and
// its RSS moved, or older than pssStill.
func (pr *Prober) pssOf(pid int, start, rss uint64) uint64 {
	key := titleKey{pid, start}
	pr.pssMu.Lock()
	s, ok := pr.pss[key]
	pr.pssMu.Unlock()
	moved := max(rss, s.rss)-min(rss, s.rss) > s.rss/32
	if age := time.Since(s.at); ok && (age < pssEvery || (age < pssStill && !moved)) {
		return s.bytes
	}
	s = pssSample{bytes: ReadPSS(pid), rss: rss, at: time.Now()}
	pr.pssMu.Lock()
	if pr.pss == nil || len(pr.pss) >= maxTitles {
		pr.pss = map[titleKey]pssSample{}
	}
	pr.pss[key] = s
	pr.pssMu.Unlock()
	return s.bytes
}

// IsProbe reports whether a request path is one of fpmguard's probes of
// the pool: its status page, its ping, or the opcache script fpmguard
// installs.
func (t Target) IsProbe(path string) bool {
	return path != "" && (path == t.StatusPath || path == t.PingPath || path == "/"+opcache.ScriptName())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ProbeAll probes every target once, for the one-shot commands, and
// returns the report in target order. The whole of it ends within the
// client's timeout (and ctx): the pools, and each pool's status read and
// heartbeat, run at once; the opcache of each master is read right after,
// in what time is left. prev is the previous report, or nil.
func (pr *Prober) ProbeAll(ctx context.Context, targets []Target, prev *Report) *Report {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout())
	defer cancel()
	if pr.Lag != nil {
		go pr.Lag.Run(ctx)
	}
	rep := &Report{Version: ReportVersion, Time: time.Now().UTC(), Pools: make([]PoolReport, len(targets))}
	prevPools := map[PoolID]*PoolReport{}
	prevOpcache := map[int]*OpcacheReport{}
	if prev != nil {
		for i := range prev.Pools {
			prevPools[prev.Pools[i].ID()] = &prev.Pools[i]
		}
		for i := range prev.Opcache {
			prevOpcache[prev.Opcache[i].MasterPID] = &prev.Opcache[i]
		}
	}
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			rep.Pools[i] = pr.probeAtOnce(ctx, t, prevPools[t.ID()])
			if parent.Err() != nil {
				// Interrupted: what the probe's requests met was no answer
				// of php-fpm's.
				rep.Pools[i] = NotProbed(t, "not probed: fpmguard was interrupted before the probe ended")
			}
		})
	}
	wg.Wait()
	if pr.Opcache != nil {
		rep.Opcache = pr.Opcache.Probe(ctx, targets, rep.Pools, prevOpcache)
	}
	return rep
}

// headStart is how long the one-shot heartbeat waits for the status page
// and the OS view before it goes anyway.
const headStart = 200 * time.Millisecond

// probeAtOnce is Probe bounded by one timeout. The heartbeat follows the
// observation, as in Probe, so that the status page and the kernel's queue
// never count it as load; but when the observation is slow (a silent
// pool), the heartbeat goes after headStart, and the two wait out the
// timeout together instead of one after the other.
func (pr *Prober) probeAtOnce(ctx context.Context, t Target, prev *PoolReport) PoolReport {
	var r PoolReport
	diagnosis := func() *Reading { return nil }
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		r = pr.Observe(ctx, t)
		if pr.Diagnoser != nil {
			// Read while the heartbeat waits: with every worker hung, it
			// waits out the whole timeout.
			th := pr.Thresholds
			th.fill()
			Mark(&r, th)
			diagnosis = pr.Diagnoser.StartDiagnosis(ctx, t, &r, th.HungAfter, &PoolDiagnosis{})
		}
	}()
	timer := time.NewTimer(headStart)
	select {
	case <-observed:
	case <-timer.C:
	}
	timer.Stop()
	hb := pr.heartbeat(ctx, t)
	<-observed
	r.Heartbeat = hb
	r.Advice = advice(t, r)
	Mark(&r, pr.Thresholds)
	diagnosis().Apply(&r)
	Judge(&r, prev, pr.Thresholds)
	return r
}

// Timeout is the client's bound on one request.
func (pr *Prober) Timeout() time.Duration {
	if pr.Client.Timeout > 0 {
		return pr.Client.Timeout
	}
	return fastcgi.DefaultTimeout
}
