// Package advise turns a window of history into php-fpm and opcache
// settings, each with the figures behind it. Advice is text: nothing here
// changes a config or a process. It reads history (and supervisor's pool
// identity), and writes through human and termsafe; it must not import
// watch, web or the command.
package advise

import (
	"fmt"
	"math"
	"time"

	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
)

// Advice is the settings for every pool and opcache, and the memory
// budget they share.
type Advice struct {
	Time    time.Time       `json:"time"`
	Memory  Memory          `json:"memory"`
	Pools   []PoolAdvice    `json:"pools"`
	Opcache []OpcacheAdvice `json:"opcache"`
}

// PoolAdvice is one pool's settings.
type PoolAdvice struct {
	Pool   string `json:"pool"`
	Master string `json:"master"`
	PM     string `json:"pm"`
	Window Window `json:"window"`
	Lines  []Line `json:"lines"`
	// RSSFormula is what the usual script would say: the budget divided by
	// the mean worker RSS, which counts shared memory in every worker.
	RSSFormula int `json:"rss_formula_max_children,omitempty"`
	// WorkerBudgetBytes is this pool's share of the budget for workers.
	WorkerBudgetBytes uint64   `json:"worker_budget_bytes"`
	Confidence        string   `json:"confidence"`
	Notes             []string `json:"notes,omitempty"`
	// NotAdvised says why the window is too small for settings: then
	// Lines is empty and Evidence holds what was seen.
	NotAdvised string   `json:"not_advised,omitempty"`
	Evidence   []string `json:"evidence,omitempty"`
}

// Window is what the advice is based on.
type Window struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Seconds  float64   `json:"seconds"`
	Samples  uint64    `json:"samples"`
	Requests uint64    `json:"requests"`
}

// Line is one setting: a php-fpm or php.ini directive, or an fpmguard flag.
type Line struct {
	Directive string   `json:"directive"`
	Value     string   `json:"value"`
	Current   string   `json:"current,omitempty"` // "" when not known
	Change    Change   `json:"change"`
	Evidence  []string `json:"evidence"`
	Flag      bool     `json:"flag,omitempty"` // an fpmguard flag, not a config line
}

// Change says how a line compares with the current setting.
type Change string

// The changes.
const (
	Keep  Change = "keep"
	Raise Change = "raise"
	Lower Change = "lower"
	Set   Change = "set"    // the current value is not known
	Other Change = "change" // a different word: pm = ondemand for static
)

func change(cur, want int) Change {
	switch {
	case cur <= 0:
		return Set
	case want > cur:
		return Raise
	case want < cur:
		return Lower
	}
	return Keep
}

// Compute advises every pool and opcache of s within the budget m.
func Compute(s *history.Summary, m Memory, now time.Time) *Advice {
	a := &Advice{Time: now, Memory: m, Pools: []PoolAdvice{}, Opcache: []OpcacheAdvice{}}
	shares := workerBudgets(s, m)
	for _, p := range s.Pools {
		a.Pools = append(a.Pools, advisePool(p, shares[p.ID()], m))
	}
	served := map[supervisor.PoolID]uint64{}
	for _, p := range s.Pools {
		served[p.ID()] = p.Accepted
	}
	for _, o := range s.Opcache {
		// What the cache needs shows only while its pools serve: its
		// master's pools, not others of the same name.
		var requests uint64
		for _, name := range o.Pools {
			requests += served[supervisor.PoolID{Pool: name, Master: o.Master}]
		}
		a.Opcache = append(a.Opcache, adviseOpcache(o, requests))
	}
	return a
}

// workerBudgets is, for each pool, the budget left for its workers once
// every master's PSS and opcache segment is counted once, and the other
// pools' workers at their peak (their most workers times their PSS).
func workerBudgets(s *history.Summary, m Memory) map[supervisor.PoolID]uint64 {
	left := float64(m.BudgetBytes)
	masters := map[string]bool{}
	for _, p := range s.Pools {
		if !masters[p.Master] {
			masters[p.Master] = true
			left -= float64(p.MasterPSSMaxBytes)
		}
	}
	for _, o := range s.Opcache {
		left -= float64(o.MemoryConsumptionBytes + o.JITBufferBytes)
	}
	peak := func(p history.PoolSummary) float64 { return float64(p.WorkersMax) * float64(p.WorkerPSSHighBytes) }
	all := 0.0
	for _, p := range s.Pools {
		all += peak(p)
	}
	out := map[supervisor.PoolID]uint64{}
	for _, p := range s.Pools {
		if mine := left - (all - peak(p)); mine > 0 {
			out[p.ID()] = uint64(mine)
		}
	}
	return out
}

// Thresholds of the pool advice.
const (
	// queuedShare is the share of samples with a request waiting from
	// which a pool whose workers were all busy is too small.
	queuedShare = 0.01
	// spinning is the CPU share of busy time from which requests are
	// CPU-bound: more workers than CPUs then only queue in the kernel.
	spinning = 0.7
	// leakBytesPerRequest is the median PSS growth per request from which
	// pm.max_requests is advised.
	leakBytesPerRequest = 32 << 10
	// minWindow and minRequests are the least a window must cover for a
	// pool's settings: below, its traffic's shape, its concurrency and
	// its durations say nothing yet, and advise shows its evidence
	// without a line to paste. The window counts to the second, as it
	// is printed: sampling for 15s covers 15s.
	minWindow   = 15 * time.Second
	minRequests = 50
)

// tooLittle says why p's window is too small for settings, "" when it is
// not. Its requests are its users': fpmguard's own are not counted.
func tooLittle(p history.PoolSummary) string {
	span := time.Duration(p.Seconds() * float64(time.Second)).Round(time.Second)
	if span >= minWindow && p.Accepted >= minRequests {
		return ""
	}
	return fmt.Sprintf("no settings: %d requests in %s, and settings need at least %d over at least %s; sample longer (--duration), or under load",
		p.Accepted, human.Duration(span), minRequests, human.Duration(minWindow))
}

func advisePool(p history.PoolSummary, workerBudget uint64, m Memory) PoolAdvice {
	pa := PoolAdvice{Pool: p.Pool, Master: p.Master, PM: p.PM, WorkerBudgetBytes: workerBudget,
		Window: Window{From: p.From, To: p.To, Seconds: p.Seconds(), Samples: p.Samples, Requests: p.Accepted}}
	if p.WorkerRSSMeanBytes > 0 {
		pa.RSSFormula = int(m.BudgetBytes / p.WorkerRSSMeanBytes)
	}
	want, line := maxChildren(p, workerBudget, m, pa.RSSFormula)
	pa.Lines = append(pa.Lines, pmLines(p, want)...)
	pa.Lines = append(pa.Lines, line)
	if l, ok := maxRequests(p); ok {
		pa.Lines = append(pa.Lines, l)
	}
	lines, notes := timeouts(p)
	pa.Lines = append(pa.Lines, lines...)
	pa.Confidence = confidence(p)
	if why := tooLittle(p); why != "" {
		pa.NotAdvised, pa.Evidence, pa.Lines = why, windowEvidence(p), []Line{}
		return pa
	}
	pa.Notes = append(pa.Notes, notes...)
	if p.SlowestRunningSeconds > p.DurationMaxSeconds && p.SlowestRunningSeconds >= 1 {
		pa.Notes = append(pa.Notes, fmt.Sprintf("a request was seen running for %s, longer than any that finished: if it was hung, the timeouts above end it; if it was healthy, raise them", seconds(p.SlowestRunningSeconds)))
	}
	return pa
}

// windowEvidence is what a window too small for settings showed: figures,
// no conclusion.
func windowEvidence(p history.PoolSummary) []string {
	ev := []string{
		fmt.Sprintf("traffic: %d requests; no request on %s of samples, busy p50 %d, p99 %d, max %d of %d", p.Accepted, percent(p.IdleShare), p.BusyP50, p.BusyP99, p.BusyMax, p.MaxChildren),
		fmt.Sprintf("queue: requests waited on %s of samples (queue max %d); max children reached %d times", percent(p.QueueShare), p.QueueMax, p.MaxChildrenReached),
	}
	if p.WorkerPSSHighBytes > 0 {
		ev = append(ev, fmt.Sprintf("memory: a worker's PSS at peak is %s (max %s)", size(p.WorkerPSSHighBytes), size(p.WorkerPSSMaxBytes)))
	}
	if p.Requests > 0 {
		ev = append(ev, durationsEvidence(p))
	}
	return ev
}

// durationsEvidence is the durations of the requests that finished.
func durationsEvidence(p history.PoolSummary) string {
	return fmt.Sprintf("durations of %d finished requests: p95 %s, p99 %s, slowest %s", p.Requests, seconds(p.DurationP95Seconds), seconds(p.DurationP99Seconds), seconds(p.DurationMaxSeconds))
}

// maxChildren is the pool size the memory, the concurrency seen and the
// CPU allow, with its evidence.
func maxChildren(p history.PoolSummary, workerBudget uint64, m Memory, rssFormula int) (int, Line) {
	cur := p.MaxChildren
	l := Line{Directive: "pm.max_children"}
	if cur > 0 {
		l.Current = fmt.Sprint(cur)
	}
	pss := p.WorkerPSSHighBytes
	fit := 0
	if pss > 0 && workerBudget > 0 {
		fit = int(workerBudget / pss)
		l.Evidence = append(l.Evidence, fmt.Sprintf("memory: %s for this pool's workers (budget %s from %s, less each master's PSS and opcache once, and other pools' workers at their peak); a worker's PSS at peak is %s (p95 of 10-minute peaks, max %s): %d fit",
			size(workerBudget), size(m.BudgetBytes), m.Source, size(pss), size(p.WorkerPSSMaxBytes), fit))
		if rssFormula > 0 {
			l.Evidence = append(l.Evidence, fmt.Sprintf("the RSS formula (budget / mean worker RSS %s) would say %d: RSS counts the shared opcache and libraries in every worker", size(p.WorkerRSSMeanBytes), rssFormula))
		}
	} else {
		l.Evidence = append(l.Evidence, "memory: no worker PSS was measured, so memory sets no bound")
	}
	// A request waiting while a worker is idle is only in transit; one
	// waiting while every worker is busy is a pool too small.
	queued := (p.QueueShare >= queuedShare && p.BusyMax >= cur) || p.MaxChildrenReached > 0
	l.Evidence = append(l.Evidence, fmt.Sprintf("concurrency: busy p50 %d, p99 %d, max %d of %d; requests waited on %s of samples (queue max %d); max children reached %d times",
		p.BusyP50, p.BusyP99, p.BusyMax, cur, percent(p.QueueShare), p.QueueMax, p.MaxChildrenReached))
	cpuBound := p.BusyCPUShare >= spinning
	if p.BusyCPUShare >= 0 {
		l.Evidence = append(l.Evidence, fmt.Sprintf("CPU: busy workers were on a CPU %s of their busy time; php-fpm may use %.3g CPUs (%s)", percent(p.BusyCPUShare), m.CPUs, m.CPUSource))
	}
	want := cur
	switch {
	case queued:
		want = max(cur+max(1, cur/2), p.BusyMax+int(p.QueueMax))
		if cpuBound && m.CPUs > 0 {
			if cores := int(math.Ceil(m.CPUs)); want > cores {
				want = max(cur, cores)
				l.Evidence = append(l.Evidence, "requests queue, but busy workers spin on the CPU: more workers than CPUs only queue inside the kernel; make requests cheaper or add CPUs")
			}
		}
		if fit > 0 && fit <= cur {
			l.Evidence = append(l.Evidence, fmt.Sprintf("requests queue, but memory does not allow more than %d workers: add memory, or make requests faster or smaller", fit))
		} else {
			l.Evidence = append(l.Evidence, "requests queue: the pool is too small")
		}
	case cur > 2 && p.BusyP99*2 < cur:
		want = max(2, p.BusyMax+int(math.Ceil(float64(p.BusyMax)*0.25)))
		l.Evidence = append(l.Evidence, fmt.Sprintf("busy p99 %d is far below %d: the pool is larger than its load needs, with a quarter above the peak for headroom", p.BusyP99, cur))
	}
	if want <= 0 {
		want = max(p.BusyMax+1, 2)
	}
	if fit > 0 && want > fit {
		want = fit
		if cur > fit {
			l.Evidence = append(l.Evidence, fmt.Sprintf("at peak PSS, %d workers need %s, more than the budget: a peak would end in the OOM killer", cur, size(uint64(cur)*pss)))
		}
	}
	want = max(want, 1)
	l.Value, l.Change = fmt.Sprint(want), change(cur, want)
	return want, l
}

// pmLines chooses the process manager from the traffic's shape.
func pmLines(p history.PoolSummary, maxChildren int) []Line {
	cur := p.PM
	shape := fmt.Sprintf("traffic: no request on %s of samples, busy p50 %d, p95 %d, max %d", percent(p.IdleShare), p.BusyP50, p.BusyP95, p.BusyMax)
	line := func(v string, why string) Line {
		ch := Keep
		switch {
		case cur == "":
			ch = Set
		case cur != v:
			ch = Other
		}
		return Line{Directive: "pm", Value: v, Current: cur, Change: ch, Evidence: []string{shape, why}}
	}
	switch {
	case p.IdleShare >= 0.6:
		return []Line{
			line("ondemand", "mostly idle: workers start on demand and end after pm.process_idle_timeout, so idle hours cost no memory"),
			{Directive: "pm.process_idle_timeout", Value: "10s", Change: Set, Evidence: []string{"long enough to serve a burst with warm workers, short enough to give memory back"}},
		}
	case p.BusyP99 <= max(1, 2*p.BusyP50) && p.IdleShare < 0.1:
		return []Line{line("static", "steady: the busy workers' p99 stays within twice their median, so keeping every worker saves forks and cold caches")}
	}
	// php-fpm wants 0 < min_spare <= start <= max_spare <= max_children.
	maxSpare := max(1, min(max(p.BusyP50+1, p.BusyP95), maxChildren))
	minSpare := max(1, min(p.BusyP50, maxSpare))
	start := minSpare
	why := "bursty: keep the median of busy workers warm and let bursts fork more"
	return []Line{
		line("dynamic", why),
		{Directive: "pm.start_servers", Value: fmt.Sprint(start), Change: Set, Evidence: []string{fmt.Sprintf("the busy median %d", p.BusyP50)}},
		{Directive: "pm.min_spare_servers", Value: fmt.Sprint(minSpare), Change: Set, Evidence: []string{fmt.Sprintf("the busy median %d", p.BusyP50)}},
		{Directive: "pm.max_spare_servers", Value: fmt.Sprint(maxSpare), Change: Set, Evidence: []string{fmt.Sprintf("the busy p95 %d, at least one above the median, at most pm.max_children", p.BusyP95)}},
	}
}

// maxRequests advises recycling workers whose memory grows with the
// requests they serve.
func maxRequests(p history.PoolSummary) (Line, bool) {
	if p.GrowthMedian < leakBytesPerRequest || len(p.Growth) == 0 {
		return Line{}, false
	}
	pss := max(p.WorkerPSSHighBytes, p.WorkerPSSMaxBytes)
	allowed := max(float64(pss)/4, 8<<20)
	n := max(10, int(allowed/p.GrowthMedian))
	n = niceDown(n)
	var reqs uint64
	for _, g := range p.Growth {
		reqs += g.Requests
	}
	return Line{Directive: "pm.max_requests", Value: fmt.Sprint(n), Change: Set, Evidence: []string{
		fmt.Sprintf("worker PSS grows %s per request served (median of %d workers over %d requests): a leak", size(uint64(p.GrowthMedian)), len(p.Growth), reqs),
		fmt.Sprintf("recycling each worker after %d requests bounds the growth to about %s", n, size(uint64(float64(n)*p.GrowthMedian))),
	}}, true
}

// timeouts sets php-fpm's and fpmguard's limits on a request from the
// durations seen, never below the slowest request that finished, and says
// in notes what it cannot set.
func timeouts(p history.PoolSummary) ([]Line, []string) {
	if p.Requests == 0 {
		return nil, nil
	}
	slowest := p.DurationMaxSeconds
	evidence := durationsEvidence(p)
	slowlog := niceSeconds(max(2*p.DurationP99Seconds, 1.2*slowest, 1))
	terminate := niceSeconds(max(4*p.DurationP99Seconds, 2*slowest, 2*slowlog, 10))
	kill := niceSeconds(1.5 * terminate)
	timeout := func(directive string, want, cur float64, why string) Line {
		l := Line{Directive: directive, Value: fmt.Sprintf("%gs", want), Change: Set, Evidence: []string{evidence, why}}
		if cur > 0 {
			l.Current = fmt.Sprintf("%gs", cur)
			l.Change = change(int(cur*1000), int(want*1000))
		}
		return l
	}
	var lines []Line
	var notes []string
	if p.Slowlog != "" {
		lines = append(lines, timeout("request_slowlog_timeout", slowlog, p.RequestSlowlogTimeoutSeconds, "twice the p99, and above the slowest: the slowlog shows requests slower than any seen"))
	} else {
		// php-fpm refuses request_slowlog_timeout without a slowlog file
		// (fpm_conf.c: "'slowlog' must be specified for use with
		// 'request_slowlog_timeout'"), in every version.
		notes = append(notes, fmt.Sprintf("request_slowlog_timeout = %gs would log where requests slower than any seen spend their time, but php-fpm takes it only with `slowlog = FILE` in the pool, a file its master may write; and it writes the slowlog only where it may ptrace its workers (CAP_SYS_PTRACE)", slowlog))
	}
	return append(lines,
		timeout("request_terminate_timeout", terminate, p.RequestTerminateTimeoutSeconds, "four times the p99 and twice the slowest: php-fpm ends a request only far past anything healthy"),
		Line{Directive: "--kill-hung-after", Value: fmt.Sprintf("%gs", kill), Change: Set, Flag: true, Evidence: []string{"half again request_terminate_timeout: fpmguard kills only a worker php-fpm failed to end"}},
	), notes
}

// confidence says how far the window can be trusted.
func confidence(p history.PoolSummary) string {
	d := time.Duration(p.Seconds() * float64(time.Second))
	span := human.Duration(d)
	low := p.BusyMax <= 1 && p.Accepted < 1000
	switch {
	case d < 20*time.Hour && low:
		return fmt.Sprintf("based on %s, all at low traffic: run `fpmguard serve` for a day and ask again", span)
	case d < 20*time.Hour:
		return fmt.Sprintf("based on %s: run `fpmguard serve` for a day, through a peak, and ask again", span)
	case low:
		return fmt.Sprintf("based on %s, all at low traffic: the sizes are lower bounds", span)
	}
	return fmt.Sprintf("based on %s, including a peak of %d busy workers", span, p.BusyMax)
}

// Options override what ReadMemory finds.
type Options struct {
	MemoryBytes  uint64 // the limit; 0: the cgroup's or the host's
	ReserveBytes uint64 // kept back; 0: DefaultReserve of the limit
}

// FromSummary reads the memory budget on host and advises s. The budget is
// that of the first pool's master's cgroup: pools watched together are
// taken to share one machine or container.
func FromSummary(s *history.Summary, host Host, o Options, now time.Time) (*Advice, error) {
	masterPID := 0
	var uses uint64
	masters := map[string]bool{}
	for _, p := range s.Pools {
		if masterPID == 0 {
			masterPID = p.MasterPID
		}
		uses += p.WorkersPSSNowBytes
		if !masters[p.Master] {
			masters[p.Master] = true
			uses += p.MasterPSSNowBytes
		}
	}
	m, err := host.ReadMemory(masterPID, uses, o.MemoryBytes, o.ReserveBytes)
	if err != nil {
		return nil, err
	}
	return Compute(s, m, now), nil
}
