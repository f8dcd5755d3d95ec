// Package fpmlog follows php-fpm's error log and tells why each worker
// died: the signal or exit code php-fpm logs, made into a cause: an OOM
// kill (the memory cgroup's count moved), fpmguard's own kill, php-fpm's
// request_terminate_timeout, a crash, someone else's signal, and the
// normal ends (pm.max_requests recycling, an idle worker retired) that are
// never failures.
//
// It imports logtail to follow the file, lag for the cgroup paths, human
// and termsafe; it must not import fastcgi, supervisor, watch or web: the
// supervisor imports it.
package fpmlog

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/logtail"
)

// Key labels a count of worker exits.
type Key struct {
	Pool  string
	Cause Cause
}

// Follower follows one master's error log.
type Follower struct {
	// OnDeath, when set, is told every death, from the follower's
	// goroutine (or Feed's caller).
	OnDeath func(Death)
	// OnLine, when set, sees every line read that is not a death: slow and
	// timed-out requests, max_children reached.
	OnLine func(Line)
	// Master, when set, is the master's pid: an exit line about a live
	// child of it is a worker's own output imitating the master (with
	// decorate_workers_output = no, workers write to the same log), and is
	// dropped and counted (Forged).
	Master int
	// Open, when set, opens the log instead of os.Open (logtail's Open):
	// a master's log in another root is opened through package safefile.
	Open func(path string) (*os.File, error)

	c      *Classifier
	tail   *logtail.Follower
	mu     sync.Mutex
	counts map[Key]uint64
	forged uint64
}

// NewFollower follows the log at path (a host path: for a master in
// another root, through /proc/PID/root), classifying with c. An empty path
// follows nothing: lines come through Feed (php-fpm's stderr under run).
func NewFollower(path string, c *Classifier) *Follower {
	f := &Follower{c: c, counts: map[Key]uint64{}}
	if path != "" {
		f.tail = &logtail.Follower{Path: path, Line: f.Feed, MaxLine: maxLine}
	}
	return f
}

// Run follows the log until ctx ends, and samples the watched cgroups'
// OOM counts every second.
func (f *Follower) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if f.tail != nil {
		f.tail.Open = f.Open
		wg.Go(func() { f.tail.Run(ctx) })
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f.c.Sample()
			}
		}
	})
	wg.Wait()
}

// Opened reports whether the log is open: before, what php-fpm wrote to
// it is not known. A follower of no file (Feed's) is open from the start.
func (f *Follower) Opened() bool { return f.tail == nil || f.tail.Opened() }

// Feed reads one line of the log.
func (f *Follower) Feed(line string) {
	l, ok := ParseLine(line)
	if !ok {
		return
	}
	if l.Kind == KindExited && f.Master > 0 && liveChild(l.PID, f.Master) {
		f.mu.Lock()
		f.forged++
		f.mu.Unlock()
		return
	}
	d, ok := f.c.Line(l)
	if !ok {
		if f.OnLine != nil {
			f.OnLine(l)
		}
		return
	}
	f.mu.Lock()
	f.counts[Key{Pool: d.Pool, Cause: d.Cause}]++
	f.mu.Unlock()
	if f.OnDeath != nil {
		f.OnDeath(d)
	}
}

// Counts returns the exits counted per pool and cause.
func (f *Follower) Counts() map[Key]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.counts)
}

// Forged returns how many exit lines were dropped as a live worker's own.
func (f *Follower) Forged() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forged
}

// liveChild reports whether pid is a live (not zombie) child of master:
// php-fpm logs a worker's exit only once it has reaped it.
func liveChild(pid, master int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 || fields[0] == "Z" || fields[0] == "X" {
		return false
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid == master
}
