package web

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// pageView is what the status page shows, built from one snapshot for one
// client. Every string in it is text as fpmguard, php-fpm or a client
// wrote it: the template escapes each for its context, and none is ever
// markup.
type pageView struct {
	Problem   string // why nothing is shown: no watcher yet
	Time      time.Time
	Interval  string // between probes of a pool
	Lag       string // share of the last refresh fpmguard's timers ran late
	LagTotal  string // how late they ran in all
	LagHigh   bool
	RefreshMS int64 // how often the script fetches the live part
	// RefreshS is the meta refresh without the script, in seconds.
	RefreshS int64
	Counts   []healthCount
	// Details: worker details (pids, URIs, scripts, event messages) are
	// shown. Off, the page says why in NoDetails.
	Details   bool
	NoDetails string
	Kill      bool // a kill button on each request in flight
	Pools     []poolView
	Hung      int
	Workers   []workerView
	Opcache   []opcacheView
	Events    []eventView
	Links     []link
}

type healthCount struct {
	Class string
	N     int
}

type link struct{ Href, Text string }

// poolView is one row of the pools table.
type poolView struct {
	Name    string
	Class   string // ok, degraded, unhealthy, down or unknown
	Verdict string // the verdict as shown: OK, UNHEALTHY, NOT PROBED YET
	Reasons []string
	// Waits are the hung workers' causes, one line each (what they wait
	// on and their PHP stack), and Deaths the workers that died lately:
	// worker details, for a client that may read them.
	Waits  []string
	Deaths []string
	// Withheld counts the reasons left out for a client without worker
	// details: they quote a request URI or a script.
	Withheld     int
	Inconclusive []string
	Why          bool          // any of the three
	Beat         string        // the last heartbeat in words
	BeatClass    string        // warn or bad, when it is worth a look
	Stale        string        // "last probe 12s ago" when probes stopped
	Spark        template.HTML // numbers only (page_numbers.go)
	Counts       template.HTML // busy, idle, total, hung, queue: numbers only
	Hung         int
}

// workerView is one request in flight.
type workerView struct {
	Pool   string
	PID    int
	PIDAge template.HTML // numbers only (page_numbers.go)
	Hung   bool
	Kind   string             // blocked, spinning, or the state php-fpm names
	OSNote supervisor.OSState // the kernel's state when it is worth a look
	Method string
	URI    string
	Script string
	// Wait says what a held-up worker waits on (issue 21), Stack is the
	// PHP stack of a hung one, innermost first (issue 24), and Slowlog
	// the top of php-fpm's slowlog backtrace of its request. The page
	// draws them under the worker when set.
	Wait    string
	Stack   []string
	Slowlog string
	seconds float64 // the request's age, for the order
}

// opcacheView is one master's opcache.
type opcacheView struct {
	Master   string
	PID      int
	Pools    string
	Class    string
	Verdict  string
	Read     bool // figures were read
	Fill     string
	FillBar  template.HTML // numbers only (page_numbers.go)
	Wasted   string
	HitRate  string
	Keys     string
	Reasons  []string
	Problem  string // why there are no figures
	Doubtful string // the read proved nothing: fpmguard was starved
}

// eventView is one event; Message is left out without worker details.
type eventView struct {
	Time    time.Time
	Pool    string
	Kind    event.Kind
	Message string
}

// pageEvents is how many of the newest events the page lists.
const pageEvents = 12

// minRefresh and maxRefresh bound the page's refresh: no faster than a
// person reads, however short --interval is, and no slower than a minute.
const (
	minRefresh = time.Second
	maxRefresh = time.Minute
)

// noDetails is the line a client without worker details reads instead.
const noDetails = "Worker details (pids, request URIs, scripts, event messages) are hidden: fpmguard shows them to clients on this machine (loopback) and to clients --web.config.file authenticates, as for /status and /snapshot."

// buildPage makes the view of snapshot s for a client with access a. hist
// has seen s already: it holds the sparklines.
func buildPage(s *watch.Snapshot, events []event.Event, hist *recent.History, a access, links []link) *pageView {
	v := &pageView{Links: links, Details: a.details, Kill: a.details && a.kill}
	if !a.details {
		v.NoDetails = noDetails
	}
	if s == nil {
		v.Problem = "not watching any pool: see fpmguard's log"
		v.RefreshMS, v.RefreshS = minRefresh.Milliseconds(), int64(minRefresh/time.Second)
		return v
	}
	v.Time = s.Time
	refresh := min(max(s.Self.Interval, minRefresh), maxRefresh)
	v.RefreshMS, v.RefreshS = refresh.Milliseconds(), int64(math.Ceil(refresh.Seconds()))
	v.Interval = "–"
	if s.Self.Interval > 0 {
		v.Interval = human.FormatDuration(s.Self.Interval)
	}
	share := hist.LagShare()
	v.Lag = strconv.FormatFloat(100*share, 'f', 1, 64) + "%"
	v.LagHigh = share >= 0.01
	v.LagTotal = human.FormatSeconds(s.Self.LagSeconds)

	// A pool is named alone when no other has its name, else with its
	// master's (www of two PHP versions): the name the kill button sends.
	ids := make([]supervisor.PoolID, len(s.Pools))
	for i := range s.Pools {
		ids[i] = s.Pools[i].Report.ID()
	}
	labels := supervisor.Labels(ids)
	counts := map[string]int{}
	v.Pools = make([]poolView, 0, len(s.Pools))
	for i := range s.Pools {
		pv := &s.Pools[i]
		row := poolRow(pv, labels[ids[i]], hist, a.details, s.Time)
		counts[row.Class]++
		v.Hung += row.Hung
		v.Pools = append(v.Pools, row)
		if a.details {
			v.Workers = appendWorkers(v.Workers, labels[ids[i]], pv.Report)
		}
	}
	// The worst first, in target order within each verdict: what needs
	// a look is at the top.
	slices.SortStableFunc(v.Pools, func(x, y poolView) int { return cmp.Compare(rank(y.Class), rank(x.Class)) })
	// Hung workers first, then the oldest requests.
	slices.SortStableFunc(v.Workers, func(x, y workerView) int {
		if x.Hung != y.Hung {
			if x.Hung {
				return -1
			}
			return 1
		}
		return cmp.Compare(y.seconds, x.seconds)
	})
	for _, c := range []string{"down", "unhealthy", "degraded", "unknown", "ok"} {
		if counts[c] > 0 {
			v.Counts = append(v.Counts, healthCount{c, counts[c]})
		}
	}
	for i := range s.Opcache {
		v.Opcache = append(v.Opcache, opcacheRow(&s.Opcache[i], a.details))
	}
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		ev := eventView{Time: e.Time, Pool: e.Pool, Kind: e.Kind}
		if l, ok := labels[supervisor.PoolID{Pool: e.Pool, Master: e.MasterName}]; ok {
			ev.Pool = l
		}
		if a.details {
			ev.Message = e.Message
		}
		v.Events = append(v.Events, ev)
	}
	return v
}

// verdictClass names a verdict for the page's colours. A verdict the
// page does not know (a pool of unknown health, one added later) is grey.
func verdictClass(h supervisor.Health) string {
	switch h {
	case supervisor.HealthOK, supervisor.HealthDegraded, supervisor.HealthUnhealthy, supervisor.HealthDown:
		return string(h)
	}
	return "unknown"
}

// rank orders the classes from best to worst: a pool whose health is not
// known yet sits between OK and degraded.
func rank(class string) int {
	return slices.Index([]string{"ok", "unknown", "degraded", "unhealthy", "down"}, class)
}

// verdictText is a verdict as the page shows it.
func verdictText(h supervisor.Health) string {
	if h == "" {
		return "UNKNOWN"
	}
	return strings.ToUpper(string(h))
}

func poolRow(pv *watch.PoolView, name string, hist *recent.History, details bool, now time.Time) poolView {
	r := pv.Report
	busy, total := r.Busy()
	row := poolView{Name: name, Class: verdictClass(r.Health), Verdict: verdictText(r.Health), Hung: r.HungCount(), Inconclusive: r.Inconclusive}
	if !pv.Probed() {
		// Whatever verdict the placeholder report carries, nothing was
		// seen yet.
		row.Class, row.Verdict = "unknown", "NOT PROBED YET"
	}
	row.Reasons, row.Withheld = r.Reasons, 0
	if !details {
		row.Reasons, row.Withheld = withholdDetails(r)
		// What workers wait on names peers, lock files and PHP functions;
		// a death names its request.
		row.Withheld += len(r.Waits) + len(r.Deaths)
	} else {
		for _, g := range r.Waits {
			row.Waits = append(row.Waits, g.Line)
		}
		for _, d := range r.Deaths {
			row.Deaths = append(row.Deaths, d.Time.UTC().Format("15:04:05")+" "+d.Line)
		}
	}
	row.Why = len(row.Waits) > 0 || len(row.Reasons) > 0 || len(row.Deaths) > 0 || row.Withheld > 0 || len(row.Inconclusive) > 0
	row.Beat, row.BeatClass = heartbeatText(pv)
	if pv.Probed() && !pv.LastProbe.IsZero() && now.Sub(pv.LastProbe) > 30*time.Second {
		row.Stale = "last probe " + human.FormatDuration(now.Sub(pv.LastProbe)) + " ago"
	}
	row.Spark = sparkline(hist.Beats(r.ID()))
	// The queue is the kernel's count, fpmguard's own connections left
	// out, against the socket's backlog; else php-fpm's.
	var queueLen int64
	queueKnown := true
	switch {
	case r.SocketQueue != nil:
		queueLen = r.SocketQueue.Max
	case r.Counters != nil:
		queueLen = r.Counters.ListenQueueLen
	default:
		queueKnown = false
	}
	// Workers are counted from the status page's process list, when it
	// was read: fpmguard's own status read is no load.
	row.Counts = countCells(r.Status.OK, busy, total-busy, total, r.Config.MaxChildren, row.Hung, r.Queue(), queueLen, queueKnown)
	return row
}

// withholdDetails returns the pool's reasons that quote no request URI
// and no script of its workers, and how many it left out. A reason
// names a hung worker's request; the page shows it only to clients that
// may read /status. Leaving out too much is safe; a URI that slipped
// through is not.
func withholdDetails(r *supervisor.PoolReport) ([]string, int) {
	secret := map[string]bool{} // a pool's workers mostly share a few URIs
	for _, p := range r.Processes {
		for _, s := range []string{p.RequestURI, supervisor.StripQuery(p.RequestURI), p.Script} {
			if s != "" && s != "-" {
				secret[s] = true
			}
		}
	}
	kept := make([]string, 0, len(r.Reasons))
	for _, reason := range r.Reasons {
		quotes := false
		for s := range secret {
			if quotes = strings.Contains(reason, s); quotes {
				break
			}
		}
		if !quotes {
			kept = append(kept, reason)
		}
	}
	return kept, len(r.Reasons) - len(kept)
}

// heartbeatText is the last heartbeat in a few words, as top says it, and
// the class that marks it: warn or bad, or none.
func heartbeatText(pv *watch.PoolView) (string, string) {
	r := pv.Report
	h := r.Heartbeat
	switch {
	case !pv.Probed():
		return "–", ""
	case h.Skipped:
		if c := r.Connect; c != nil && c.Failure != nil {
			return fmt.Sprintf("not configured (no ping.path); connect FAILED: %s, nginx would answer %d", c.Failure.Class, c.Failure.NginxStatus), "bad"
		}
		return "not configured (no ping.path)", ""
	case h.Idle:
		return "not sent (idle ondemand pool)", ""
	case h.OK && h.Via != "":
		return human.FormatSeconds(h.LatencySeconds) + " (" + h.Via + ")", ""
	case h.OK:
		return human.FormatSeconds(h.LatencySeconds), ""
	case h.Inconclusive != "":
		return "not judged (fpmguard starved)", "warn"
	case h.Misconfigured():
		return fmt.Sprintf("MISCONFIGURED: %s", h.Failure.Class), "warn"
	case h.WaitsBehindHung > 0:
		return fmt.Sprintf("FAILED: not sent, all %d workers hung", h.WaitsBehindHung), "bad"
	case h.Failure != nil && h.Failure.NginxStatus > 0:
		return fmt.Sprintf("FAILED: %s, nginx would answer %d", h.Failure.Class, h.Failure.NginxStatus), "bad"
	case h.Failure != nil:
		return fmt.Sprintf("FAILED: %s", h.Failure.Class), "bad"
	}
	return "FAILED", "bad"
}

// appendWorkers adds the pool's requests in flight: its busy workers
// that serve no probe of fpmguard's. name is the pool's name on the page.
func appendWorkers(out []workerView, name string, r *supervisor.PoolReport) []workerView {
	for i := range r.Processes {
		p := &r.Processes[i]
		if !p.Serving() {
			continue
		}
		w := workerView{Pool: name, PID: p.PID, PIDAge: pidAgeCells(p.PID, p.RequestDurationSeconds), Hung: p.Hung,
			Method: p.RequestMethod, URI: dash(p.RequestURI), Script: dash(p.Script), Kind: p.State, seconds: p.RequestDurationSeconds}
		switch p.OSState {
		case supervisor.OSStopped, supervisor.OSZombie, supervisor.OSDiskSleep, supervisor.OSGone:
			w.OSNote = p.OSState
		}
		if p.Hung {
			w.Kind = "hung"
			if p.HungKind != "" {
				w.Kind = "hung, " + string(p.HungKind)
			}
		}
		if p.Wait != nil {
			w.Wait = p.Wait.What()
			if !p.Wait.Since.IsZero() {
				w.Wait += ", seen since " + p.Wait.Since.UTC().Format("15:04:05") + " UTC"
			}
		}
		if st := p.Stack; st != nil {
			for _, f := range st.Frames {
				w.Stack = append(w.Stack, f.String())
			}
			if st.Error != "" {
				w.Stack = append(w.Stack, "not read: "+st.Error)
			}
		}
		w.Slowlog = strings.Join(p.SlowlogTrace, " <- ")
		out = append(out, w)
	}
	return out
}

// dash stands for an empty value.
func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func opcacheRow(o *supervisor.OpcacheReport, details bool) opcacheView {
	v := opcacheView{Master: o.Master, Pools: strings.Join(o.Pools, ", "), Class: verdictClass(o.Health), Verdict: verdictText(o.Health),
		Reasons: o.Reasons, Doubtful: o.Inconclusive}
	if details {
		v.PID = o.MasterPID
	}
	switch {
	case o.Error != "":
		v.Problem = o.Error
	case !o.Enabled:
		v.Problem = "opcache disabled"
	default:
		v.Read = true
		total := o.MemoryUsedBytes + o.MemoryFreeBytes + o.MemoryWastedBytes
		v.Fill = fmt.Sprintf("%.0f%%", 100*o.FillRatio)
		if total > 0 {
			v.Fill += " of " + human.FormatBytes(uint64(total))
		}
		v.FillBar = fillBar(o.FillRatio, o.CacheFull)
		v.Wasted = fmt.Sprintf("%.1f%%", 100*o.WastedRatio)
		if o.MaxWastedRatio > 0 {
			v.Wasted += fmt.Sprintf(" (restart at %.0f%%)", 100*o.MaxWastedRatio)
		}
		v.HitRate = fmt.Sprintf("%.1f%%", 100*o.HitRate)
		v.Keys = fmt.Sprintf("%d / %d", o.CachedKeys, o.MaxCachedKeys)
	}
	return v
}
