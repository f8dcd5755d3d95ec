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
			name: "degraded is a warning", spoil: func(r *PoolReport) { r.Counters.ListenQueue = 2 }, code: CheckWarning,
			line: "FPMGUARD WARNING - www degraded (listen queue 2: requests are waiting for a worker)",
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
	o := OpcacheReport{MasterPID: 100, Health: HealthUnknown, Reasons: []string{}, Inconclusive: "the opcache was not read: the pools' probes used the whole timeout"}
	res := Check(&Report{Pools: []PoolReport{r}, Opcache: []OpcacheReport{o}}, CheckThresholds{})
	if res.Code != CheckUnknown || strings.Contains(res.Line, "opcache of master 100 ok") || strings.Contains(res.Line, "opcache_100") {
		t.Errorf("got %d %q", res.Code, res.Line)
	}
	if !strings.Contains(res.Line, "opcache of master 100 unknown [not judged: the opcache was not read") {
		t.Errorf("line %q does not say the opcache was not read", res.Line)
	}
}
