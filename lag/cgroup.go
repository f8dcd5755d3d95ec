package lag

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Controller is a cgroup controller fpmguard reads.
type Controller string

// The controllers.
const (
	CPU    Controller = "cpu"
	Memory Controller = "memory"
)

// Cgroup is a process's cgroup for one controller, where this host mounts
// it: fpmguard's own lag (cpu.stat), and the limits advice is computed
// within (memory, CPU quota), are read through it.
type Cgroup struct {
	Dir string // the cgroup's directory
	// Top is the mount point of its hierarchy: the highest directory a
	// walk up may read. Inside a container it is the container's own
	// cgroup.
	Top string
	V2  bool
}

// FindCgroup finds the cgroup of process pid (0 for fpmguard itself) for
// controller c, through /proc/PID/cgroup and fpmguard's own mountinfo:
// it reads the files through its own mounts, and the mount may show only
// a part of a hierarchy (a container's). root prefixes every path read:
// "" on this host, a copy of one in tests. false when c's hierarchy is not
// mounted here, or the cgroup is outside what the mount shows.
func FindCgroup(root string, pid int, c Controller) (Cgroup, bool) {
	proc := "self"
	if pid > 0 {
		proc = strconv.Itoa(pid)
	}
	cg, err := os.ReadFile(filepath.Join(root, "/proc", proc, "cgroup"))
	if err != nil {
		return Cgroup{}, false
	}
	mi, err := os.ReadFile(filepath.Join(root, "/proc/self/mountinfo"))
	if err != nil {
		return Cgroup{}, false
	}
	g, ok := findCgroupIn(cg, mi, c, func(dir string) bool { return isDir(filepath.Join(root, dir)) })
	if !ok {
		return Cgroup{}, false
	}
	g.Dir, g.Top = filepath.Join(root, g.Dir), filepath.Join(root, g.Top)
	return g, true
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// findCgroupIn is FindCgroup on given file contents; exists checks a
// directory on this host. A controller named on a v1 line of the cgroup
// file lives in that v1 hierarchy, and only there; any other lives in the
// v2 one, when there is one.
func findCgroupIn(cgroup, mountinfo []byte, c Controller, exists func(string) bool) (Cgroup, bool) {
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
		if hasOption(parts[1], string(c)) {
			v1Path, haveV1 = parts[2], true
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
		var path string
		switch {
		case haveV1 && g[0] == "cgroup" && hasOption(g[2], string(c)):
			path = v1Path
		case !haveV1 && haveV2 && g[0] == "cgroup2":
			path = v2Path
		default:
			continue
		}
		if dir, ok := under(mount, root, path); ok && exists(dir) {
			return Cgroup{Dir: dir, Top: mount, V2: g[0] == "cgroup2"}, true
		}
	}
	return Cgroup{}, false
}

// FindCgroupFile finds a file of a process's cgroup: v1File in the
// hierarchy of controller when it is a v1 one, else v2File in the unified
// hierarchy, where findCgroupIn finds the cgroup. cgroup is the process's
// /proc/PID/cgroup, read by fpmguard (its paths are relative to
// fpmguard's cgroup namespace); mountinfo is fpmguard's own
// /proc/self/mountinfo, the hierarchies it can reach; exists checks a path
// on this host. ok is false when there is none.
func FindCgroupFile(cgroup, mountinfo []byte, controller, v1File, v2File string, exists func(string) bool) (path string, v2, ok bool) {
	g, ok := findCgroupIn(cgroup, mountinfo, Controller(controller), func(string) bool { return true })
	if !ok {
		return "", false, false
	}
	file := v1File
	if g.V2 {
		file = v2File
	}
	path = filepath.Join(g.Dir, file)
	return path, g.V2, exists(path)
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// under places a cgroup path under the mount point of its hierarchy. The
// mount may show only a part of the hierarchy (its root), as in a
// container: the path is then relative to that root, and a path outside
// it cannot be read through this mount.
func under(mount, root, path string) (string, bool) {
	rel := path
	if root != "/" {
		var ok bool
		if rel, ok = strings.CutPrefix(path, root); !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			return "", false
		}
	}
	return filepath.Join(mount, rel), true
}

// Up lists the directories from g's up to the top of its hierarchy as
// mounted here, g's first.
func (g Cgroup) Up() []string {
	var dirs []string
	for d := g.Dir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == g.Top || !strings.HasPrefix(d, g.Top+"/") {
			return dirs
		}
	}
}

// Name is dir's path within the hierarchy, as /proc/PID/cgroup writes it
// ("/" for its top as mounted here).
func (g Cgroup) Name(dir string) string {
	rel, err := filepath.Rel(g.Top, dir)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + rel
}

// MemoryLimit is the smallest memory limit from g's cgroup up to the top
// of its hierarchy (memory.max on v2, memory.limit_in_bytes on v1), and
// where it is set. false when none is set.
func (g Cgroup) MemoryLimit() (uint64, string, bool) {
	file := "memory.limit_in_bytes"
	if g.V2 {
		file = "memory.max"
	}
	var best uint64
	var src string
	for _, d := range g.Up() {
		v, err := os.ReadFile(filepath.Join(d, file))
		if err != nil {
			continue
		}
		// v2 says "max"; v1 says a number near 2^63 for none.
		n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
		if err == nil && n < 1<<60 && (best == 0 || n < best) {
			best, src = n, g.source(file, d)
		}
	}
	return best, src, best > 0
}

// CPUQuota is the smallest CPU quota from g's cgroup up to the top of its
// hierarchy, in CPUs (cpu.max on v2, cpu.cfs_quota_us over
// cpu.cfs_period_us on v1), and where it is set. false when none is set.
func (g Cgroup) CPUQuota() (float64, string, bool) {
	var best float64
	var src string
	for _, d := range g.Up() {
		var quota, period float64
		file := "cpu.max"
		if g.V2 {
			v, err := os.ReadFile(filepath.Join(d, file))
			if fs := strings.Fields(string(v)); err == nil && len(fs) == 2 {
				quota, _ = strconv.ParseFloat(fs[0], 64) // "max": none
				period, _ = strconv.ParseFloat(fs[1], 64)
			}
		} else {
			file = "cpu.cfs_quota_us"
			q, err1 := os.ReadFile(filepath.Join(d, file))
			p, err2 := os.ReadFile(filepath.Join(d, "cpu.cfs_period_us"))
			if err1 == nil && err2 == nil {
				quota, _ = strconv.ParseFloat(strings.TrimSpace(string(q)), 64) // -1: none
				period, _ = strconv.ParseFloat(strings.TrimSpace(string(p)), 64)
			}
		}
		if quota > 0 && period > 0 && (best == 0 || quota/period < best) {
			best, src = quota/period, g.source(file, d)
		}
	}
	return best, src, best > 0
}

func (g Cgroup) source(file, dir string) string {
	v := "v1"
	if g.V2 {
		v = "v2"
	}
	return fmt.Sprintf("cgroup %s %s of %s", v, file, g.Name(dir))
}

// cgroupCPU is the cpu.stat file of this process's cgroup.
type cgroupCPU struct {
	path string
	v2   bool // cgroup v2 counts throttled time in µs, v1 in ns
}

// findCgroupCPU finds this process's cpu.stat, nil when there is none to
// read.
func findCgroupCPU() *cgroupCPU {
	g, ok := FindCgroup("", 0, CPU)
	if !ok {
		return nil
	}
	return &cgroupCPU{path: filepath.Join(g.Dir, "cpu.stat"), v2: g.V2}
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
