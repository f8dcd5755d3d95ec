package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

func idle(pid int) ProcessState {
	return ProcessState{PID: pid, State: "Idle", OSState: OSSleeping, ParentOK: true, RequestMethod: "-", RequestURI: "-"}
}

func running(pid int, age float64, uri string) ProcessState {
	return ProcessState{PID: pid, State: "Running", OSState: OSSleeping, ParentOK: true, RequestDurationSeconds: age, RequestMethod: "GET", RequestURI: uri}
}

// healthy is a pool report with nothing wrong, to be spoiled by each case.
func healthy() PoolReport {
	return PoolReport{
		Name:      "www",
		Address:   "unix:///run/php/www.sock",
		Heartbeat: Heartbeat{OK: true, LatencySeconds: 0.0002},
		Status:    StatusRead{OK: true, Via: "status_listen"},
		Master:    &MasterReport{PID: 100, Alive: true, OSState: OSSleeping},
		Counters:  &Counters{ProcessManager: "static", TotalProcesses: 2},
		Config:    PoolLimits{PM: "static", MaxChildren: 2, MinWorkers: 2},
		Processes: []ProcessState{idle(101), idle(102)},
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name   string
		spoil  func(r *PoolReport)
		prev   func(r *PoolReport)
		health Health
		reason string
		// notJudged: the report must say what fpmguard could not judge.
		notJudged bool
	}{
		{name: "ok", spoil: func(*PoolReport) {}, health: HealthOK},
		{
			name:   "socket missing",
			spoil:  func(r *PoolReport) { r.Heartbeat = failedHeartbeat(fastcgi.ReasonRefused, fastcgi.ClassMissing, 502) },
			health: HealthDown, reason: "nothing listens on unix:///run/php/www.sock (socket missing)",
		},
		{
			name:   "master gone",
			spoil:  func(r *PoolReport) { r.Master.Alive = false },
			health: HealthDown, reason: "master process 100 is gone",
		},
		{
			name:   "pid file missing",
			spoil:  func(r *PoolReport) { r.Master = &MasterReport{Error: "reading php-fpm pid file: no such file"} },
			health: HealthDown, reason: "master not running: reading php-fpm pid file",
		},
		{
			name:   "heartbeat timeout",
			spoil:  func(r *PoolReport) { r.Heartbeat = failedHeartbeat(fastcgi.ReasonTimeout, fastcgi.ClassTimeout, 504) },
			health: HealthUnhealthy, reason: "heartbeat failed (nginx would answer 504)",
		},
		{
			name:   "backlog full",
			spoil:  func(r *PoolReport) { r.Heartbeat = failedHeartbeat(fastcgi.ReasonBacklog, fastcgi.ClassBacklog, 502) },
			health: HealthUnhealthy, reason: "saturated",
		},
		{
			name: "ping path wrong",
			spoil: func(r *PoolReport) {
				r.Heartbeat = failedHeartbeat(fastcgi.ReasonBadResponse, fastcgi.ClassNotFound, 404)
			},
			health: HealthDegraded, reason: "heartbeat misconfigured",
		},
		{
			name:   "hung worker",
			spoil:  func(r *PoolReport) { r.Processes[0] = running(101, 45, "/report.php") },
			health: HealthDegraded, reason: "worker 101 has run GET /report.php for 45s (hung after 30s)",
		},
		{
			name:   "long idle is not hung",
			spoil:  func(r *PoolReport) { r.Processes[0].RequestDurationSeconds = 600 },
			health: HealthOK,
		},
		{
			name: "all busy",
			spoil: func(r *PoolReport) {
				r.Processes = []ProcessState{running(101, 1, "/a.php"), running(102, 2, "/b.php")}
			},
			health: HealthDegraded, reason: "all 2 workers are busy",
		},
		{
			name: "status request is not load",
			spoil: func(r *PoolReport) {
				r.Status.Via = "main"
				st := running(102, 0.001, "/status")
				st.probeRequest = true
				r.Processes = []ProcessState{running(101, 1, "/a.php"), st}
			},
			health: HealthOK,
		},
		{
			name:   "stopped worker",
			spoil:  func(r *PoolReport) { r.Processes[1].OSState = OSStopped },
			health: HealthDegraded, reason: "worker 102 is stopped (SIGSTOP or a tracer) while php-fpm says Idle",
		},
		{
			name:   "zombie worker",
			spoil:  func(r *PoolReport) { r.Processes[1].OSState = OSZombie },
			health: HealthDegraded, reason: "worker 102 is a zombie",
		},
		{
			name:   "listen queue",
			spoil:  func(r *PoolReport) { r.Counters.ListenQueue = 3 },
			health: HealthDegraded, reason: "listen queue 3",
		},
		{
			name:   "max children reached rising",
			spoil:  func(r *PoolReport) { r.Counters.MaxChildrenReached = 7 },
			prev:   func(r *PoolReport) { r.Counters.MaxChildrenReached = 5 },
			health: HealthDegraded, reason: "max children reached went up by 2 (now 7)",
		},
		{
			name:   "max children reached without history",
			spoil:  func(r *PoolReport) { r.Counters.MaxChildrenReached = 7 },
			health: HealthOK,
		},
		{
			name:   "fewer workers than promised",
			spoil:  func(r *PoolReport) { r.Processes = r.Processes[:1] },
			health: HealthDegraded, reason: "1 workers, the config promises at least 2 (pm = static)",
		},
		{
			name: "heartbeat inconclusive",
			spoil: func(r *PoolReport) {
				r.Heartbeat = Heartbeat{Inconclusive: "fpmguard could not judge the heartbeat: it was itself starved of CPU for 1.9s of its 2s"}
			},
			health: HealthOK, notJudged: true,
		},
		{
			name: "status inconclusive",
			spoil: func(r *PoolReport) {
				r.Status = StatusRead{Via: "status_listen", Inconclusive: "fpmguard could not judge the status page: starved"}
				r.Processes, r.Counters = nil, nil
			},
			health: HealthOK, notJudged: true,
		},
		{
			name: "master unknown",
			spoil: func(r *PoolReport) {
				r.Master = &MasterReport{PID: 100, Unknown: "cannot tell whether master 100 is alive: permission denied"}
			},
			health: HealthOK, notJudged: true,
		},
		{
			name: "master pid file unreadable",
			spoil: func(r *PoolReport) {
				r.Master = &MasterReport{Error: "permission denied", Unknown: "cannot tell whether the master is alive: permission denied"}
			},
			health: HealthOK, notJudged: true,
		},
		{
			name: "all hung",
			spoil: func(r *PoolReport) {
				r.Processes = []ProcessState{running(101, 45, "/a.php"), running(102, 31, "/b.php")}
			},
			health: HealthUnhealthy, reason: "all 2 workers are hung: the pool takes no new request until one ends",
		},
		{
			name: "status unreadable",
			spoil: func(r *PoolReport) {
				r.Status = StatusRead{Via: "main", Error: "reading status of pool www: php-fpm answered 404"}
				r.Processes = nil
				r.Counters = nil
			},
			health: HealthDegraded, reason: "cannot see the workers: reading status of pool www: php-fpm answered 404",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.spoil(&r)
			var prev *PoolReport
			if tt.prev != nil {
				p := healthy()
				tt.prev(&p)
				prev = &p
			}
			Mark(&r, Thresholds{HungAfter: 30 * time.Second})
			Judge(&r, prev, Thresholds{HungAfter: 30 * time.Second})
			if r.Health != tt.health {
				t.Errorf("health = %s, want %s; reasons %q", r.Health, tt.health, r.Reasons)
			}
			if tt.reason == "" && len(r.Reasons) != 0 && tt.health == HealthOK {
				t.Errorf("reasons %q for an ok pool", r.Reasons)
			}
			if tt.reason != "" && !strings.Contains(strings.Join(r.Reasons, "\n"), tt.reason) {
				t.Errorf("reasons %q lack %q", r.Reasons, tt.reason)
			}
			if (len(r.Inconclusive) > 0) != tt.notJudged {
				t.Errorf("inconclusive %q, want some: %v", r.Inconclusive, tt.notJudged)
			}
		})
	}
}

func failedHeartbeat(reason fastcgi.Reason, class fastcgi.Class, nginx int) Heartbeat {
	return Heartbeat{Error: "heartbeat of pool www: " + class.String(), Failure: &Failure{Error: class.String(), Reason: reason, Class: class, NginxStatus: nginx, Hint: "a hint"}}
}

// TestGoneMasterAdvice: the verdict on a master that died asks the user to
// restart php-fpm, unless fpmguard run is doing it.
func TestGoneMasterAdvice(t *testing.T) {
	for _, tt := range []struct {
		restarted bool
		want      string
	}{
		{false, "master process 100 is gone: nothing will respawn workers; restart php-fpm"},
		{true, "master process 100 is gone: nothing will respawn workers; fpmguard run is restarting php-fpm"},
	} {
		r := healthy()
		r.Master.Alive = false
		Judge(&r, nil, Thresholds{HungAfter: 30 * time.Second, MasterRestarted: tt.restarted})
		if r.Health != HealthDown || len(r.Reasons) == 0 || r.Reasons[0] != tt.want {
			t.Errorf("restarted %v: %s %q, want down with %q", tt.restarted, r.Health, r.Reasons, tt.want)
		}
	}
}
