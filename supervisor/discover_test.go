package supervisor

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
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
		master := fpm.Conf
		if fpm.Root != "" {
			master = fpm.Root + "/" + fpm.InRoot(fpm.Conf)
		}
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
