package supervisor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestOpcacheOncePerMaster: two pools under one master share one opcache,
// read once, through the pool with pm.status_listen.
func TestOpcacheOncePerMaster(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "alpha"}, {Name: "beta", StatusListen: true}}})
	ts := fpmTargets(t, fpm)
	targets := []Target{ts["alpha"], ts["beta"]}
	dir := fpmtest.Dir(t)
	pr := testProber(2 * time.Second)
	pr.Opcache = &OpcacheProber{Client: pr.Client, Dir: filepath.Join(dir, "fpmguard")}
	rep := pr.ProbeAll(context.Background(), targets, nil)
	if len(rep.Opcache) != 1 {
		t.Fatalf("opcache reports: %+v, want one for master %d", rep.Opcache, fpm.MasterPID())
	}
	o := rep.Opcache[0]
	if o.MasterPID != fpm.MasterPID() || strings.Join(o.Pools, ",") != "alpha,beta" || o.Via != "unix://"+fpm.Pools["beta"].StatusSocket {
		t.Errorf("opcache report %+v", o)
	}
	if o.Error != "" || !o.Enabled || o.Health != HealthOK || o.MemoryFreeBytes <= 0 || o.MaxCachedKeys <= 0 {
		t.Errorf("opcache report %+v", o)
	}
}
