package advise

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/lag"
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

// Host is where the memory figures are read: Root prefixes every path
// (/proc, the cgroup mounts), "" on this machine, a copy of one in tests.
type Host struct {
	Root string
}

// System is this machine.
var System = Host{}

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

// cgroupLimit is the smallest memory limit on the path from the master's
// cgroup to the top of its hierarchy, with its source.
func (h Host) cgroupLimit(pid int) (uint64, string, bool) {
	if pid <= 0 {
		pid = os.Getpid()
	}
	g, ok := lag.FindCgroup(h.Root, pid, lag.Memory)
	if !ok {
		return 0, "", false
	}
	return g.MemoryLimit()
}

// cpus is the smallest CPU quota on the path from the master's cgroup to
// the top of its hierarchy, else the host's CPUs.
func (h Host) cpus(pid int) (float64, string) {
	n, src := float64(runtime.NumCPU()), "host"
	if pid <= 0 {
		return n, src
	}
	if g, ok := lag.FindCgroup(h.Root, pid, lag.CPU); ok {
		if q, qsrc, ok := g.CPUQuota(); ok && q < n {
			n, src = q, qsrc
		}
	}
	return n, src
}

// meminfo is the host's MemTotal and MemAvailable.
func (h Host) meminfo() (total, available uint64, err error) {
	b, err := os.ReadFile(filepath.Join(h.Root, "/proc/meminfo"))
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
		return 0, 0, fmt.Errorf("reading the host's memory: no MemTotal in %s", filepath.Join(h.Root, "/proc/meminfo"))
	}
	return total, available, nil
}
