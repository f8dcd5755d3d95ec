// Package nginxlog follows nginx's error logs and counts the upstream
// failures of each pool: what nginx answered (502, 504) and why. It imports
// supervisor for the pools, fastcgi for their addresses, event for what it
// reports and logtail to follow the files; it must not import watch,
// runner or web.
package nginxlog

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/logtail"
	"github.com/fpmguard/fpmguard/supervisor"
)

// maxNginxLine skips absurd lines; nginx's own limit is about 2 KB.
const maxNginxLine = 64 << 10

// Failure is one upstream failure nginx logged.
type Failure struct {
	Status   int // what nginx answered the client: 502 or 504
	Cause    Cause
	Upstream string // the upstream's address as nginx writes it, e.g. unix:/run/php/www.sock
}

// causes map the error text nginx writes to what it answered.
var causes = []struct {
	text   string
	status int
	cause  Cause
}{
	{"(111: Connection refused)", 502, CauseRefused},
	{"(2: No such file or directory)", 502, CauseMissing},
	{"(13: Permission denied)", 502, CausePermission},
	{"(11: Resource temporarily unavailable)", 502, CauseBacklog},
	{"upstream prematurely closed connection", 502, CauseReset},
	{"(104: Connection reset by peer)", 502, CauseReset},
	{"upstream timed out (110:", 504, CauseTimeout},
}

// ParseLine reads one line of nginx's error log and returns the
// upstream failure it records, if it records one of a FastCGI upstream.
//
// Parts of the line come from clients: the request line, the Host header
// and the Referer are written as they came. So the cause is looked for only
// in nginx's own message, before ", client: ", and the upstream is the
// first upstream field: it comes right after the request line, which holds
// no spaces (nginx refuses one that does), and before the host and the
// referrer, which could forge another.
func ParseLine(line string) (Failure, bool) {
	var e Failure
	msg, fields, ok := strings.Cut(line, ", client: ")
	if !ok || !strings.Contains(msg, "upstream") {
		return e, false
	}
	for _, c := range causes {
		if strings.Contains(msg, c.text) {
			e.Status, e.Cause = c.status, c.cause
			break
		}
	}
	if e.Status == 0 {
		return e, false
	}
	const key = `, upstream: "fastcgi://`
	i := strings.Index(fields, key)
	if i < 0 {
		return e, false
	}
	rest := fields[i+len(key):]
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return e, false
	}
	up := rest[:end]
	// nginx writes a unix upstream as unix:/path: with a trailing colon.
	if strings.HasPrefix(up, "unix:") {
		up = strings.TrimSuffix(up, ":")
	}
	if up == "" {
		return e, false // no address: nothing to count it against
	}
	e.Upstream = up
	return e, true
}

// Follower follows nginx error logs, counts the upstream failures of each
// pool (matched by its socket address) and turns them into events that say
// what fpmguard saw of the pool at the time.
type Follower struct {
	events *event.Log
	// ReportEvery is how often new failures become an event.
	ReportEvery time.Duration
	// Describe, when set, says in a few words what fpmguard saw of a pool,
	// for the events.
	Describe func(pool supervisor.PoolID) string
	// tails follow the logs, one each; their Poll and DrainQuiet are
	// logtail's defaults but in tests.
	tails []*logtail.Follower
	// onLine, when set, sees every complete line read (tests).
	onLine func(line string)

	mu     sync.Mutex
	pools  map[string]supervisor.PoolID // canonical address -> pool
	addrs  map[supervisor.PoolID]string // pool -> its address as nginx names it
	counts map[Key]uint64
	recent map[Key][]time.Time // within the last minute
	fresh  map[Key]bool        // seen since the last event
}

// NewFollower follows paths for the pools of targets.
func NewFollower(paths []string, targets []supervisor.Target, events *event.Log) *Follower {
	n := &Follower{events: events, ReportEvery: 10 * time.Second,
		counts: map[Key]uint64{}, recent: map[Key][]time.Time{}, fresh: map[Key]bool{}}
	for _, p := range paths {
		n.tails = append(n.tails, &logtail.Follower{Path: p, Line: n.line, MaxLine: maxNginxLine})
	}
	n.pools, n.addrs = upstreams(targets)
	return n
}

// SetTargets makes the pools of targets those failures are counted for,
// when php-fpm changed (a reload, a restart): what was counted for a pool
// no longer among them is dropped.
func (n *Follower) SetTargets(targets []supervisor.Target) {
	pools, addrs := upstreams(targets)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pools, n.addrs = pools, addrs
	maps.DeleteFunc(n.counts, func(k Key, _ uint64) bool { _, ok := addrs[k.Pool]; return !ok })
	maps.DeleteFunc(n.recent, func(k Key, _ []time.Time) bool { _, ok := addrs[k.Pool]; return !ok })
	maps.DeleteFunc(n.fresh, func(k Key, _ bool) bool { _, ok := addrs[k.Pool]; return !ok })
}

// upstreams maps each address nginx may name a pool of targets by to the
// pool, and each pool to the address nginx names it by.
func upstreams(targets []supervisor.Target) (map[string]supervisor.PoolID, map[supervisor.PoolID]string) {
	pools, addrs := map[string]supervisor.PoolID{}, map[supervisor.PoolID]string{}
	ids := make([]supervisor.PoolID, len(targets))
	for i, t := range targets {
		ids[i] = t.ID()
		pools[t.Address.String()] = ids[i]
	}
	for i, t := range targets {
		// A master in another container is reached through /proc/PID/root;
		// nginx, beside it, names the socket by its own path. A pool of
		// this host's at that path is the one nginx names.
		addr := t.Address.InRoot().String()
		if _, taken := pools[addr]; !taken {
			pools[addr] = ids[i]
		}
		addrs[ids[i]] = addr
	}
	return pools, addrs
}

// Counts returns the failures counted per pool, status and cause.
func (n *Follower) Counts() map[Key]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.counts)
}

// Opened reports whether every log has been opened: until then, what
// nginx logged is not known, and Counts' zeros do not say "no failure".
func (n *Follower) Opened() bool {
	for _, t := range n.tails {
		if !t.Opened() {
			return false
		}
	}
	return true
}

// Run follows every log until ctx ends.
func (n *Follower) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range n.tails {
		wg.Go(func() { t.Run(ctx) })
	}
	wg.Go(func() {
		tick := time.NewTicker(n.ReportEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n.report()
			}
		}
	})
	wg.Wait()
}

// record counts one failure.
func (n *Follower) record(e Failure) {
	addr, err := fastcgi.ParseAddress(e.Upstream)
	if err != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pool, ok := n.pools[addr.String()]
	if !ok {
		return // another upstream: not ours
	}
	k := Key{Pool: pool, Status: e.Status, Cause: e.Cause}
	n.counts[k]++
	n.recent[k] = append(n.recent[k], time.Now())
	n.fresh[k] = true
}

// report turns the failures seen since the last report into events, with
// the count of the last minute.
func (n *Follower) report() {
	n.mu.Lock()
	cutoff := time.Now().Add(-time.Minute)
	type item struct {
		k     Key
		count int
		addr  string
	}
	var items []item
	for k, times := range n.recent {
		kept := times[:0]
		for _, t := range times {
			if t.After(cutoff) {
				kept = append(kept, t)
			}
		}
		n.recent[k] = kept
		if n.fresh[k] && len(kept) > 0 {
			items = append(items, item{k: k, count: len(kept), addr: n.addrs[k.Pool]})
		}
		delete(n.fresh, k)
	}
	n.mu.Unlock()
	sort.Slice(items, func(i, j int) bool {
		if c := items[i].k.Pool.Compare(items[j].k.Pool); c != 0 {
			return c < 0
		}
		return items[i].k.Cause < items[j].k.Cause
	})
	for _, it := range items {
		msg := fmt.Sprintf("%d × %d %s on %s in the last minute", it.count, it.k.Status, it.k.Cause.Text(), it.addr)
		if n.Describe != nil {
			if seen := n.Describe(it.k.Pool); seen != "" {
				msg += " — " + seen
			}
		}
		n.events.Add(event.Event{Pool: it.k.Pool.Pool, MasterName: it.k.Pool.Master, Kind: event.KindNginxUpstream, Message: msg})
	}
}

// Cause is why nginx could not use the upstream, as its message says.
type Cause string

// The causes fpmguard counts.
const (
	CauseRefused    Cause = "refused"
	CauseMissing    Cause = "missing"
	CausePermission Cause = "permission"
	CauseBacklog    Cause = "backlog"
	CauseReset      Cause = "reset"
	CauseTimeout    Cause = "timeout"
)

// Key labels a count of upstream failures nginx logged.
type Key struct {
	Pool   supervisor.PoolID
	Status int // what nginx answered: 502 or 504
	Cause  Cause
}

// Text is the cause as people read it: "upstream closed the connection
// early".
func (cause Cause) Text() string {
	switch cause {
	case CauseTimeout:
		return "upstream timed out"
	case CauseReset:
		return "upstream closed the connection early"
	case CauseBacklog:
		return "listen backlog full (EAGAIN)"
	case CauseRefused:
		return "connection refused"
	case CauseMissing:
		return "socket missing"
	case CausePermission:
		return "permission denied"
	}
	return string(cause)
}

// Between returns the failures nginx logged for pool that fpmguard read
// between from and to, by status and cause: those of the last minute are
// kept. The time of each is when fpmguard read it, a poll (250 ms) at most
// after nginx wrote it.
func (n *Follower) Between(pool supervisor.PoolID, from, to time.Time) map[Key]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[Key]int{}
	for k, times := range n.recent {
		if k.Pool != pool {
			continue
		}
		for _, t := range times {
			if !t.Before(from) && t.Before(to) {
				out[k]++
			}
		}
	}
	return out
}

// line handles one complete line of the log.
func (n *Follower) line(line string) {
	if n.onLine != nil {
		n.onLine(line)
	}
	if e, ok := ParseLine(line); ok {
		n.record(e)
	}
}

// LongLines returns how many lines were dropped for being longer than
// any line nginx writes.
func (n *Follower) LongLines() uint64 {
	var sum uint64
	for _, t := range n.tails {
		sum += t.LongLines()
	}
	return sum
}
