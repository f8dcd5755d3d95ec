package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestNotMonitored: a pool with neither ping.path nor pm.status_path is
// checked, the kernel showing its socket listening, without a connection
// that would wait in its queue; it is unknown, never ok. With nothing
// listening it is down. A pool without ping.path whose status is read
// through pm.status_listen is checked as well.
func TestNotMonitored(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{
		{Name: "stock", MaxChildren: 1, StatusPath: "-", PingPath: "-"},
		{Name: "listener", MaxChildren: 1, PingPath: "-", StatusListen: true},
	}})
	targets := fpmTargets(t, fpm)
	pr := testProber(30 * time.Second)
	pr.Client.Probe = true
	stock := targets["stock"]
	before := fastcgi.RequestsSent(stock.Address)
	r := pr.Probe(context.Background(), stock, nil)
	if r.Health != HealthUnknown || r.Connect == nil || !r.Connect.OK || !strings.HasPrefix(strings.Join(r.Reasons, ""), "not monitored") {
		t.Errorf("stock pool: %s %q, connect %+v", r.Health, r.Reasons, r.Connect)
	}
	if n := fastcgi.RequestsSent(stock.Address) - before; n != 0 {
		t.Errorf("%d connections to the stock pool, want none: the kernel shows it listening", n)
	}
	r = pr.Probe(context.Background(), targets["listener"], nil)
	if r.Health != HealthOK || r.Connect == nil || !r.Connect.OK {
		t.Errorf("pool without ping.path, status through its listener: %s %q, connect %+v", r.Health, r.Reasons, r.Connect)
	}

	gone := stock
	gone.Address.Addr = fpmtest.Dir(t) + "/gone.sock"
	gone.MasterPID, gone.MasterPIDFile = 0, ""
	r = pr.Probe(context.Background(), gone, nil)
	if r.Health != HealthDown || r.Connect == nil || r.Connect.OK {
		t.Errorf("nothing listening: %s %q, connect %+v", r.Health, r.Reasons, r.Connect)
	}
}
