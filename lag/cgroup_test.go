package lag

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFindCgroup(t *testing.T) {
	for _, tc := range []struct {
		cgroup, mountinfo string
		c                 Controller
		want, top         string
		v2                bool
	}{
		{"cgroup-v1.txt", "mountinfo-v1.txt", CPU, "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/abc", "/sys/fs/cgroup/cpu,cpuacct", false},
		{"cgroup-v1.txt", "mountinfo-v1.txt", Memory, "/sys/fs/cgroup/memory/kubepods/pod1/abc", "/sys/fs/cgroup/memory", false},
		{"cgroup-v2.txt", "mountinfo-v2.txt", CPU, "/sys/fs/cgroup/system.slice/fpmguard.service", "/sys/fs/cgroup", true},
		{"cgroup-v2.txt", "mountinfo-v2.txt", Memory, "/sys/fs/cgroup/system.slice/fpmguard.service", "/sys/fs/cgroup", true},
		// Inside a container the mount shows only the container's part of
		// the hierarchy.
		{"cgroup-v2-container.txt", "mountinfo-v2-container.txt", CPU, "/sys/fs/cgroup", "/sys/fs/cgroup", true},
		// A cgroup v1 host without a cpu controller mounted: the
		// controller lives in v1, never in the v2 hierarchy beside it.
		{"cgroup-v1.txt", "mountinfo-v2.txt", CPU, "", "", false},
		// A process of another container, outside what the mount shows.
		{"cgroup-v2.txt", "mountinfo-v2-container.txt", Memory, "", "", false},
	} {
		t.Run(tc.cgroup+"+"+tc.mountinfo+"+"+string(tc.c), func(t *testing.T) {
			var asked []string
			got, ok := findCgroupIn(read(t, tc.cgroup), read(t, tc.mountinfo), tc.c, func(p string) bool {
				asked = append(asked, p)
				return p == tc.want
			})
			switch {
			case tc.want == "" && ok:
				t.Errorf("found %+v, want none", got)
			case tc.want != "" && (got != Cgroup{Dir: tc.want, Top: tc.top, V2: tc.v2}):
				t.Errorf("found %+v (%v), want %s below %s (v2 %v); asked for %q", got, ok, tc.want, tc.top, tc.v2, asked)
			}
		})
	}
}

const (
	mountsV1 = "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n36 30 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	mountsV2 = "26 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
)

// TestLimits: the smallest limit on the way up from a process's cgroup
// to the top of its hierarchy, and where it is set.
func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name             string
		files            map[string]string
		memory           uint64
		memSrc           string
		cpus             float64
		cpuSrc           string
		memOK, cpusFound bool
	}{
		{
			name: "v2",
			files: map[string]string{"proc/7/cgroup": "0::/kubepods/pod1/php\n", "proc/self/mountinfo": mountsV2,
				"sys/fs/cgroup/kubepods/pod1/php/memory.max": "max\n", "sys/fs/cgroup/kubepods/pod1/memory.max": "1073741824\n", "sys/fs/cgroup/kubepods/memory.max": "8589934592\n",
				"sys/fs/cgroup/kubepods/pod1/php/cpu.max": "max 100000\n", "sys/fs/cgroup/kubepods/pod1/cpu.max": "150000 100000\n", "sys/fs/cgroup/kubepods/cpu.max": "400000 100000\n"},
			memory: 1 << 30, memSrc: "cgroup v2 memory.max of /kubepods/pod1", memOK: true,
			cpus: 1.5, cpuSrc: "cgroup v2 cpu.max of /kubepods/pod1", cpusFound: true,
		},
		{
			name: "v1",
			files: map[string]string{"proc/7/cgroup": "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n", "proc/self/mountinfo": mountsV1,
				"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "536870912\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
				"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
				"sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us": "50000\n", "sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us": "100000\n"},
			memory: 512 << 20, memSrc: "cgroup v1 memory.limit_in_bytes of /docker/abc", memOK: true,
			cpus: 0.5, cpuSrc: "cgroup v1 cpu.cfs_quota_us of /docker", cpusFound: true,
		},
		{
			name:  "no limit",
			files: map[string]string{"proc/7/cgroup": "0::/php\n", "proc/self/mountinfo": mountsV2, "sys/fs/cgroup/php/memory.max": "max\n", "sys/fs/cgroup/php/cpu.max": "max 100000\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fpmtest.Tree(t, tc.files)
			mem, ok := FindCgroup(root, 7, Memory)
			if !ok {
				t.Fatalf("no memory cgroup found below %s", root)
			}
			n, src, found := mem.MemoryLimit()
			if found != tc.memOK || n != tc.memory || src != tc.memSrc {
				t.Errorf("memory %d from %q (%v), want %d from %q", n, src, found, tc.memory, tc.memSrc)
			}
			cpu, ok := FindCgroup(root, 7, CPU)
			if !ok {
				t.Fatalf("no cpu cgroup found below %s", root)
			}
			cpus, src, found := cpu.CPUQuota()
			if found != tc.cpusFound || cpus != tc.cpus || src != tc.cpuSrc {
				t.Errorf("CPUs %v from %q (%v), want %v from %q", cpus, src, found, tc.cpus, tc.cpuSrc)
			}
		})
	}
}

func TestParseCPUStat(t *testing.T) {
	want := Throttling{Periods: 4200, Throttled: 713, Time: 39871234567 * time.Nanosecond}
	if got := parseCPUStat(read(t, "cpu.stat-v1"), false); got != want {
		t.Errorf("v1: %+v, want %+v", got, want)
	}
	want.Time = 39871234 * time.Microsecond
	if got := parseCPUStat(read(t, "cpu.stat-v2"), true); got != want {
		t.Errorf("v2: %+v, want %+v", got, want)
	}
}

// TestThisHost reads this machine's own cgroup: the counters must parse
// and never run backwards. A machine without a cgroup cpu controller
// skips it, but make test (FPMGUARD_INTEGRATION=require) fails instead.
func TestThisHost(t *testing.T) {
	c := findCgroupCPU()
	if c == nil {
		fpmtest.RequireIntegration(t, "no cgroup cpu controller mounted here")
	}
	a, err := c.read()
	if err != nil {
		t.Fatalf("reading %s: %v", c.path, err)
	}
	b, err := c.read()
	if err != nil || b.Periods < a.Periods || b.Throttled < a.Throttled || b.Time < a.Time {
		t.Errorf("%s went from %+v to %+v (%v)", c.path, a, b, err)
	}
}
