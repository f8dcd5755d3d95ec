package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// TestNoVerdictBeforeFirstProbe: before its first probe a pool is unknown,
// its heartbeat and status read neither failed nor up; readiness waits for
// it and liveness does not fail for it. nginx's counts are not there
// before its log is open.
func TestNoVerdictBeforeFirstProbe(t *testing.T) {
	dir := fpmtest.Dir(t)
	tg, err := supervisor.ParsePoolSpec("unix://" + dir + "/www.sock,name=www,pm=static,pm.max_children=3")
	if err != nil {
		t.Fatal(err)
	}
	w := New(&supervisor.Prober{Procs: supervisor.SystemProcs}, []supervisor.Target{tg}, Config{FirstProbeAfter: time.Hour}, event.NewLog(nil))
	log := filepath.Join(dir, "nginx-error.log")
	w.FollowNginx([]string{log})
	run(t, w)

	s := w.Snapshot()
	v := s.Pools[0]
	r := v.Report
	if v.Probed() || r.Health != supervisor.HealthUnknown || strings.Join(r.Reasons, "") != "not probed yet" || r.Config.MaxChildren != 3 {
		t.Errorf("a pool not probed yet: probed %v, %s %q, config %+v", v.Probed(), r.Health, r.Reasons, r.Config)
	}
	if r.Heartbeat.Failed() || r.Status.Failed() || r.Heartbeat.OK || r.Status.OK {
		t.Errorf("a heartbeat and status read not made yet: %+v %+v", r.Heartbeat, r.Status)
	}
	if ok, reasons := w.Ready(); ok || !strings.Contains(strings.Join(reasons, ""), "pool www: not probed yet") {
		t.Errorf("ready %v %q before the first probe", ok, reasons)
	}
	if ok, reasons := w.Live(); !ok {
		t.Errorf("not live before the first probe: %q", reasons)
	}
	if s.Nginx != nil {
		t.Errorf("nginx counts %v before its log exists", s.Nginx)
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) { return true, w.Snapshot().Nginx != nil })
}
