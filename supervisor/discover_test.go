package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func TestDiscoverRunningMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "alpha", StatusListen: true}, {Name: "beta"}}})
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
	a := found["alpha"]
	if a.Address.Addr != fpm.Pools["alpha"].Listen || a.StatusAddress.Addr != fpm.Pools["alpha"].StatusSocket || a.Source != "discovered" {
		t.Errorf("alpha = %+v", a)
	}
	rep := testProber(time.Second).ProbeAll(context.Background(), []Target{found["alpha"], found["beta"]}, nil)
	for _, p := range rep.Pools {
		if p.Health != HealthOK {
			t.Errorf("pool %s: %s %q", p.Name, p.Health, p.Reasons)
		}
	}
}
