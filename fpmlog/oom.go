package fpmlog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/lag"
)

// oomWatch counts the OOM kills of memory cgroups: memory.events'
// oom_kill on cgroup v2, memory.oom_control's on v1. The kernel counts a
// kill when it sends the SIGKILL, before php-fpm reaps the worker and logs
// it, so a SIGKILL logged while a count moved is an OOM kill. A kill
// counted but never claimed by a worker's SIGKILL (the OOM killer chose
// another process of the cgroup) is dropped after oomWindow, so that it is
// not pinned on a later, unrelated SIGKILL.
type oomWatch struct {
	groups map[string]*memGroup // by the counter file's path
	now    func() time.Time
}

// oomWindow is how long a counted OOM kill waits for its worker's exit
// line.
const oomWindow = 30 * time.Second

// memGroup is one watched cgroup.
type memGroup struct {
	dir     string // the cgroup's directory
	events  string // the file counting OOM kills
	v2      bool
	kills   uint64      // the count at the last reading
	pending []time.Time // kills counted and not yet claimed, by when seen
}

func newOOMWatch() *oomWatch {
	return &oomWatch{groups: map[string]*memGroup{}, now: time.Now}
}

// watchPID watches the memory cgroup of pid.
func (w *oomWatch) watchPID(pid int) error {
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("finding the memory cgroup of %d: %w", pid, err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("finding the memory cgroup of %d: %w", pid, err)
	}
	path, v2, ok := lag.FindCgroupFile(cg, mi, "memory", "memory.oom_control", "memory.events", func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	})
	if !ok {
		return fmt.Errorf("finding the memory cgroup of %d: no memory.events (v2) or memory.oom_control (v1) under a cgroup mount fpmguard sees", pid)
	}
	return w.watch(path, v2)
}

// watch watches the counter file path; the count it reads now is the
// baseline.
func (w *oomWatch) watch(path string, v2 bool) error {
	if _, ok := w.groups[path]; ok {
		return nil
	}
	n, err := readOOMKills(path)
	if err != nil {
		return err
	}
	w.groups[path] = &memGroup{dir: filepath.Dir(path), events: path, v2: v2, kills: n}
	return nil
}

// sample reads every watched count, and notes the kills counted since the
// last reading.
func (w *oomWatch) sample() {
	now := w.now()
	for _, g := range w.groups {
		n, err := readOOMKills(g.events)
		if err != nil {
			continue // removed, or unreadable for now
		}
		for ; g.kills < n; g.kills++ {
			g.pending = append(g.pending, now)
		}
		if n < g.kills {
			g.kills = n // a new cgroup of the same name
		}
		for len(g.pending) > 0 && now.Sub(g.pending[0]) > oomWindow {
			g.pending = g.pending[1:]
		}
	}
}

// moved claims one OOM kill counted and not yet claimed, and returns its
// cgroup.
func (w *oomWatch) moved() (*memGroup, bool) {
	w.sample()
	for _, g := range w.groups {
		if len(g.pending) > 0 {
			g.pending = g.pending[1:]
			return g, true
		}
	}
	return nil, false
}

// limit reads the cgroup's memory limit, 0 for none.
func (g *memGroup) limit() uint64 {
	name := "memory.limit_in_bytes"
	if g.v2 {
		name = "memory.max"
	}
	b, err := os.ReadFile(filepath.Join(g.dir, name))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n >= 1<<62 { // "max", or v1's page-rounded "unlimited"
		return 0
	}
	return n
}

// readOOMKills reads the oom_kill line of memory.events (v2) or
// memory.oom_control (v1).
func readOOMKills(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading OOM kills: %w", err)
	}
	return parseOOMKills(b)
}

func parseOOMKills(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no oom_kill count (kernel older than 4.13?)")
}
