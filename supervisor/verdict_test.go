package supervisor

import (
	"errors"
	"fmt"
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
			name: "ping response wrong",
			spoil: func(r *PoolReport) {
				err := &fastcgi.Error{Op: "GET /ping", Class: fastcgi.ClassBadResponse, Status: 200, Err: fmt.Errorf("ping answered %q: %w", "PONG", fastcgi.ErrPingResponse)}
				r.Heartbeat = Heartbeat{Error: err.Error(), Failure: failure(err)}
			},
			health: HealthDegraded, reason: "heartbeat misconfigured",
		},
		{
			name:   "not monitored",
			spoil:  unmonitored,
			health: HealthUnknown, reason: "not monitored: the pool has no ping.path and no pm.status_path",
		},
		{
			name: "not monitored, connection refused",
			spoil: func(r *PoolReport) {
				unmonitored(r)
				r.Connect = failedConnect(fastcgi.ClassRefused)
			},
			health: HealthDown, reason: "nothing listens on unix:///run/php/www.sock (connection refused)",
		},
		{
			name: "not monitored, connection forbidden",
			spoil: func(r *PoolReport) {
				unmonitored(r)
				r.Connect = failedConnect(fastcgi.ClassPermission)
			},
			health: HealthUnhealthy, reason: "cannot connect (nginx would answer 502): connect on unix:///run/php/www.sock: permission denied",
		},
		{
			name: "no ping, status through the listener, connection forbidden",
			spoil: func(r *PoolReport) {
				r.Heartbeat = Heartbeat{Skipped: true}
				r.Connect = failedConnect(fastcgi.ClassPermission)
			},
			health: HealthUnhealthy, reason: "cannot connect (nginx would answer 502)",
		},
		{
			name: "no ping, status through the listener",
			spoil: func(r *PoolReport) {
				r.Heartbeat = Heartbeat{Skipped: true}
				r.Connect = &Connect{OK: true}
			},
			health: HealthOK,
		},
		{
			name: "the kernel's listen queue",
			spoil: func(r *PoolReport) {
				r.Counters.ListenQueue = 0
				r.SocketQueue = &SocketQueue{Length: 3, Max: 511}
				r.Processes = []ProcessState{running(101, 1, "/a.php"), running(102, 2, "/b.php")}
			},
			health: HealthDegraded, reason: "listen queue 3",
		},
		{
			// The status page, read after the queue, shows a worker idle:
			// the queue was a connect not yet accepted.
			name: "a queue beside an idle worker",
			spoil: func(r *PoolReport) {
				r.SocketQueue = &SocketQueue{Length: 1, Max: 511}
				r.Processes[0] = running(101, 1, "/a.php")
			},
			health: HealthOK,
		},
		{
			name: "a queue with the workers not seen",
			spoil: func(r *PoolReport) {
				r.SocketQueue = &SocketQueue{Length: 1, Max: 511}
				r.Status = StatusRead{Skipped: true}
				r.Processes = []ProcessState{}
			},
			health: HealthDegraded, reason: "listen queue 1",
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
			name: "listen queue",
			spoil: func(r *PoolReport) {
				r.Counters.ListenQueue = 3
				r.Processes = []ProcessState{running(101, 1, "/a.php"), running(102, 2, "/b.php")}
			},
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
	return Heartbeat{Error: "heartbeat of pool www: " + class.String(), Failure: &Failure{Error: class.String(), Reason: reason, Class: class, NginxStatus: nginx, Hint: "a hint",
		Misconfigured: misconfigured(&fastcgi.Error{Class: class})}}
}

// failedConnect is a bare connection that failed, as Prober.connect
// reports it.
func failedConnect(class fastcgi.Class) *Connect {
	err := &fastcgi.Error{Op: "connect", Addr: fastcgi.Address{Network: "unix", Addr: "/run/php/www.sock"}, Class: class, Err: errors.New(class.String()), Hint: "a hint"}
	return &Connect{Error: err.Error(), Failure: failure(err)}
}

// unmonitored is a pool with neither ping.path nor pm.status_path.
func unmonitored(r *PoolReport) {
	r.Heartbeat = Heartbeat{Skipped: true}
	r.Status = StatusRead{Skipped: true}
	r.Counters, r.Processes = nil, []ProcessState{}
	r.Connect = &Connect{OK: true}
}

func TestRequestRate(t *testing.T) {
	start := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	at := start.Add(time.Hour)
	report := func(accepted, probes uint64, at time.Time) *PoolReport {
		r := healthy()
		r.Counters.StartTime, r.Counters.AcceptedConn, r.ProbeRequests, r.at = start, accepted, probes, at
		return &r
	}
	for _, tt := range []struct {
		name      string
		prev, now *PoolReport
		want      float64 // -1: none
	}{
		{"users' requests, fpmguard's taken away", report(100, 10, at), report(130, 14, at.Add(2*time.Second)), 13},
		{"only fpmguard's", report(100, 10, at), report(104, 14, at.Add(2*time.Second)), 0},
		{"a probe fpmguard counted before php-fpm did", report(100, 10, at), report(103, 14, at.Add(2*time.Second)), 0},
		{"first probe", nil, report(100, 10, at), -1},
		{"php-fpm restarted", report(100, 10, at), report(5, 14, at.Add(time.Second)), -1},
		{"same instant", report(100, 10, at), report(104, 14, at), -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			Judge(tt.now, tt.prev, Thresholds{})
			got := tt.now.RequestsPerSecond
			switch {
			case tt.want < 0 && got != nil:
				t.Errorf("rate %v, want none", *got)
			case tt.want >= 0 && (got == nil || *got != tt.want):
				t.Errorf("rate %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHeartbeatStates: what each kind of heartbeat proves.
func TestHeartbeatStates(t *testing.T) {
	wrong := &fastcgi.Error{Class: fastcgi.ClassBadResponse, Status: 200, Err: fmt.Errorf("ping answered: %w", fastcgi.ErrPingResponse)}
	for _, tt := range []struct {
		name       string
		hb         Heartbeat
		failed, up bool
	}{
		{"ok", Heartbeat{OK: true}, false, true},
		{"timeout", failedHeartbeat(fastcgi.ReasonTimeout, fastcgi.ClassTimeout, 504), true, false},
		{"404", failedHeartbeat(fastcgi.ReasonBadResponse, fastcgi.ClassNotFound, 404), false, true},
		{"wrong ping.response", Heartbeat{Error: wrong.Error(), Failure: failure(wrong)}, false, true},
		{"inconclusive", Heartbeat{Inconclusive: "starved"}, false, true},
		{"idle ondemand pool", Heartbeat{Idle: true}, false, true},
		{"no ping.path", Heartbeat{Skipped: true}, false, false},
	} {
		if tt.hb.Failed() != tt.failed || tt.hb.Up() != tt.up {
			t.Errorf("%s: failed %v, up %v; want %v, %v", tt.name, tt.hb.Failed(), tt.hb.Up(), tt.failed, tt.up)
		}
	}
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

// TestDecisiveReasonsQuoteNoRequest: /readyz, open to every client, gives a
// not-ready pool's decisive reasons only; a hung worker's URI is in the
// reasons of /status, never among them.
func TestDecisiveReasonsQuoteNoRequest(t *testing.T) {
	r := healthy()
	r.Processes = []ProcessState{running(101, 45, "/secret-report.php"), running(102, 31, "/secret-export.php")}
	Mark(&r, Thresholds{HungAfter: 30 * time.Second})
	Judge(&r, nil, Thresholds{HungAfter: 30 * time.Second})
	if r.Health != HealthUnhealthy || !strings.Contains(strings.Join(r.Reasons, "\n"), "/secret-report.php") {
		t.Fatalf("verdict %s, reasons %q: want unhealthy, with the hung worker's URI among the reasons", r.Health, r.Reasons)
	}
	decisive := r.DecisiveReasons()
	if len(decisive) != 1 || !strings.HasPrefix(decisive[0], "all 2 workers are hung") {
		t.Errorf("decisive reasons %q, want only that every worker is hung", decisive)
	}
	r = healthy()
	Judge(&r, nil, Thresholds{})
	if r.Health != HealthOK || len(r.DecisiveReasons()) != 0 {
		t.Errorf("healthy pool: %s with decisive reasons %q", r.Health, r.DecisiveReasons())
	}
}
