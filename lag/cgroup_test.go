package lag

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFindCgroupCPU(t *testing.T) {
	for _, tc := range []struct {
		cgroup, mountinfo string
		want              string
		v2                bool
	}{
		{"cgroup-v1.txt", "mountinfo-v1.txt", "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/abc/cpu.stat", false},
		{"cgroup-v2.txt", "mountinfo-v2.txt", "/sys/fs/cgroup/system.slice/fpmguard.service/cpu.stat", true},
		// Inside a container the mount shows only the container's part of
		// the hierarchy.
		{"cgroup-v2-container.txt", "mountinfo-v2-container.txt", "/sys/fs/cgroup/cpu.stat", true},
		// A cgroup v1 host without a cpu controller mounted.
		{"cgroup-v1.txt", "mountinfo-v2.txt", "", false},
	} {
		t.Run(tc.cgroup+"+"+tc.mountinfo, func(t *testing.T) {
			var asked []string
			got := findCgroupCPUIn(read(t, tc.cgroup), read(t, tc.mountinfo), func(p string) bool {
				asked = append(asked, p)
				return p == tc.want
			})
			switch {
			case tc.want == "" && got != nil:
				t.Errorf("found %+v, want none", got)
			case tc.want != "" && (got == nil || got.path != tc.want || got.v2 != tc.v2):
				t.Errorf("found %+v, want %s (v2 %v); asked for %q", got, tc.want, tc.v2, asked)
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

// TestThisHost reads this machine's own cgroup, when it has a cpu
// controller: the counters must parse and never run backwards.
func TestThisHost(t *testing.T) {
	c := findCgroupCPU()
	if c == nil {
		t.Skip("no cgroup cpu controller here")
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
