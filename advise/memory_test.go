package advise

import (
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// fakeHost is a host whose files (path → content) are below a temporary
// root.
func fakeHost(t *testing.T, files map[string]string) Host {
	return Host{Root: fpmtest.Tree(t, files)}
}

// The cgroup mounts of the fake hosts, as fpmguard's own mountinfo shows
// them.
const (
	mountsV1 = "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n36 30 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	mountsV2 = "26 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
)

const meminfo = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:   12288000 kB\n"

func TestReadMemory(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		limit   uint64
		reserve uint64
		source  string
		want    Memory
	}{
		{
			name: "host: its memory less what others use",
			// 16000 MiB total, 12000 available: 4000 used, 1000 of them
			// by php-fpm.
			files:  map[string]string{"proc/7/cgroup": "0::/\n", "proc/self/mountinfo": mountsV2, "proc/meminfo": meminfo},
			source: "host",
			want:   Memory{LimitBytes: 16000 * MiB, OthersBytes: 3000 * MiB, ReserveBytes: 1600 * MiB, BudgetBytes: 11400 * MiB},
		},
		{
			name: "cgroup v2: the smallest limit on the way up",
			files: map[string]string{"proc/7/cgroup": "0::/kubepods/pod1/php\n", "proc/self/mountinfo": mountsV2, "proc/meminfo": meminfo,
				"sys/fs/cgroup/kubepods/pod1/php/memory.max": "max\n", "sys/fs/cgroup/kubepods/pod1/memory.max": "1073741824\n", "sys/fs/cgroup/kubepods/memory.max": "8589934592\n"},
			source: "cgroup v2 memory.max of /kubepods/pod1",
			want:   Memory{LimitBytes: 1 << 30, ReserveBytes: 107374182, BudgetBytes: 1<<30 - 107374182},
		},
		{
			name: "cgroup v1",
			files: map[string]string{"proc/7/cgroup": "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", "proc/self/mountinfo": mountsV1, "proc/meminfo": meminfo,
				"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "536870912\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"},
			source: "cgroup v1 memory.limit_in_bytes of /docker/abc",
			want:   Memory{LimitBytes: 512 * MiB, ReserveBytes: 53687091, BudgetBytes: 512*MiB - 53687091},
		},
		{
			name:  "--memory and --reserve win",
			files: map[string]string{"proc/7/cgroup": "0::/php\n", "proc/self/mountinfo": mountsV2, "sys/fs/cgroup/php/memory.max": "1073741824\n"},
			limit: 2 << 30, reserve: 256 * MiB, source: "--memory",
			want: Memory{LimitBytes: 2 << 30, ReserveBytes: 256 * MiB, BudgetBytes: 2<<30 - 256*MiB},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := fakeHost(t, tt.files)
			m, err := h.ReadMemory(7, 1000*MiB, tt.limit, tt.reserve)
			if err != nil {
				t.Fatal(err)
			}
			if m.Source != tt.source || m.LimitBytes != tt.want.LimitBytes || m.OthersBytes != tt.want.OthersBytes ||
				m.ReserveBytes != tt.want.ReserveBytes || m.BudgetBytes != tt.want.BudgetBytes {
				t.Errorf("got %+v\nwant source %q and %+v", m, tt.source, tt.want)
			}
		})
	}
}

func TestReadCPUs(t *testing.T) {
	h := fakeHost(t, map[string]string{"proc/self/mountinfo": mountsV1 + mountsV2,
		"proc/7/cgroup": "0::/php\n", "sys/fs/cgroup/php/cpu.max": "max 100000\n", "sys/fs/cgroup/cpu.max": "50000 100000\n",
		"proc/8/cgroup": "3:cpu,cpuacct:/php\n", "sys/fs/cgroup/cpu,cpuacct/php/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu,cpuacct/php/cpu.cfs_period_us": "100000\n"})
	// The quota of a cgroup above the master's holds it too.
	if n, src := h.cpus(7); n != 0.5 || src != "cgroup v2 cpu.max of /" {
		t.Errorf("v2 quota: %v CPUs from %q, want 0.5 from the cgroup above", n, src)
	}
	if _, src := h.cpus(8); src != "host" {
		t.Errorf("v1 without a quota: CPUs from %q, want the host's", src)
	}
}

func TestReadMemoryWithoutMeminfo(t *testing.T) {
	_, err := fakeHost(t, nil).ReadMemory(7, 0, 0, 0)
	if err == nil || !strings.Contains(err.Error(), "reading the host's memory") {
		t.Errorf("err = %v", err)
	}
}
