package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/shirou/gopsutil/v4/process"
)

// TestDiscoverRunningMaster finds a master of each PHP version with no
// flags: 7.4 and 8.4 in their own root, seen through /proc/PID/root as a
// master in another container of the pod is, 8.2 on the host. The pools
// are probed, and the opcache read with a script fpmguard places, through
// that root.
func TestDiscoverRunningMaster(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "alpha", StatusListen: fpmtest.HasStatusListen(v)}, {Name: "beta"}}})
		targets, err := Discover(context.Background(), Trust{})
		// Other masters on the machine may fail to load; ours must not.
		found := map[string]Target{}
		for _, tg := range targets {
			if tg.MasterPID == fpm.MasterPID() {
				found[tg.Name] = tg
			}
		}
		if len(found) != 2 {
			t.Fatalf("discovered %+v (err %v), want pools alpha and beta of master %d", targets, err, fpm.MasterPID())
		}
		root := ""
		if fpm.Root != "" {
			root = "/proc/" + strconv.Itoa(fpm.MasterPID()) + "/root"
		}
		a := found["alpha"]
		wantStatus := ""
		if fpmtest.HasStatusListen(v) {
			wantStatus = root + fpm.InRoot(fpm.Pools["alpha"].StatusSocket)
		}
		if a.Address.Addr != root+fpm.InRoot(fpm.Pools["alpha"].Listen) || a.StatusAddress.Addr != wantStatus || a.Root != root || a.Source != "discovered" {
			t.Errorf("alpha = %+v", a)
		}
		// The master is named by its config, and by its root's path on the
		// host (the chroot's) when it has one of its own: never its pid.
		master := fpm.MasterName()
		rep := testProber(time.Second).ProbeAll(context.Background(), []Target{found["alpha"], found["beta"]}, nil)
		for _, p := range rep.Pools {
			if p.Health != HealthOK || len(p.Processes) != 2 {
				t.Errorf("pool %s: %s %q with %d workers", p.Name, p.Health, p.Reasons, len(p.Processes))
			}
			if p.MasterName != master {
				t.Errorf("pool %s: master %q, want %q", p.Name, p.MasterName, master)
			}
		}
		// fpmguard places its opcache script in the master's root.
		o := &OpcacheProber{Client: testProber(10 * time.Second).Client, Dir: fpm.InRoot(filepath.Join(fpm.Dir, "fpmguard"))}
		oc := o.Probe(context.Background(), []Target{found["alpha"], found["beta"]}, rep.Pools, nil)
		if len(oc) != 1 || oc[0].MasterPID != fpm.MasterPID() || oc[0].Master != master || !oc[0].Enabled || oc[0].Error != "" || oc[0].MaxCachedKeys == 0 {
			t.Errorf("opcache through the root: %+v", oc)
		}
	})
}

// TestDiscoverOnlyConfigs: with Trust.Configs, discovery keeps the masters
// whose name matches a pattern, and no other: here an 8.2 master on the
// host and one of the first version run in a root of its own, while the
// machine's other masters (other tests') are never kept.
func TestDiscoverOnlyConfigs(t *testing.T) {
	host := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "onhost"}}})
	rooted := fpmtest.Start(t, fpmtest.Options{Version: fpmtest.Versions[0], Pools: []fpmtest.Pool{{Name: "inroot"}}})
	for _, tc := range []struct {
		name     string
		patterns []string
		want     []string // pools, sorted
	}{
		{"one config", []string{host.MasterName()}, []string{"onhost"}},
		{"a glob over the root's path", []string{filepath.Dir(rooted.Root) + "/*/" + rooted.InRoot(rooted.Conf)}, []string{"inroot"}},
		{"both", []string{host.MasterName(), rooted.MasterName()}, []string{"inroot", "onhost"}},
		{"none matches", []string{"/etc/php/*/fpm/nothing.conf"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, err := Discover(context.Background(), Trust{Configs: tc.patterns})
			var got []string
			for _, tg := range targets {
				got = append(got, tg.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("discovered pools %q (err %v), want %q", got, err, tc.want)
			}
			if tc.want == nil && !errors.Is(err, ErrNoMaster) {
				t.Errorf("no master matching: err %v, want ErrNoMaster", err)
			}
		})
	}
}

// TestDiscoveryFollowsMasters scans again and again as serve does with no
// pool named: a master started after the first scan is found, its
// restart (a new pid, in its root for 7.4 and 8.4) is followed, and so is
// a reload that adds a pool; a master stopped for good keeps its pools,
// reported down; a forged master is told once. Other masters on the
// machine are left out of every assertion.
func TestDiscoveryFollowsMasters(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		d := &Discovery{}
		if _, _, err := d.Scan(t.Context()); err != nil {
			t.Logf("first scan, before our master: %v", err)
		}
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{Name: "alpha"}}})
		conf := fpm.InRoot(fpm.Conf)
		ours := func() (pools []string, master int, root string) {
			ts, _, err := d.Scan(t.Context())
			for _, tg := range ts {
				if tg.MasterConfig == conf {
					pools = append(pools, tg.Name)
					master, root = tg.MasterPID, tg.Root
				}
			}
			if len(pools) == 0 {
				t.Logf("scan: %v", err)
			}
			return pools, master, root
		}
		wantRoot := func(pid int) string {
			if fpm.Root == "" {
				return ""
			}
			return "/proc/" + strconv.Itoa(pid) + "/root"
		}
		check := func(when string, want []string, pid int) {
			t.Helper()
			fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
				pools, master, root := ours()
				got := fmt.Sprint(pools, master, root)
				return got, got == fmt.Sprint(want, pid, wantRoot(pid))
			})
			t.Logf("%s: pools %v of master %d", when, want, pid)
		}
		check("started after the first scan", []string{"alpha"}, fpm.MasterPID())

		fpm.Restart(t)
		check("restarted", []string{"alpha"}, fpm.MasterPID())

		fpm.Reconfigure(t, []fpmtest.Pool{{Name: "alpha"}, {Name: "beta"}})
		if err := fpm.Signal(syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		check("reloaded with pool beta", []string{"alpha", "beta"}, fpm.MasterPID())

		pid := fpm.MasterPID()
		fpm.Stop(t)
		check("stopped for good", []string{"alpha", "beta"}, pid)
		if i := slices.IndexFunc(d.known, func(k *knownMaster) bool { return k.pid == pid }); i < 0 || d.known[i].running || !d.Missing() {
			t.Errorf("master %d stopped: known %+v, missing %v", pid, d.known, d.Missing())
		}
	})
}

// TestDiscoveryTellsUntrustedOnce: a process with a master's title that
// fpmguard does not trust is told by the first scan that finds it, and by
// no later one.
func TestDiscoveryTellsUntrustedOnce(t *testing.T) {
	forged := fpmtest.Forge(t, fpmtest.ForgeOptions{Title: "php-fpm: master process (/etc/forged.conf)", UID: fpmtest.PoolUser, BinaryOwner: fpmtest.PoolUser})
	d := &Discovery{}
	says := "php-fpm master " + strconv.Itoa(forged.PID) + " "
	for i, want := range []bool{true, false, false} {
		_, _, err := d.Scan(t.Context())
		if got := strings.Contains(errString(err), says); got != want {
			t.Errorf("scan %d: %v; want it told: %v", i+1, err, want)
		}
	}
}

// BenchmarkDiscoveryScan is what a rescan of serve with no pool named
// costs, in CPU per scan of this machine's process table (procs/op
// processes): "scan" is Discovery.Scan with nothing changed, as every
// rescan but the first; "gopsutil-titles" the way ScanMasters read every
// process's title before (gopsutil, which also stats each file); and
// "probe-one-pool" a quiet pool's probe, the watch loop's unit of work,
// for scale.
func BenchmarkDiscoveryScan(b *testing.B) {
	fpm := fpmtest.Start(b, fpmtest.Options{})
	pids, err := process.PidsWithContext(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("scan", func(b *testing.B) {
		d := &Discovery{}
		if _, _, err := d.Scan(b.Context()); err != nil {
			b.Logf("first scan: %v", err)
		}
		benchCPU(b, func() { _, _, _ = d.Scan(b.Context()) })
		b.ReportMetric(float64(len(pids)), "procs/op")
	})
	b.Run("scan-narrowed", func(b *testing.B) {
		// --discover-config naming one master: the others are read as far
		// as their names, and no further.
		d := &Discovery{Trust: Trust{Configs: []string{fpm.MasterName()}}}
		if _, _, err := d.Scan(b.Context()); err != nil {
			b.Logf("first scan: %v", err)
		}
		benchCPU(b, func() { _, _, _ = d.Scan(b.Context()) })
		b.ReportMetric(float64(len(pids)), "procs/op")
	})
	b.Run("gopsutil-titles", func(b *testing.B) {
		benchCPU(b, func() {
			ps, _ := process.PidsWithContext(b.Context())
			for _, pid := range ps {
				_, _ = (&process.Process{Pid: pid}).CmdlineWithContext(b.Context())
			}
		})
		b.ReportMetric(float64(len(pids)), "procs/op")
	})
	b.Run("probe-one-pool", func(b *testing.B) {
		ts, err := LoadFPMConfig(fpm.Conf)
		if err != nil {
			b.Fatal(err)
		}
		pr := testProber(time.Second)
		benchCPU(b, func() { pr.Probe(b.Context(), ts[0], nil) })
	})
}

// benchCPU runs fn in b's loop and reports the CPU time of this process per
// op (cpu-ns/op), beside the wall time: on a loaded runner the wall time
// holds the waits for a CPU.
func benchCPU(b *testing.B, fn func()) {
	b.ReportAllocs()
	start := fpmtest.CPUTime()
	for b.Loop() {
		fn()
	}
	b.ReportMetric(float64(fpmtest.CPUTime()-start)/float64(b.N), "cpu-ns/op")
}
