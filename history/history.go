// Package history keeps a bounded window of what the watcher saw of each
// pool and of each master's opcache: the evidence `fpmguard advise` turns
// into settings. It reads supervisor's reports and fastcgi's vocabulary of
// worker states; it must not import watch, web or advise, which feed it
// and read it.
package history

import (
	"strconv"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor"
)

// The window: 24 hours in buckets of 10 minutes. A bucket keeps maxima,
// sums and small histograms, never samples, so a pool's memory is fixed
// whatever the interval: BucketBytes × Buckets at most, reached after a
// day (see TestMemoryCost).
const (
	BucketWidth = 10 * time.Minute
	Buckets     = 144
)

// History is every pool's window and every master's opcache window. It is
// safe for concurrent use: each pool's loop adds, HTTP handlers read.
type History struct {
	mu      sync.Mutex
	pools   map[supervisor.PoolID]*pool // two pools of one name under two masters are two
	opcache map[string]*opcacheWindow   // by master name
}

// New returns an empty history.
func New() *History {
	return &History{pools: map[supervisor.PoolID]*pool{}, opcache: map[string]*opcacheWindow{}}
}

// pool is one pool's window and what the next sample is compared with.
type pool struct {
	target  supervisor.Target
	buckets ring[Bucket]
	workers map[int]*workerSeen // by pid
	// growth holds the PSS growth per request of workers that are gone,
	// newest last, at most maxGone.
	gone      []Growth
	accepted  uint64 // the status page's counters at the last sample
	reached   uint64
	probes    uint64 // fpmguard's connections to the pool as of accepted
	counters  bool   // accepted, reached and probes are set
	master    string // the master's name: pools of one master share its memory
	masterPID int
	// What the workers and the master use at the last sample.
	pssNow, masterPSSNow uint64
	firstAt              time.Time
	lastAt               time.Time
	samples              uint64
}

// workerSeen is what a worker looked like at its last sample, and at the
// first one where its PSS was known.
type workerSeen struct {
	requests uint64
	cpu      float64
	busy     bool
	at       time.Time
	sample   uint64   // the pool's sample it was last seen in
	pss      uint64   // the PSS figure at the last sample
	first    pssPoint // first idle sample with PSS
	last     pssPoint // latest idle sample with PSS
}

type pssPoint struct {
	requests uint64
	pssBytes uint64
}

const maxGone = 64

// AddPool records one probe of the pool t as r, made at now. A probe that
// saw nothing (the status page could not be read) is left out.
func (h *History) AddPool(t supervisor.Target, r *supervisor.PoolReport, now time.Time) {
	if r.Counters == nil && !r.Heartbeat.Idle {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pools[t.ID()]
	if p == nil {
		p = &pool{workers: map[int]*workerSeen{}}
		h.pools[t.ID()] = p
	}
	p.target, p.master = t, t.MasterName()
	p.add(r, now)
}

// RemovePool forgets the pool t: it is no longer watched (php-fpm's
// config dropped it), so its window no longer counts for advice, in
// particular its workers' peak in the memory budget of the pools that
// remain. The opcache window of its master goes with its last pool.
func (h *History) RemovePool(t supervisor.Target) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pools[t.ID()]
	if p == nil {
		return
	}
	delete(h.pools, t.ID())
	for _, o := range h.pools {
		if o.master == p.master {
			return
		}
	}
	delete(h.opcache, p.master)
}

func (p *pool) add(r *supervisor.PoolReport, now time.Time) {
	b := p.buckets.at(now)
	b.Samples++
	p.samples++
	if p.firstAt.IsZero() {
		p.firstAt = now
	}
	// What php-fpm accepted since the last sample, less fpmguard's own
	// connections: its users' requests.
	var accepted uint64
	if c := r.Counters; c != nil {
		if p.counters && c.AcceptedConn >= p.accepted && c.MaxChildrenReached >= p.reached && r.ProbeRequests >= p.probes {
			accepted = (c.AcceptedConn - p.accepted) - min(c.AcceptedConn-p.accepted, r.ProbeRequests-p.probes)
			b.Accepted += uint32(min(accepted, 0xffffffff))
			b.MaxChildrenReached += uint32(min(c.MaxChildrenReached-p.reached, 0xffffffff))
		}
		p.accepted, p.reached, p.probes, p.counters = c.AcceptedConn, c.MaxChildrenReached, r.ProbeRequests, true
	}
	busy, probes, workers := 0, 0, len(r.Processes)
	var pssMax, pssSum, rssSum uint64
	var rssN int
	for i := range r.Processes {
		w := &r.Processes[i]
		serving := w.Serving()
		if w.State != fastcgi.StateIdle && !serving {
			probes++
		}
		if serving {
			busy++
			b.SlowestRunningSeconds = max(b.SlowestRunningSeconds, float32(w.RequestDurationSeconds))
		}
		pssMax = max(pssMax, w.PSSBytes)
		pssSum += w.PSSBytes
		if w.RSSBytes > 0 {
			rssSum += w.RSSBytes
			rssN++
		}
		// A duration is a user's only when users' requests were served
		// since the last sample: fpmguard's own ping shows as "-", which
		// no filter on URIs can tell from any other request without one.
		p.worker(b, w, serving, accepted > 0, now)
	}
	for pid, ws := range p.workers {
		if ws.sample != p.samples {
			// Not in this sample: the worker is gone.
			if g, ok := ws.growth(); ok {
				p.gone = append(p.gone, g)
				if len(p.gone) > maxGone {
					p.gone = p.gone[1:]
				}
			}
			delete(p.workers, pid)
		}
	}
	queue := r.Queue()
	if queue > 0 {
		// A worker serving fpmguard's probe took the place of a request
		// that waits: under load, it is busy too.
		busy += probes
	}
	b.Busy.add(busy)
	b.BusyMax = max(b.BusyMax, uint16(min(busy, 0xffff)))
	b.WorkersMax = max(b.WorkersMax, uint16(min(workers, 0xffff)))
	if busy == 0 && accepted == 0 {
		// Nothing running, and nothing served since the last sample but
		// fpmguard's own requests.
		b.IdleSamples++
	}
	p.pssNow = pssSum
	if pssMax > 0 {
		b.WorkerPSSMaxKiB = max(b.WorkerPSSMaxKiB, kib(pssMax))
	}
	if rssN > 0 {
		b.WorkerRSSSumKiB += uint64(kib(rssSum / uint64(rssN)))
		b.WorkerRSSSamples++
	}
	p.masterPSSNow = 0
	if m := r.Master; m != nil && m.PSSBytes > 0 {
		p.masterPSSNow = m.PSSBytes
		b.MasterPSSMaxKiB = max(b.MasterPSSMaxKiB, kib(m.PSSBytes))
	}
	if queue > 0 {
		b.QueueSamples++
		b.QueueMax = max(b.QueueMax, uint32(min(queue, 0xffffffff)))
	}
	p.lastAt = now
	if r.Master != nil && r.Master.Alive {
		p.masterPID = r.Master.PID
	}
}

// worker folds one worker's sample into b: a request it finished since the
// last sample (when users' requests were served: users), its CPU while
// busy, and its PSS against requests served.
func (p *pool) worker(b *Bucket, w *supervisor.ProcessState, serving, users bool, now time.Time) {
	ws := p.workers[w.PID]
	if ws == nil || w.Requests < ws.requests {
		// A new worker, or a new process under a reused pid.
		ws = &workerSeen{}
		p.workers[w.PID] = ws
	} else {
		idle := w.State == fastcgi.StateIdle
		if idle && users && w.Requests > ws.requests && !supervisor.OwnRequest(p.target, w.RequestURI) {
			// The status page shows the duration of an idle worker's last
			// request: one of those it served since the last sample.
			b.Durations.add(w.RequestDurationSeconds)
		}
		if serving && ws.busy && !ws.at.IsZero() && w.CPUSeconds >= ws.cpu {
			b.BusyCPUSeconds += float32(w.CPUSeconds - ws.cpu)
			b.BusyWallSeconds += float32(now.Sub(ws.at).Seconds())
		}
	}
	ws.requests, ws.cpu, ws.busy, ws.at, ws.sample = w.Requests, w.CPUSeconds, serving, now, p.samples
	// The prober reads PSS again only every few seconds: a point counts
	// when the figure is fresh (it changed), and taken while the worker
	// serves no request but fpmguard's: between requests.
	fresh := w.PSSBytes != ws.pss
	ws.pss = w.PSSBytes
	if fresh && !serving && w.PSSBytes > 0 {
		pt := pssPoint{w.Requests, w.PSSBytes}
		if ws.first.pssBytes == 0 {
			ws.first = pt
		}
		ws.last = pt
	}
}

// Growth is a worker's PSS growth between two idle moments.
type Growth struct {
	Requests      uint64  `json:"requests"`
	BytesPerReq   float64 `json:"bytes_per_request"`
	FromPSSBytes  uint64  `json:"from_pss_bytes"`
	ToPSSBytes    uint64  `json:"to_pss_bytes"`
	FromRequestNo uint64  `json:"from_request"`
}

// minGrowthRequests is how many requests a worker must have served between
// two PSS readings for its growth to count: fewer is noise.
const minGrowthRequests = 10

func (ws *workerSeen) growth() (Growth, bool) {
	n := ws.last.requests - ws.first.requests
	if ws.first.pssBytes == 0 || n < minGrowthRequests {
		return Growth{}, false
	}
	return Growth{Requests: n, BytesPerReq: (float64(ws.last.pssBytes) - float64(ws.first.pssBytes)) / float64(n),
		FromPSSBytes: ws.first.pssBytes, ToPSSBytes: ws.last.pssBytes, FromRequestNo: ws.first.requests}, true
}

// AddOpcache records an opcache read of each master.
func (h *History) AddOpcache(reports []supervisor.OpcacheReport, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range reports {
		o := &reports[i]
		if o.Error != "" || !o.Enabled || o.Inconclusive != "" {
			continue
		}
		name := o.Master
		if name == "" {
			name = "master " + strconv.Itoa(o.MasterPID)
		}
		w := h.opcache[name]
		if w == nil {
			w = &opcacheWindow{}
			h.opcache[name] = w
		}
		w.add(o, now)
	}
}

func kib(b uint64) uint32 { return uint32(min(b>>10, 0xffffffff)) }
