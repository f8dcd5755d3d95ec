package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(r *PoolReport)
		th    CheckThresholds
		code  int
		line  string
	}{
		{
			name: "ok", spoil: func(*PoolReport) {}, code: CheckOK,
			line: "FPMGUARD OK - www ok | 'www_latency'=0.000200s;;;0 'www_queue'=0;;;0 'www_busy'=0;;;0;2 'www_total'=2;;;0;2 'www_hung'=0;;;0",
		},
		{
			name: "degraded is a warning", spoil: func(r *PoolReport) {
				r.Counters.ListenQueue, r.Processes[0] = 2, running(101, 1, "/a.php")
				r.Processes[1] = running(102, 1, "/b.php")
			}, code: CheckWarning,
			line: "FPMGUARD WARNING - www degraded (listen queue 2: requests are waiting for a worker; +1 more)",
		},
		{
			name: "down is critical", spoil: func(r *PoolReport) { r.Heartbeat = failedHeartbeat(fastcgi.ReasonRefused, fastcgi.ClassRefused, 502) }, code: CheckCritical,
			line: "FPMGUARD CRITICAL - www down (nothing listens",
		},
		{
			name: "latency threshold", spoil: func(*PoolReport) {}, th: CheckThresholds{WarnLatency: 100 * time.Microsecond, CritLatency: time.Second}, code: CheckWarning,
			line: "FPMGUARD WARNING - www ok heartbeat 200µs over 100µs | 'www_latency'=0.000200s;0.0001;1;0",
		},
		{
			name: "busy threshold", spoil: func(r *PoolReport) { r.Processes[0] = running(101, 1, "/a.php") }, th: CheckThresholds{CritBusy: 0.5}, code: CheckCritical,
			line: "FPMGUARD CRITICAL - www ok 1 of 2 workers busy",
		},
		{
			name: "not monitored is unknown", spoil: unmonitored, code: CheckUnknown,
			line: "FPMGUARD UNKNOWN - www unknown (not monitored: ",
		},
		{
			name: "not monitored and refused is critical", spoil: func(r *PoolReport) {
				unmonitored(r)
				r.Connect = failedConnect(fastcgi.ClassRefused)
			}, code: CheckCritical,
			line: "FPMGUARD CRITICAL - www down (nothing listens",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.spoil(&r)
			Mark(&r, Thresholds{})
			Judge(&r, nil, Thresholds{})
			res := Check(&Report{Pools: []PoolReport{r}}, tt.th)
			if res.Code != tt.code || !strings.HasPrefix(res.Line, tt.line) || strings.Contains(res.Line, "\n") {
				t.Errorf("got %d %q\nwant %d %q…", res.Code, res.Line, tt.code, tt.line)
			}
		})
	}
	if res := Check(&Report{}, CheckThresholds{}); res.Code != CheckUnknown {
		t.Errorf("no pools: %+v, want UNKNOWN", res)
	}
}

// TestCheckOpcacheNotRead: an opcache the command had no time to read is
// UNKNOWN, never ok, and gives no figures.
func TestCheckOpcacheNotRead(t *testing.T) {
	r := healthy()
	Judge(&r, nil, Thresholds{})
	o := OpcacheReport{MasterPID: 100, Master: "/etc/php/8.2/fpm/php-fpm.conf", Health: HealthUnknown, Reasons: []string{}, Inconclusive: "the opcache was not read: the pools' probes used the whole timeout"}
	res := Check(&Report{Pools: []PoolReport{r}, Opcache: []OpcacheReport{o}}, CheckThresholds{})
	if res.Code != CheckUnknown || strings.Contains(res.Line, "(master 100) ok") || strings.Contains(res.Line, "opcache@") {
		t.Errorf("got %d %q", res.Code, res.Line)
	}
	if !strings.Contains(res.Line, "opcache of /etc/php/8.2/fpm/php-fpm.conf (master 100) unknown [not judged: the opcache was not read") {
		t.Errorf("line %q does not say the opcache was not read", res.Line)
	}
}

// TestCheckNamesPoolsApart: www under three masters gives three sets of
// perfdata, each pool named with its master, and the opcache named by its
// master's config: a restart of php-fpm (a new pid) changes no label, so a
// graph in Nagios or Icinga goes on. A pool whose name is its own keeps the
// label it always had.
func TestCheckNamesPoolsApart(t *testing.T) {
	masters := []string{"/srv/php74//etc/php/7.4/fpm/php-fpm.conf", "/etc/php/8.2/fpm/php-fpm.conf", "/etc/php/8.4/fpm/php-fpm.conf"}
	report := func(firstPID int) *Report {
		rep := &Report{}
		for i, m := range masters {
			r := healthy()
			r.MasterName = m
			r.Master.PID = firstPID + i
			r.Counters.ListenQueue = int64(i)
			if i > 0 {
				// Requests wait only while no worker is idle.
				r.Processes = []ProcessState{running(101, 1, "/a.php"), running(102, 1, "/b.php")}
			}
			Judge(&r, nil, Thresholds{})
			rep.Pools = append(rep.Pools, r)
			rep.Opcache = append(rep.Opcache, OpcacheReport{MasterPID: firstPID + i, Master: m, Pools: []string{"www"}, Enabled: true, FillRatio: 0.5, HitRate: 0.9, Health: HealthOK})
		}
		api := healthy()
		api.Name, api.MasterName = "api", masters[1]
		Judge(&api, nil, Thresholds{})
		rep.Pools = append(rep.Pools, api)
		return rep
	}
	perf := func(line string) string {
		_, p, _ := strings.Cut(line, " | ")
		return p
	}
	res := Check(report(100), CheckThresholds{})
	for _, want := range []string{
		"www@/srv/php74//etc/php/7.4/fpm/php-fpm.conf ok", "www@/etc/php/8.4/fpm/php-fpm.conf degraded (listen queue 2", "api ok",
		"'www@/srv/php74//etc/php/7.4/fpm/php-fpm.conf_queue'=0;", "'www@/etc/php/8.2/fpm/php-fpm.conf_queue'=1;", "'www@/etc/php/8.4/fpm/php-fpm.conf_queue'=2;",
		"'api_queue'=0;", "'opcache@/etc/php/8.4/fpm/php-fpm.conf_fill'=0.5000;",
	} {
		if !strings.Contains(res.Line, want) {
			t.Errorf("check line does not say %q:\n%s", want, res.Line)
		}
	}
	if strings.Contains(perf(res.Line), "_10") || strings.Contains(perf(res.Line), "'www_") {
		t.Errorf("perfdata names a pid, or a www of no master: %s", perf(res.Line))
	}
	if again := Check(report(2000), CheckThresholds{}); perf(again.Line) != perf(res.Line) {
		t.Errorf("new master pids changed the perfdata:\n%s\n%s", perf(res.Line), perf(again.Line))
	}
}
