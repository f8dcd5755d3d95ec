package supervisor

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/phpbin"
	"github.com/fpmguard/fpmguard/waits"
)

// ReportVersion is the version of the JSON schema of Report. It changes
// only when a field changes meaning or goes away.
const ReportVersion = 1

// Report is what `fpmguard status -o json` prints and `/status` serves.
type Report struct {
	Version int          `json:"version"`
	Time    time.Time    `json:"time"`
	Pools   []PoolReport `json:"pools"`
	// Opcache has one entry per master, when the opcache was read.
	Opcache []OpcacheReport `json:"opcache,omitempty"`
}

// Health is a pool's verdict.
type Health string

// The verdicts, from best to worst.
const (
	HealthOK Health = "ok"
	// HealthUnknown: fpmguard has no evidence either way. The pool was
	// not probed yet, or it answers no request fpmguard may send (no
	// ping.path and no pm.status_path), or the opcache was not read. It
	// is never ok: nothing was seen to be.
	HealthUnknown   Health = "unknown"
	HealthDegraded  Health = "degraded"
	HealthUnhealthy Health = "unhealthy"
	HealthDown      Health = "down"
)

// Healths lists every verdict, best first.
var Healths = []Health{HealthOK, HealthUnknown, HealthDegraded, HealthUnhealthy, HealthDown}

// Rank orders verdicts: a higher rank is worse. Any finding outranks
// unknown: what was seen is said, and unknown only when nothing was.
func (h Health) Rank() int {
	switch h {
	case HealthOK:
		return 0
	case HealthUnknown:
		return 1
	case HealthDegraded:
		return 2
	case HealthUnhealthy:
		return 3
	}
	return 4
}

// Worst returns the worst verdict of the pools and the opcaches, ok for none.
func (r *Report) Worst() Health {
	w := HealthOK
	for _, p := range r.Pools {
		if p.Health.Rank() > w.Rank() {
			w = p.Health
		}
	}
	for _, o := range r.Opcache {
		if o.Health.Rank() > w.Rank() {
			w = o.Health
		}
	}
	return w
}

// PoolReport is one pool's state at one moment.
type PoolReport struct {
	Name string `json:"name"`
	// MasterName names the pool's master (Target.MasterName): with Name,
	// it tells the pool from a pool of the same name under another
	// master, and it stays the same when php-fpm restarts.
	MasterName    string   `json:"master_name"`
	Address       string   `json:"address"`
	StatusAddress string   `json:"status_address,omitempty"`
	Health        Health   `json:"health"`
	Reasons       []string `json:"reasons"`
	// decisive holds the reasons that alone make the verdict (those of
	// its rank): pool-level findings that quote no request, for outputs
	// open to every client (/readyz).
	decisive []string
	// Inconclusive says what fpmguard could not judge and why: reads that
	// timed out while fpmguard itself was starved of CPU. They count for
	// nothing, neither failure nor success.
	Inconclusive []string `json:"inconclusive,omitempty"`
	// Advice holds config lines or steps that would let fpmguard see more.
	Advice    []string      `json:"advice,omitempty"`
	Heartbeat Heartbeat     `json:"heartbeat"`
	Status    StatusRead    `json:"status"`
	Master    *MasterReport `json:"master,omitempty"`
	Counters  *Counters     `json:"counters,omitempty"`
	// Connect says whether fpmguard may connect to the pool's main socket,
	// checked when no request of fpmguard's goes through it (no ping.path,
	// and no status page read there): from the kernel's table of listening
	// sockets and the socket's permissions, or by a bare connection where
	// the table cannot be read.
	Connect *Connect `json:"connect,omitempty"`
	// SocketQueue is the kernel's view of the listen socket's queue.
	SocketQueue *SocketQueue   `json:"socket_queue,omitempty"`
	Config      PoolLimits     `json:"config"`
	Processes   []ProcessState `json:"processes"`
	// ProbeRequests counts the connections fpmguard made to the pool's
	// main socket since it started, up to the status read of this report:
	// php-fpm's "accepted conn" counts them with its users' requests.
	ProbeRequests uint64 `json:"probe_requests"`
	// RequestsPerSecond is the rate of requests php-fpm accepted since
	// the previous probe, fpmguard's own taken away. Absent on a first
	// probe, after php-fpm restarted, and from one-shot commands.
	RequestsPerSecond *float64 `json:"requests_per_second,omitempty"`
	// Waits groups the hung workers by what they wait on, one line each,
	// the largest group first (diagnose.go).
	Waits []WaitGroup `json:"waits,omitempty"`
	// Deaths are the pool's workers that exited lately and why, newest
	// first: serve and run follow php-fpm's error log for them.
	Deaths []WorkerDeath `json:"deaths,omitempty"`

	at time.Time // when the OS view was read
}

// NotProbed is the report of a pool whose probe has not ended: only what
// is true before any probe (its name, address and config), its health
// unknown for the reason why, and a heartbeat and status read that prove
// nothing either way.
func NotProbed(t Target, why string) PoolReport {
	r := PoolReport{Name: t.Name, MasterName: t.MasterName(), Address: t.Address.String(), Health: HealthUnknown, Reasons: []string{why},
		Config:    PoolLimits{PM: t.PM, MaxChildren: t.MaxChildren, MinWorkers: t.MinWorkers},
		Heartbeat: Heartbeat{Skipped: t.PingPath == ""}, Status: StatusRead{Skipped: t.StatusPath == ""},
		ProbeRequests: fastcgi.RequestsSent(t.Address), Processes: []ProcessState{}}
	if !r.Heartbeat.Skipped {
		r.Heartbeat.Inconclusive = why
	}
	if !r.Status.Skipped {
		r.Status.Inconclusive = why
	}
	if !t.StatusAddress.IsZero() {
		r.StatusAddress = t.StatusAddress.String()
	}
	return r
}

// Connect is whether fpmguard may connect to the pool's main socket.
type Connect struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Failure *Failure `json:"failure,omitempty"`
}

// Monitored reports a pool fpmguard can see answer: it has a ping.path or
// a pm.status_path. Without either, all it can do is connect to the
// pool's socket, which proves that something listens, not that a worker
// serves.
func (r *PoolReport) Monitored() bool { return !r.Heartbeat.Skipped || !r.Status.Skipped }

// Failure is a classified FastCGI failure as reported.
type Failure struct {
	Error       string         `json:"error"`
	Reason      fastcgi.Reason `json:"reason"`
	Class       fastcgi.Class  `json:"class"` // 0 for an error that is not FastCGI's: "unknown"
	NginxStatus int            `json:"nginx_status,omitempty"`
	Hint        string         `json:"hint,omitempty"`
	// Misconfigured: a worker answered, so the pool serves; only what
	// fpmguard was told of it is wrong: its ping.path or status path (404
	// or 403), or its ping.response.
	Misconfigured bool `json:"misconfigured,omitempty"`
}

// misconfigured reports an error that is a worker's answer saying the
// pool's settings as fpmguard knows them are wrong.
func misconfigured(fe *fastcgi.Error) bool {
	return fe.Class == fastcgi.ClassNotFound || fe.Class == fastcgi.ClassForbidden || errors.Is(fe, fastcgi.ErrPingResponse)
}

// Heartbeat is the result of the ping through the main socket.
type Heartbeat struct {
	OK             bool     `json:"ok"`
	Skipped        bool     `json:"skipped,omitempty"` // the pool has no ping.path
	LatencySeconds float64  `json:"latency_seconds"`
	Error          string   `json:"error,omitempty"`
	Failure        *Failure `json:"failure,omitempty"`
	// Inconclusive, when set, says why this heartbeat proves nothing: it
	// timed out, or answered late, while fpmguard was starved of CPU, or
	// it was not sent yet (NotProbed). With OK set the pool answered, and
	// only the latency is in doubt.
	Inconclusive string `json:"inconclusive,omitempty"`
	// Idle: not sent, since the ondemand pool had no worker and nothing
	// queued, and a ping would have started one. Its master is alive and
	// its socket listens.
	Idle bool `json:"idle,omitempty"`
	// Via "status page": no ping was sent; the status page, read through
	// the pool's own socket and so served by a worker as a ping is, stood
	// in for it (BeatFromStatus). LatencySeconds is the status read's.
	Via string `json:"via,omitempty"`
	// WaitsBehindHung, when above 0, is the number of workers the status
	// page showed hung, all the pool may have: the ping was not sent, as
	// it could only have waited behind them (BeatFromHung). It failed,
	// with no latency measured.
	WaitsBehindHung int `json:"waits_behind_hung,omitempty"`
}

// Failed reports a heartbeat that failed, and proves it. A misconfigured
// one does not: a worker answered it.
func (h Heartbeat) Failed() bool {
	return !h.OK && !h.Skipped && !h.Idle && h.Inconclusive == "" && !h.Misconfigured()
}

// Up is the heartbeat as a gauge: sent, and not failed. A pool without
// ping.path has no heartbeat, neither up nor down.
func (h Heartbeat) Up() bool { return !h.Skipped && !h.Failed() }

// Misconfigured reports a ping a worker answered, with 404 or 403 or
// another text than ping.response: the pool serves, only its ping.path
// or ping.response is wrong.
func (h Heartbeat) Misconfigured() bool { return h.Failure != nil && h.Failure.Misconfigured }

// StatusRead says whether the status page could be read, and from where.
type StatusRead struct {
	OK      bool     `json:"ok"`
	Skipped bool     `json:"skipped,omitempty"` // the pool has no pm.status_path
	Via     string   `json:"via,omitempty"`     // "status_listen" or "main"
	Error   string   `json:"error,omitempty"`
	Failure *Failure `json:"failure,omitempty"`
	// Inconclusive, when set, says why the read proves nothing: it timed
	// out while fpmguard was starved of CPU, or it was not made yet
	// (NotProbed).
	Inconclusive string `json:"inconclusive,omitempty"`
	// Idle: not read, since the ondemand pool had no worker to answer.
	Idle bool `json:"idle,omitempty"`

	// took is how long the read took: its latency when it stands in for
	// the heartbeat.
	took time.Duration
	// at is when a read that succeeded answered: request durations on the
	// page are true at that moment.
	at time.Time
}

// Failed reports a status read that failed, and proves it.
func (s StatusRead) Failed() bool { return !s.OK && !s.Skipped && !s.Idle && s.Inconclusive == "" }

// MasterReport is the pool's master process.
type MasterReport struct {
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
	Error string `json:"error,omitempty"` // why it could not be found
	// Unknown says why fpmguard cannot tell whether the master is alive:
	// a read failed, or it is still starting. Death needs a witness: the
	// kernel's "no such process", or its pid seen twice on another program.
	Unknown string  `json:"unknown,omitempty"`
	OSState OSState `json:"os_state,omitempty"`
	Config  string  `json:"config,omitempty"`
	// PHPVersion is the PHP version of the master's binary, read from its
	// ELF file; zero (left out of JSON) when it could not be read.
	PHPVersion phpbin.Version `json:"php_version,omitzero"`
	// PSSBytes is the master's proportional memory, read as the workers'
	// is: by serve and run only.
	PSSBytes uint64 `json:"pss_bytes,omitempty"`
	// ExecID changes when the master runs its program anew under the same
	// pid: php-fpm's reload (OSProcess.ExecID). 0 when not known.
	ExecID uint64 `json:"-"`
}

// Gone reports a master known to be dead: not alive, and not unknown.
func (m *MasterReport) Gone() bool { return !m.Alive && m.Unknown == "" }

// Counters are the pool-level numbers of the status page.
type Counters struct {
	ProcessManager     string    `json:"process_manager"`
	StartTime          time.Time `json:"start_time"`
	StartSinceSeconds  int64     `json:"start_since_seconds"`
	AcceptedConn       uint64    `json:"accepted_connections"`
	ListenQueue        int64     `json:"listen_queue"`
	MaxListenQueue     int64     `json:"max_listen_queue"`
	ListenQueueLen     int64     `json:"listen_queue_length"`
	IdleProcesses      int64     `json:"idle_processes"`
	ActiveProcesses    int64     `json:"active_processes"`
	TotalProcesses     int64     `json:"total_processes"`
	MaxActiveProcesses int64     `json:"max_active_processes"`
	MaxChildrenReached uint64    `json:"max_children_reached"`
	SlowRequests       uint64    `json:"slow_requests"`
	MemoryPeakBytes    int64     `json:"memory_peak_bytes,omitempty"`
}

// PoolLimits is what the pool's config promises, where known.
type PoolLimits struct {
	PM          string `json:"pm,omitempty"`
	MaxChildren int    `json:"max_children,omitempty"`
	MinWorkers  int    `json:"min_workers,omitempty"`
}

// ProcessState is one worker: php-fpm's view and the kernel's side by side.
type ProcessState struct {
	PID                    int     `json:"pid"`
	State                  string  `json:"state"`
	OSState                OSState `json:"os_state"`
	ParentOK               bool    `json:"parent_ok"` // its parent is the pool's master
	RequestDurationSeconds float64 `json:"request_duration_seconds"`
	RequestMethod          string  `json:"request_method"`
	RequestURI             string  `json:"request_uri"`
	Script                 string  `json:"script"`
	Requests               uint64  `json:"requests"`
	LastRequestCPU         float64 `json:"last_request_cpu_percent"`
	LastRequestMemory      int64   `json:"last_request_memory_bytes"`
	CPUSeconds             float64 `json:"cpu_seconds"`
	RSSBytes               uint64  `json:"rss_bytes"`
	// PSSBytes is the proportional set size: RSS with shared pages (the
	// opcache segment) divided among the processes sharing them. Read by
	// serve and run only.
	PSSBytes uint64 `json:"pss_bytes,omitempty"`
	Hung     bool   `json:"hung"`
	// HungKind tells a hung worker's last interval. Only the watch loop
	// knows it.
	HungKind HungKind `json:"hung_kind,omitempty"`
	// Wait is what the worker waits for (package waits): read for a hung
	// worker, and for one whose request is older than the slowlog's
	// timeout or half of --hung-after; never for the others.
	Wait *waits.Wait `json:"wait,omitempty"`
	// Stack is the worker's PHP stack, read for a hung worker only.
	Stack *Stack `json:"stack,omitempty"`
	// SlowlogTrace is the top of php-fpm's slowlog backtrace of the
	// request in flight, when the slowlog has one: "sleep()
	// /var/www/report.php:3", innermost first. Client text.
	SlowlogTrace []string `json:"slowlog_trace,omitempty"`

	parent     int    // the OS parent pid
	startTicks uint64 // the OS start time, to tell a reused pid apart
	onCPU      time.Duration
	runQueue   time.Duration

	// probeRequest marks a worker serving one of fpmguard's probes
	// (Target.IsProbe): not load.
	probeRequest bool
}

// Serving reports a worker busy with a request that is not one of
// fpmguard's own probes: load.
func (p ProcessState) Serving() bool { return p.State != fastcgi.StateIdle && !p.probeRequest }

// HungKind tells what a hung worker did over the last interval.
type HungKind string

// The hung kinds.
const (
	// HungSpinning: on a CPU, or waiting for one, most of the time.
	HungSpinning HungKind = "spinning"
	// HungBlocked: waiting on I/O, a lock, a remote service.
	HungBlocked HungKind = "blocked"
)

// HungKinds lists every hung kind, for metrics.
var HungKinds = []HungKind{HungBlocked, HungSpinning}

// Age is the request's age for a busy worker, or its last request's
// length for an idle one. It prints for people, as every duration does.
func (p *ProcessState) Age() human.Duration {
	return human.Duration(p.RequestDurationSeconds * float64(time.Second))
}

// Parent is the worker's parent pid, as the OS said.
func (p *ProcessState) Parent() int { return p.parent }

// StartTicks is when the worker started, in ticks since boot: with its pid
// it names one process, so a reused pid is told apart.
func (p *ProcessState) StartTicks() uint64 { return p.startTicks }

// ProbeRequest reports a worker serving one of fpmguard's probes: a status
// or ping request, or the opcache script; not load.
func (p *ProcessState) ProbeRequest() bool { return p.probeRequest }

// Idle reports a worker php-fpm calls idle: its request duration is its
// last request's, not the age of one in flight.
func (p *ProcessState) Idle() bool { return p.State == fastcgi.StateIdle }

// StripQuery removes the query string (and fragment) from a request URI:
// queries carry tokens and session ids.
func StripQuery(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		return uri[:i]
	}
	return uri
}

// OwnRequest reports a last request URI an idle worker of t shows that may
// be one of fpmguard's own: a probe (Target.IsProbe), or none at all
// ("-"), which is what php-fpm shows for a ping and for a bare connect.
func OwnRequest(t Target, uri string) bool {
	uri = StripQuery(uri)
	return uri == "" || uri == "-" || t.IsProbe(uri)
}

// Busy counts the workers serving a request, not counting fpmguard's own
// probes, and all workers.
func (r *PoolReport) Busy() (busy, total int) {
	for _, p := range r.Processes {
		if !p.Idle() && !p.probeRequest {
			busy++
		}
	}
	return busy, len(r.Processes)
}

// HungCount counts the workers marked hung.
func (r *PoolReport) HungCount() int {
	n := 0
	for _, p := range r.Processes {
		if p.Hung {
			n++
		}
	}
	return n
}

// Queue is the listen queue of the pool's users as far as it is known: the
// kernel's count, or php-fpm's (which is 0 on unix sockets), less
// fpmguard's own connections that may have been waiting there. It is the
// one figure every verdict and output of a pool's queue uses.
func (r *PoolReport) Queue() int64 {
	var q int64
	if r.Counters != nil {
		q = r.Counters.ListenQueue
	}
	if sq := r.SocketQueue; sq != nil {
		q = max(0, max(q, sq.Length)-sq.Own)
	}
	return q
}

// Waiting is the listen queue as a finding: Queue, unless the status page,
// read after the queue, shows a worker idle. An idle worker takes a
// waiting connection at once, so a queue beside one is the moment between
// a client's connect and a worker's accept, not requests waiting for a
// worker: judged, it made a healthy pool flap to degraded and back.
func (r *PoolReport) Waiting() int64 {
	if r.Status.OK && r.AnyIdle() {
		return 0
	}
	return r.Queue()
}

// AnyIdle says whether the status page shows a worker php-fpm calls Idle:
// one waiting in accept(), not one serving fpmguard's own request.
func (r *PoolReport) AnyIdle() bool {
	return slices.ContainsFunc(r.Processes, func(p ProcessState) bool { return p.Idle() })
}

// Saturated: no idle worker, and more requests waiting than allowed.
func (r *PoolReport) Saturated(maxQueue int64) bool {
	if !r.Status.OK {
		return false
	}
	busy, total := r.Busy()
	return total > 0 && busy == total && r.Queue() > maxQueue
}

// Summary says in a few words why the pool may be failing its clients
// now, for the events that report nginx's failures.
func (r *PoolReport) Summary() string {
	if r.Master != nil && r.Master.Gone() {
		return "the master is gone"
	}
	var uris []string
	kinds := map[HungKind]bool{}
	hung := 0
	for _, p := range r.Processes {
		if p.Hung {
			hung++
			if !slices.Contains(uris, p.RequestURI) {
				uris = append(uris, p.RequestURI)
			}
			kinds[p.HungKind] = true
		}
	}
	busy, total := r.Busy()
	switch {
	case len(r.Waits) > 0:
		// What the hung workers wait on says more than where they hang.
		s := r.Waits[0].Line
		if n := len(r.Waits) - 1; n > 0 {
			s += fmt.Sprintf(" (+%d more causes)", n)
		}
		return s
	case hung > 0:
		var ks []string
		for k := range kinds {
			if k != "" {
				ks = append(ks, string(k))
			}
		}
		sort.Strings(ks)
		return fmt.Sprintf("%d of %d workers hung in %s (%s)", hung, total, strings.Join(uris, ", "), strings.Join(ks, ", "))
	case total > 0 && busy == total:
		return fmt.Sprintf("all %d workers busy, listen queue %d", total, r.Queue())
	case !r.Heartbeat.OK && r.Heartbeat.Error != "":
		return r.Heartbeat.Error
	}
	return fmt.Sprintf("%d of %d workers busy now", busy, total)
}

// DecisiveReasons are the reasons that alone make the pool's verdict, those
// of its rank. They are pool-level findings (a failed heartbeat, a dead
// master, every worker hung) and never quote a request: a worker's URI is
// only ever a degraded finding beside them.
func (r *PoolReport) DecisiveReasons() []string { return r.decisive }
