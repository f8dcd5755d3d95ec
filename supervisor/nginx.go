package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// NginxError is one upstream failure nginx logged.
type NginxError struct {
	Status   int    // what nginx answered the client: 502 or 504
	Cause    string // refused, missing, permission, backlog, reset, timeout
	Upstream string // the upstream's address as nginx writes it, e.g. unix:/run/php/www.sock
}

// nginxCauses map the error text nginx writes to what it answered.
var nginxCauses = []struct {
	text   string
	status int
	cause  string
}{
	{"(111: Connection refused)", 502, "refused"},
	{"(2: No such file or directory)", 502, "missing"},
	{"(13: Permission denied)", 502, "permission"},
	{"(11: Resource temporarily unavailable)", 502, "backlog"},
	{"upstream prematurely closed connection", 502, "reset"},
	{"(104: Connection reset by peer)", 502, "reset"},
	{"upstream timed out (110:", 504, "timeout"},
}

// ParseNginxLine reads one line of nginx's error log and returns the
// upstream failure it records, if it records one of a FastCGI upstream.
//
// Parts of the line come from clients: the request line, the Host header
// and the Referer are written as they came. So the cause is looked for only
// in nginx's own message, before ", client: ", and the upstream is the
// first upstream field: it comes right after the request line, which holds
// no spaces (nginx refuses one that does), and before the host and the
// referrer, which could forge another.
func ParseNginxLine(line string) (NginxError, bool) {
	var e NginxError
	msg, fields, ok := strings.Cut(line, ", client: ")
	if !ok || !strings.Contains(msg, "upstream") {
		return e, false
	}
	for _, c := range nginxCauses {
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

// NginxLogs follows nginx error logs, counts the upstream failures of each
// pool (matched by its socket address) and turns them into events that say
// what fpmguard saw of the pool at the time.
type NginxLogs struct {
	paths  []string
	pools  map[string]string // canonical address -> pool name
	addrs  map[string]string // pool name -> its address as nginx names it
	events *EventLog
	// ReportEvery is how often new failures become an event.
	ReportEvery time.Duration
	// context describes a pool's state for an event; set by the watcher.
	context func(pool string) string

	mu     sync.Mutex
	counts map[NginxKey]uint64
	recent map[NginxKey][]time.Time // within the last minute
	fresh  map[NginxKey]bool        // seen since the last event
}

// NewNginxLogs follows paths for the pools of targets.
func NewNginxLogs(paths []string, targets []Target, events *EventLog) *NginxLogs {
	n := &NginxLogs{paths: paths, pools: map[string]string{}, addrs: map[string]string{}, events: events, ReportEvery: 10 * time.Second,
		counts: map[NginxKey]uint64{}, recent: map[NginxKey][]time.Time{}, fresh: map[NginxKey]bool{}}
	for _, t := range targets {
		addr := t.Address
		// A master in another container is reached through /proc/PID/root;
		// nginx, beside it, names the socket by its own path.
		if t.Root != "" && addr.Network == "unix" {
			addr.Addr = strings.TrimPrefix(addr.Addr, t.Root)
		}
		n.pools[addr.String()] = t.Name
		n.pools[t.Address.String()] = t.Name
		n.addrs[t.Name] = addr.String()
	}
	return n
}

// Counts returns the failures counted per pool, status and cause.
func (n *NginxLogs) Counts() map[NginxKey]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.counts)
}

// Run follows every log until ctx ends.
func (n *NginxLogs) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range n.paths {
		wg.Go(func() { n.follow(ctx, p) })
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
func (n *NginxLogs) record(e NginxError) {
	addr, err := fastcgi.ParseAddress(e.Upstream)
	if err != nil {
		return
	}
	pool, ok := n.pools[addr.String()]
	if !ok {
		return // another upstream: not ours
	}
	k := NginxKey{Pool: pool, Status: e.Status, Cause: e.Cause}
	n.mu.Lock()
	n.counts[k]++
	n.recent[k] = append(n.recent[k], time.Now())
	n.fresh[k] = true
	n.mu.Unlock()
}

// report turns the failures seen since the last report into events, with
// the count of the last minute.
func (n *NginxLogs) report() {
	n.mu.Lock()
	cutoff := time.Now().Add(-time.Minute)
	type item struct {
		k     NginxKey
		count int
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
			items = append(items, item{k: k, count: len(kept)})
		}
		delete(n.fresh, k)
	}
	n.mu.Unlock()
	sort.Slice(items, func(i, j int) bool { return items[i].k.Pool+items[i].k.Cause < items[j].k.Pool+items[j].k.Cause })
	for _, it := range items {
		msg := fmt.Sprintf("%d × %d %s on %s in the last minute", it.count, it.k.Status, causeText(it.k.Cause), n.addrs[it.k.Pool])
		if n.context != nil {
			if ctx := n.context(it.k.Pool); ctx != "" {
				msg += " — " + ctx
			}
		}
		n.events.Add(Event{Pool: it.k.Pool, Kind: EventNginxUpstream, Message: msg})
	}
}

func causeText(cause string) string {
	switch cause {
	case "timeout":
		return "upstream timed out"
	case "reset":
		return "upstream closed the connection early"
	case "backlog":
		return "listen backlog full (EAGAIN)"
	case "refused":
		return "connection refused"
	case "missing":
		return "socket missing"
	case "permission":
		return "permission denied"
	}
	return cause
}

// follow reads new lines of one log as they come, surviving rotation (a
// new file at the path) and truncation. It starts at the end: only what
// happens while fpmguard runs is counted.
func (n *NginxLogs) follow(ctx context.Context, path string) {
	var f *os.File
	var r *bufio.Reader
	var ino uint64
	var offset int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open := func(fromStart bool) {
		if f != nil {
			f.Close()
			f = nil
		}
		nf, err := os.Open(path)
		if err != nil {
			return
		}
		fi, err := nf.Stat()
		if err != nil {
			nf.Close()
			return
		}
		offset = 0
		if !fromStart {
			offset = fi.Size()
		}
		if _, err := nf.Seek(offset, io.SeekStart); err != nil {
			nf.Close()
			return
		}
		f, r = nf, bufio.NewReaderSize(nf, 64<<10)
		ino = inode(fi)
	}
	open(false)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var partial strings.Builder
	for {
		if f != nil {
			for {
				line, err := r.ReadString('\n')
				offset += int64(len(line))
				if err != nil {
					partial.WriteString(line) // finish it when the rest comes
					break
				}
				if partial.Len() > 0 {
					line = partial.String() + line
					partial.Reset()
				}
				if len(line) <= maxNginxLine {
					if e, ok := ParseNginxLine(line); ok {
						n.record(e)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			// Rotated away and not recreated yet: keep the old file open.
		case f == nil:
			open(true) // the file appeared: read it whole
		case inode(fi) != ino:
			open(true) // rotated: a new file at the path
			partial.Reset()
		case fi.Size() < offset:
			_, _ = f.Seek(0, io.SeekStart) // truncated
			r.Reset(f)
			offset = 0
			partial.Reset()
		}
	}
}

// maxNginxLine skips absurd lines; nginx's own limit is about 2 KB.
const maxNginxLine = 64 << 10

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// FollowNginx makes the watcher follow nginx's error logs, with the pools'
// state as the context of each event.
func (w *Watcher) FollowNginx(paths []string) *NginxLogs {
	targets := make([]Target, len(w.pools))
	for i, pw := range w.pools {
		targets[i] = pw.target
	}
	n := NewNginxLogs(paths, targets, w.events)
	// A few intervals gather a burst of failures into one event.
	n.ReportEvery = max(5*w.cfg.Interval, time.Second)
	n.context = w.poolContext
	w.nginx = n
	return n
}

// poolContext says in a few words why a pool may be failing nginx now.
func (w *Watcher) poolContext(pool string) string {
	for _, pw := range w.pools {
		pw.mu.Lock()
		r := pw.report
		pw.mu.Unlock()
		if r == nil || r.Name != pool {
			continue
		}
		if r.Master != nil && r.Master.Gone() {
			return "the master is gone"
		}
		var uris []string
		kinds := map[string]bool{}
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
		case hung > 0:
			var ks []string
			for k := range kinds {
				if k != "" {
					ks = append(ks, k)
				}
			}
			sort.Strings(ks)
			return fmt.Sprintf("%d of %d workers hung in %s (%s)", hung, total, strings.Join(uris, ", "), strings.Join(ks, ", "))
		case total > 0 && busy == total:
			return fmt.Sprintf("all %d workers busy, listen queue %d", total, r.queue())
		case !r.Heartbeat.OK && r.Heartbeat.Error != "":
			return r.Heartbeat.Error
		}
		return fmt.Sprintf("%d of %d workers busy now", busy, total)
	}
	return ""
}
