package lag

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroupCPU is the cpu.stat file of this process's cgroup.
type cgroupCPU struct {
	path string
	v2   bool // cgroup v2 counts throttled time in µs, v1 in ns
}

// findCgroupCPU finds this process's cpu.stat through /proc/self/cgroup and
// /proc/self/mountinfo, for cgroup v1 (a "cpu" controller) and v2. It
// returns nil when there is none to read.
func findCgroupCPU() *cgroupCPU {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return findCgroupCPUIn(cg, mi, fileExists)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// findCgroupCPUIn is findCgroupCPU on given file contents; exists checks a
// path on this host.
func findCgroupCPUIn(cgroup, mountinfo []byte, exists func(string) bool) *cgroupCPU {
	path, v2, ok := FindCgroupFile(cgroup, mountinfo, "cpu", "cpu.stat", "cpu.stat", exists)
	if !ok {
		return nil
	}
	return &cgroupCPU{path: path, v2: v2}
}

// FindCgroupFile finds a file of a process's cgroup: v1File in the
// hierarchy of the v1 controller, or v2File in the unified hierarchy,
// whichever exists first in mount order. cgroup is the process's
// /proc/PID/cgroup, read by fpmguard (its paths are relative to
// fpmguard's cgroup namespace); mountinfo is fpmguard's own
// /proc/self/mountinfo, the hierarchies it can reach; exists checks a path
// on this host. ok is false when there is none.
func FindCgroupFile(cgroup, mountinfo []byte, controller, v1File, v2File string, exists func(string) bool) (path string, v2, ok bool) {
	var v1Path, v2Path string
	haveV1, haveV2 := false, false
	for _, line := range strings.Split(string(cgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, haveV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				v1Path, haveV1 = parts[2], true
			}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, mount := f[3], f[4]
		switch {
		case haveV1 && g[0] == "cgroup" && hasOption(g[2], controller):
			if p := join(mount, root, v1Path, v1File); exists(p) {
				return p, false, true
			}
		case haveV2 && g[0] == "cgroup2":
			if p := join(mount, root, v2Path, v2File); exists(p) {
				return p, true, true
			}
		}
	}
	return "", false, false
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// join places a cgroup path under the mount point of its hierarchy. The
// mount may show only a part of the hierarchy (its root), as in a
// container: the path is then relative to that root.
func join(mount, root, path, file string) string {
	rel := path
	if root != "/" {
		rel = strings.TrimPrefix(path, root)
	}
	return filepath.Join(mount, rel, file)
}

func (c *cgroupCPU) read() (Throttling, error) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return Throttling{}, err
	}
	return parseCPUStat(b, c.v2), nil
}

// parseCPUStat reads nr_periods, nr_throttled and the throttled time.
func parseCPUStat(b []byte, v2 bool) Throttling {
	var t Throttling
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "nr_periods":
			t.Periods = n
		case "nr_throttled":
			t.Throttled = n
		case "throttled_time": // v1, ns
			if !v2 {
				t.Time = time.Duration(n)
			}
		case "throttled_usec": // v2
			t.Time = time.Duration(n) * time.Microsecond
		}
	}
	return t
}
