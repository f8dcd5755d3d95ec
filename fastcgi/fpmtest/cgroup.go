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
	name := fmt.Sprintf("fpmguard-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	var g *Group
	switch {
	case fileExists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
		g = &Group{Dir: filepath.Join("/sys/fs/cgroup/cpu", name), root: "/sys/fs/cgroup/cpu"}
		if err := os.Mkdir(g.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a cgroup for the CPU quota: %w", err)
		}
		t.Cleanup(func() { g.remove(t) })
		if err := write(g.Dir, "cpu.cfs_period_us", period); err != nil {
			return nil, err
		}
		if err := write(g.Dir, "cpu.cfs_quota_us", quota); err != nil {
			return nil, err
		}
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		g = &Group{Dir: filepath.Join("/sys/fs/cgroup", name), root: "/sys/fs/cgroup"}
		ctl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if !strings.Contains(string(ctl), "cpu") {
			if err := write("/sys/fs/cgroup", "cgroup.subtree_control", "+cpu"); err != nil {
				return nil, err
			}
		}
		if err := os.Mkdir(g.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a cgroup for the CPU quota: %w", err)
		}
		t.Cleanup(func() { g.remove(t) })
		if err := write(g.Dir, "cpu.max", quota+" "+period); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("no cgroup cpu controller: neither /sys/fs/cgroup/cpu/cpu.cfs_quota_us (v1) nor /sys/fs/cgroup/cgroup.controllers (v2) exists")
	}
	return g, nil
}

// MemoryLimit makes a cgroup whose processes may use limit bytes, with the
// cgroup v1 memory controller or cgroup v2's memory.max.
func MemoryLimit(t testing.TB, limit uint64) (*Group, error) {
	t.Helper()
	name := fmt.Sprintf("fpmguard-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	v := strconv.FormatUint(limit, 10)
	var g *Group
	switch {
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		g = &Group{Dir: filepath.Join("/sys/fs/cgroup/memory", name), root: "/sys/fs/cgroup/memory"}
		if err := os.Mkdir(g.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a cgroup for the memory limit: %w", err)
		}
		t.Cleanup(func() { g.remove(t) })
		return g, write(g.Dir, "memory.limit_in_bytes", v)
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		g = &Group{Dir: filepath.Join("/sys/fs/cgroup", name), root: "/sys/fs/cgroup"}
		ctl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if !strings.Contains(string(ctl), "memory") {
			if err := write("/sys/fs/cgroup", "cgroup.subtree_control", "+memory"); err != nil {
				return nil, err
			}
		}
		if err := os.Mkdir(g.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a cgroup for the memory limit: %w", err)
		}
		t.Cleanup(func() { g.remove(t) })
		return g, write(g.Dir, "memory.max", v)
	}
	return nil, errors.New("no cgroup memory controller: neither /sys/fs/cgroup/memory (v1) nor /sys/fs/cgroup/cgroup.controllers (v2) exists")
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
