package history

import (
	"slices"
	"sort"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

// Summary is the window as figures: what advice is computed from.
type Summary struct {
	Pools   []PoolSummary    `json:"pools"`
	Opcache []OpcacheSummary `json:"opcache"`
}

// PoolSummary is one pool's window.
type PoolSummary struct {
	Pool        string `json:"pool"`
	Master      string `json:"master"` // its master's name (supervisor.Target.MasterName): pools of one master share its memory and opcache
	MasterPID   int    `json:"master_pid,omitempty"`
	PM          string `json:"pm"`
	MaxChildren int    `json:"max_children"`
	// The pool's timeouts as configured, 0 when unset or not known.
	RequestTerminateTimeoutSeconds float64 `json:"request_terminate_timeout_seconds,omitempty"`
	RequestSlowlogTimeoutSeconds   float64 `json:"request_slowlog_timeout_seconds,omitempty"`
	// Slowlog is the pool's slowlog file, "" when unset or not known:
	// php-fpm takes request_slowlog_timeout only with one.
	Slowlog string    `json:"slowlog,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Samples uint64    `json:"samples"`

	// Workers serving requests (fpmguard's probes left out): percentiles
	// are upper bounds of a histogram's bins, never above the maximum.
	BusyP50   int     `json:"busy_p50"`
	BusyP95   int     `json:"busy_p95"`
	BusyP99   int     `json:"busy_p99"`
	BusyMax   int     `json:"busy_max"`
	BusyMean  float64 `json:"busy_mean"`
	IdleShare float64 `json:"idle_share"` // of samples, with no request served
	// IdleBuckets is the share of 10-minute buckets without a request.
	IdleBuckets float64 `json:"idle_buckets"`
	WorkersMax  int     `json:"workers_max"`

	QueueMax           int64   `json:"queue_max"`
	QueueShare         float64 `json:"queue_share"` // of samples, with a request waiting
	MaxChildrenReached uint64  `json:"max_children_reached"`
	Accepted           uint64  `json:"accepted"`

	Requests              uint64  `json:"requests_timed"` // finished requests whose duration was seen
	DurationP50Seconds    float64 `json:"duration_p50_seconds"`
	DurationP95Seconds    float64 `json:"duration_p95_seconds"`
	DurationP99Seconds    float64 `json:"duration_p99_seconds"`
	DurationMaxSeconds    float64 `json:"duration_max_seconds"`
	SlowestRunningSeconds float64 `json:"slowest_running_seconds"`

	// WorkerPSSHighBytes is the 95th percentile of the 10-minute peaks of
	// worker PSS: one outlier minute does not set it.
	WorkerPSSHighBytes uint64 `json:"worker_pss_high_bytes"`
	WorkerPSSMaxBytes  uint64 `json:"worker_pss_max_bytes"`
	WorkerRSSMeanBytes uint64 `json:"worker_rss_mean_bytes"`
	MasterPSSMaxBytes  uint64 `json:"master_pss_max_bytes"`
	// What the workers and the master use at the last sample.
	WorkersPSSNowBytes uint64 `json:"workers_pss_now_bytes"`
	MasterPSSNowBytes  uint64 `json:"master_pss_now_bytes"`

	// BusyCPUShare is CPU time over busy time: near 1 the busy workers
	// spin, near 0 they wait. -1 when no worker was seen busy twice.
	BusyCPUShare float64 `json:"busy_cpu_share"`

	// Growth is each worker's PSS growth per request served, the ones
	// gone and the ones alive; GrowthMedian is their median.
	Growth       []Growth `json:"growth,omitempty"`
	GrowthMedian float64  `json:"growth_median_bytes_per_request"`
}

// ID is the pool's identity: pools of one name under two masters are two.
func (p PoolSummary) ID() supervisor.PoolID { return supervisor.PoolID{Pool: p.Pool, Master: p.Master} }

// Seconds is how long the window covers.
func (p PoolSummary) Seconds() float64 { return p.To.Sub(p.From).Seconds() }

// OpcacheSummary is one master's opcache over the window.
type OpcacheSummary struct {
	Master    string    `json:"master"`
	MasterPID int       `json:"master_pid"`
	Pools     []string  `json:"pools"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Samples   uint64    `json:"samples"`

	UsedWastedMaxBytes     int64 `json:"used_wasted_max_bytes"`
	MemoryConsumptionBytes int64 `json:"memory_consumption_bytes"`
	// PoolMemoryConsumptionBytes: a pool's own opcache.memory_consumption,
	// which php-fpm ignores (0: none).
	PoolMemoryConsumptionBytes int64 `json:"pool_memory_consumption_bytes,omitempty"`
	KeysMax                    int64 `json:"keys_max"`
	ScriptsMax                 int64 `json:"scripts_max"`
	MaxCachedKeys              int64 `json:"max_cached_keys"`
	MaxAcceleratedFiles        int64 `json:"max_accelerated_files"`
	InternedUsedMaxBytes       int64 `json:"interned_used_max_bytes"`
	InternedBufferBytes        int64 `json:"interned_buffer_bytes"`
	CacheFull                  bool  `json:"cache_full"`
	OOMRestarts                int64 `json:"oom_restarts"` // in the window
	HashRestarts               int64 `json:"hash_restarts"`
	// Since the opcache started, which may be before the window.
	OOMRestartsSinceStart  int64 `json:"oom_restarts_since_start"`
	HashRestartsSinceStart int64 `json:"hash_restarts_since_start"`
	Hits                   int64 `json:"hits"`
	Misses                 int64 `json:"misses"`

	ValidateTimestamps    bool    `json:"validate_timestamps"`
	RevalidateFreqSeconds int64   `json:"revalidate_freq_seconds"`
	JITEnabled            bool    `json:"jit_enabled"`
	JITBufferBytes        int64   `json:"jit_buffer_bytes"`
	JITFillMax            float64 `json:"jit_fill_max"`
}

// Summary returns the window of every pool, in name order, and of every
// master's opcache.
func (h *History) Summary() *Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Summary{Pools: []PoolSummary{}, Opcache: []OpcacheSummary{}}
	for _, p := range h.pools {
		s.Pools = append(s.Pools, p.summary())
	}
	sort.Slice(s.Pools, func(i, j int) bool { return s.Pools[i].ID().Compare(s.Pools[j].ID()) < 0 })
	for name, w := range h.opcache {
		s.Opcache = append(s.Opcache, w.summary(name))
	}
	sort.Slice(s.Opcache, func(i, j int) bool { return s.Opcache[i].Master < s.Opcache[j].Master })
	return s
}

func (p *pool) summary() PoolSummary {
	t := p.target
	s := PoolSummary{Pool: t.Name, Master: p.master, MasterPID: p.masterPID, PM: t.PM, MaxChildren: t.MaxChildren,
		From: p.firstAt, To: p.lastAt, Samples: p.samples, BusyCPUShare: -1,
		WorkersPSSNowBytes: p.pssNow, MasterPSSNowBytes: p.masterPSSNow,
		RequestTerminateTimeoutSeconds: t.RequestTerminateTimeout.Seconds(), RequestSlowlogTimeoutSeconds: t.RequestSlowlogTimeout.Seconds(), Slowlog: t.Slowlog}
	if len(p.buckets.b) == 0 {
		return s
	}
	s.From = later(s.From, time.Unix(p.buckets.starts[0], 0))
	var busy BusyHistogram
	var durations DurationHistogram
	var samples, idle, queued, rssN uint64
	var busySum, rssSum uint64
	var cpu, wall float64
	var idleBuckets int
	peaks := make([]uint32, 0, len(p.buckets.b))
	for i := range p.buckets.b {
		b := &p.buckets.b[i]
		for j, c := range b.Busy {
			busy[j] += c
			busySum += uint64(c) * uint64(min(busyBinMax[j], int(b.BusyMax)))
		}
		durations.merge(&b.Durations)
		samples += uint64(b.Samples)
		idle += uint64(b.IdleSamples)
		if b.IdleSamples == b.Samples {
			idleBuckets++
		}
		queued += uint64(b.QueueSamples)
		s.BusyMax = max(s.BusyMax, int(b.BusyMax))
		s.WorkersMax = max(s.WorkersMax, int(b.WorkersMax))
		s.QueueMax = max(s.QueueMax, int64(b.QueueMax))
		s.MaxChildrenReached += uint64(b.MaxChildrenReached)
		s.Accepted += uint64(b.Accepted)
		s.SlowestRunningSeconds = max(s.SlowestRunningSeconds, float64(b.SlowestRunningSeconds))
		if b.WorkerPSSMaxKiB > 0 {
			peaks = append(peaks, b.WorkerPSSMaxKiB)
		}
		rssSum += b.WorkerRSSSumKiB
		rssN += uint64(b.WorkerRSSSamples)
		s.MasterPSSMaxBytes = max(s.MasterPSSMaxBytes, uint64(b.MasterPSSMaxKiB)<<10)
		cpu += float64(b.BusyCPUSeconds)
		wall += float64(b.BusyWallSeconds)
	}
	if samples > 0 {
		s.IdleShare = float64(idle) / float64(samples)
		s.QueueShare = float64(queued) / float64(samples)
		s.BusyMean = float64(busySum) / float64(samples)
		s.BusyP50 = min(busy.quantile(0.50), s.BusyMax)
		s.BusyP95 = min(busy.quantile(0.95), s.BusyMax)
		s.BusyP99 = min(busy.quantile(0.99), s.BusyMax)
	}
	s.IdleBuckets = float64(idleBuckets) / float64(len(p.buckets.b))
	s.Requests = durations.count()
	s.DurationP50Seconds = durations.quantile(0.50)
	s.DurationP95Seconds = durations.quantile(0.95)
	s.DurationP99Seconds = durations.quantile(0.99)
	s.DurationMaxSeconds = float64(durations.MaxSeconds)
	if len(peaks) > 0 {
		slices.Sort(peaks)
		s.WorkerPSSMaxBytes = uint64(peaks[len(peaks)-1]) << 10
		s.WorkerPSSHighBytes = uint64(peaks[(len(peaks)-1)*95/100]) << 10
	}
	if rssN > 0 {
		s.WorkerRSSMeanBytes = rssSum / rssN << 10
	}
	if wall > 0 {
		s.BusyCPUShare = min(1, cpu/wall)
	}
	s.Growth = append(s.Growth, p.gone...)
	for _, ws := range p.workers {
		if g, ok := ws.growth(); ok {
			s.Growth = append(s.Growth, g)
		}
	}
	if len(s.Growth) > 0 {
		rates := make([]float64, len(s.Growth))
		for i, g := range s.Growth {
			rates[i] = g.BytesPerReq
		}
		slices.Sort(rates)
		s.GrowthMedian = rates[len(rates)/2]
	}
	return s
}

func (w *opcacheWindow) summary(name string) OpcacheSummary {
	o := w.last
	s := OpcacheSummary{Master: name, MasterPID: o.MasterPID, Pools: o.Pools,
		MemoryConsumptionBytes: o.MemoryConsumptionBytes, PoolMemoryConsumptionBytes: o.PoolMemoryConsumptionBytes, MaxCachedKeys: o.MaxCachedKeys, MaxAcceleratedFiles: o.MaxAcceleratedFiles,
		InternedBufferBytes: o.InternedStringsBufferBytes, CacheFull: o.CacheFull,
		ValidateTimestamps: o.ValidateTimestamps, RevalidateFreqSeconds: o.RevalidateFreqSeconds,
		JITEnabled: o.JITEnabled, JITBufferBytes: o.JITBufferSizeBytes}
	s.From, s.To = w.firstAt, w.lastAt
	if len(w.buckets.b) > 0 {
		s.From = later(s.From, time.Unix(w.buckets.starts[0], 0))
	}
	s.OOMRestartsSinceStart, s.HashRestartsSinceStart = o.OOMRestarts, o.HashRestarts
	for i := range w.buckets.b {
		b := &w.buckets.b[i]
		s.Samples += uint64(b.Samples)
		s.UsedWastedMaxBytes = max(s.UsedWastedMaxBytes, b.UsedWastedMax)
		s.KeysMax = max(s.KeysMax, b.KeysMax)
		s.ScriptsMax = max(s.ScriptsMax, b.ScriptsMax)
		s.InternedUsedMaxBytes = max(s.InternedUsedMaxBytes, b.InternedUsedMax)
		s.JITFillMax = max(s.JITFillMax, b.JITFillMax)
		s.OOMRestarts += b.OOMRestarts
		s.HashRestarts += b.HashRestarts
		s.Hits += b.Hits
		s.Misses += b.Misses
	}
	return s
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
