package fpmtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Group is a cgroup of the test's own that holds processes to a CPU
// quota or a memory limit, as a container's limits do. Only processes the
// test started go into it, and it is removed when the test ends.
type Group struct {
	Dir  string
	root string // the hierarchy's root, where members go back to
}

// cpuPeriod is the enforcement period, 100 ms as Kubernetes uses.
const cpuPeriod = 100 * time.Millisecond

// CPUQuota makes a cgroup limited to percent of one core, with the cgroup
// v1 cpu controller or cgroup v2's cpu.max. It returns an error when this
// machine has neither, or when this process may not create one.
func CPUQuota(t testing.TB, percent float64) (*Group, error) {
	t.Helper()
	quota := strconv.FormatInt(int64(percent/100*float64(cpuPeriod/time.Microsecond)), 10)
	period := strconv.FormatInt(int64(cpuPeriod/time.Microsecond), 10)
	g, v1, err := newGroup(t, "cpu", "cpu.cfs_quota_us")
	if err != nil {
		return nil, err
	}
	if !v1 {
		return g, write(g.Dir, "cpu.max", quota+" "+period)
	}
	if err := write(g.Dir, "cpu.cfs_period_us", period); err != nil {
		return nil, err
	}
	return g, write(g.Dir, "cpu.cfs_quota_us", quota)
}

// MemoryLimit makes a cgroup whose processes may use limit bytes, with the
// cgroup v1 memory controller or cgroup v2's memory.max.
func MemoryLimit(t testing.TB, limit uint64) (*Group, error) {
	t.Helper()
	g, v1, err := newGroup(t, "memory", "memory.limit_in_bytes")
	if err != nil {
		return nil, err
	}
	v := strconv.FormatUint(limit, 10)
	if v1 {
		return g, write(g.Dir, "memory.limit_in_bytes", v)
	}
	return g, write(g.Dir, "memory.max", v)
}

// newGroup creates a cgroup of the test's own for controller: under its
// v1 hierarchy when that holds v1file, else under cgroup v2 with the
// controller enabled for children. It is removed when the test ends.
func newGroup(t testing.TB, controller, v1file string) (g *Group, v1 bool, err error) {
	name := fmt.Sprintf("fpmguard-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	root := filepath.Join("/sys/fs/cgroup", controller)
	switch {
	case fileExists(filepath.Join(root, v1file)):
		v1 = true
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		root = "/sys/fs/cgroup"
		ctl, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
		if !strings.Contains(string(ctl), controller) {
			if err := write(root, "cgroup.subtree_control", "+"+controller); err != nil {
				return nil, false, err
			}
		}
	default:
		return nil, false, fmt.Errorf("no cgroup %s controller: neither %s (v1) nor /sys/fs/cgroup/cgroup.controllers (v2) exists", controller, filepath.Join(root, v1file))
	}
	g = &Group{Dir: filepath.Join(root, name), root: root}
	if err := os.Mkdir(g.Dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("creating a cgroup for %s: %w", controller, err)
	}
	t.Cleanup(func() { g.remove(t) })
	return g, v1, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s to %s: %w", file, value, err)
	}
	return nil
}

// SetQuota changes the group's quota to quota of CPU time every period.
func (g *Group) SetQuota(quota, period time.Duration) error {
	q := strconv.FormatInt(quota.Microseconds(), 10)
	p := strconv.FormatInt(period.Microseconds(), 10)
	if fileExists(filepath.Join(g.Dir, "cpu.max")) {
		return write(g.Dir, "cpu.max", q+" "+p)
	}
	// v1 checks the quota against the period as it is: a longer period
	// goes first.
	if err := write(g.Dir, "cpu.cfs_period_us", p); err != nil {
		return err
	}
	return write(g.Dir, "cpu.cfs_quota_us", q)
}

// Add moves a process, with all its threads, into the group.
func (g *Group) Add(pid int) error {
	return write(g.Dir, "cgroup.procs", strconv.Itoa(pid))
}

// Throttled returns how many periods the group ran out of quota.
func (g *Group) Throttled() uint64 {
	b, _ := os.ReadFile(filepath.Join(g.Dir, "cpu.stat"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// remove moves what is left in the group back to the root, then removes
// the group.
func (g *Group) remove(t testing.TB) {
	b, _ := os.ReadFile(filepath.Join(g.Dir, "cgroup.procs"))
	for _, pid := range strings.Fields(string(b)) {
		_ = write(g.root, "cgroup.procs", pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.Remove(g.Dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("removing the test cgroup %s: %v", g.Dir, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
