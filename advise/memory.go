package advise

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Memory is what php-fpm may use, and where the figure comes from.
type Memory struct {
	// Source says where LimitBytes comes from: "--memory", "cgroup v2
	// memory.max of /PATH", "cgroup v1 …" or "host".
	Source     string `json:"source"`
	LimitBytes uint64 `json:"limit_bytes"`
	// OthersBytes is what other processes use, left out of the budget:
	// on a host, its used memory less php-fpm's own; in a cgroup, 0 (the
	// limit is php-fpm's container's).
	OthersBytes  uint64 `json:"others_bytes"`
	ReserveBytes uint64 `json:"reserve_bytes"`
	// BudgetBytes is what php-fpm's masters, opcache and workers may use:
	// LimitBytes less OthersBytes less ReserveBytes.
	BudgetBytes uint64  `json:"budget_bytes"`
	CPUs        float64 `json:"cpus"` // the CPUs php-fpm may use: its cgroup's quota, else the host's
	CPUSource   string  `json:"cpu_source"`
}

// DefaultReserve is the share of the limit kept back when --reserve is not
// given: the page cache and the kernel need some, and a budget used to the
// last byte ends in the OOM killer.
const DefaultReserve = 0.10

// Host is where the memory figures are read: the real /proc and
// /sys/fs/cgroup, or a copy in tests.
type Host struct {
	Proc   string // "/proc"
	Cgroup string // "/sys/fs/cgroup"
}

// System is this machine.
var System = Host{Proc: "/proc", Cgroup: "/sys/fs/cgroup"}

// ReadMemory finds php-fpm's memory budget: the memory limit of the
// master's cgroup or of any cgroup above it when there is one, else the
// host's memory less what processes other than php-fpm use. fpmUsesBytes
// is what php-fpm uses now (its workers' and masters' PSS). limit and
// reserve, when not zero, override the limit found and the default
// reserve.
func (h Host) ReadMemory(masterPID int, fpmUsesBytes, limit, reserve uint64) (Memory, error) {
	var m Memory
	switch {
	case limit > 0:
		m.Source, m.LimitBytes = "--memory", limit
	default:
		if l, src, ok := h.cgroupLimit(masterPID); ok {
			m.Source, m.LimitBytes = src, l
			break
		}
		total, available, err := h.meminfo()
		if err != nil {
			return m, err
		}
		m.Source, m.LimitBytes = "host", total
		if used := total - min(available, total); used > fpmUsesBytes {
			m.OthersBytes = used - fpmUsesBytes
		}
	}
	m.ReserveBytes = reserve
	if reserve == 0 {
		m.ReserveBytes = uint64(float64(m.LimitBytes) * DefaultReserve)
	}
	if m.OthersBytes+m.ReserveBytes < m.LimitBytes {
		m.BudgetBytes = m.LimitBytes - m.OthersBytes - m.ReserveBytes
	}
	m.CPUs, m.CPUSource = h.cpus(masterPID)
	return m, nil
}

// cgroup is one line of /proc/PID/cgroup: a v1 hierarchy with its
// controllers, or the v2 one.
type cgroup struct {
	v2          bool
	controllers []string
	path        string
}

// cgroupsOf reads the cgroups of pid, nil when they cannot be read.
func (h Host) cgroupsOf(pid int) []cgroup {
	b, err := os.ReadFile(filepath.Join(h.Proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return nil
	}
	var out []cgroup
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		out = append(out, cgroup{v2: f[0] == "0" && f[1] == "", controllers: strings.Split(f[1], ","), path: f[2]})
	}
	return out
}

// cgroupLimit is the smallest memory limit on the path from the master's
// cgroup to the root, with its source.
func (h Host) cgroupLimit(pid int) (uint64, string, bool) {
	if pid <= 0 {
		pid = os.Getpid()
	}
	var best uint64
	var src string
	consider := func(dir, file, what string) {
		for d := dir; ; d = filepath.Dir(d) {
			v, err := os.ReadFile(filepath.Join(h.Cgroup, d, file))
			if err == nil {
				s := strings.TrimSpace(string(v))
				// v2 says "max"; v1 says a number near 2^63 for none.
				if n, err := strconv.ParseUint(s, 10, 64); err == nil && n < 1<<60 && (best == 0 || n < best) {
					best, src = n, fmt.Sprintf("%s %s of %s", what, file, d)
				}
			}
			if d == "/" || d == "." {
				return
			}
		}
	}
	for _, g := range h.cgroupsOf(pid) {
		switch {
		case g.v2:
			consider(g.path, "memory.max", "cgroup v2")
		case slices.Contains(g.controllers, "memory"):
			consider(filepath.Join("memory", g.path), "memory.limit_in_bytes", "cgroup v1")
		}
	}
	return best, src, best > 0
}

// cpus is the CPU quota of the master's cgroup (v2 cpu.max, v1
// cpu.cfs_quota_us), else the host's CPUs.
func (h Host) cpus(pid int) (float64, string) {
	n, src := float64(runtime.NumCPU()), "host"
	if pid <= 0 {
		return n, src
	}
	for _, g := range h.cgroupsOf(pid) {
		var quota, period float64
		switch {
		case g.v2:
			v, err := os.ReadFile(filepath.Join(h.Cgroup, g.path, "cpu.max"))
			if fs := strings.Fields(string(v)); err == nil && len(fs) == 2 {
				quota, _ = strconv.ParseFloat(fs[0], 64)
				period, _ = strconv.ParseFloat(fs[1], 64)
			}
		case slices.Contains(g.controllers, "cpu"):
			q, err1 := os.ReadFile(filepath.Join(h.Cgroup, "cpu", g.path, "cpu.cfs_quota_us"))
			p, err2 := os.ReadFile(filepath.Join(h.Cgroup, "cpu", g.path, "cpu.cfs_period_us"))
			if err1 == nil && err2 == nil {
				quota, _ = strconv.ParseFloat(strings.TrimSpace(string(q)), 64)
				period, _ = strconv.ParseFloat(strings.TrimSpace(string(p)), 64)
			}
		}
		if quota > 0 && period > 0 && quota/period < n {
			n, src = quota/period, "cgroup quota"
		}
	}
	return n, src
}

// meminfo is the host's MemTotal and MemAvailable.
func (h Host) meminfo() (total, available uint64, err error) {
	b, err := os.ReadFile(filepath.Join(h.Proc, "meminfo"))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the host's memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = n << 10
		case "MemAvailable:":
			available = n << 10
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("reading the host's memory: no MemTotal in %s", filepath.Join(h.Proc, "meminfo"))
	}
	return total, available, nil
}
