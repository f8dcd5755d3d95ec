package supervisor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func testProber(timeout time.Duration) *Prober {
	return &Prober{Client: fastcgi.Client{Timeout: timeout}, Procs: SystemProcs, Thresholds: Thresholds{HungAfter: time.Second}}
}

// fpmTargets reads the test master's own config, as --fpm-config would.
func fpmTargets(t *testing.T, fpm *fpmtest.FPM) map[string]Target {
	t.Helper()
	ts, err := LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Target{}
	for _, tg := range ts {
		out[tg.Name] = tg
	}
	return out
}

func TestProbeHealthyPool(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}}})
	tg := fpmTargets(t, fpm)["www"]
	r := testProber(2*time.Second).Probe(context.Background(), tg, nil)

	if r.Health != HealthOK || len(r.Reasons) != 0 {
		t.Fatalf("health %s, reasons %q", r.Health, r.Reasons)
	}
	if !r.Heartbeat.OK || r.Heartbeat.LatencySeconds <= 0 || r.Status.Via != "status_listen" {
		t.Errorf("heartbeat %+v status %+v", r.Heartbeat, r.Status)
	}
	if r.Master == nil || r.Master.PID != fpm.MasterPID() || !r.Master.Alive {
		t.Fatalf("master %+v, want pid %d alive", r.Master, fpm.MasterPID())
	}
	want := fpm.WorkerPIDs("www")
	if len(r.Processes) != len(want) || len(want) != 3 {
		t.Fatalf("processes %+v, OS says workers %v", r.Processes, want)
	}
	for _, p := range r.Processes {
		if !p.ParentOK || (p.OSState != OSSleeping && p.OSState != OSRunning) || p.RSSBytes == 0 || p.State != "Idle" || p.Hung {
			t.Errorf("worker %+v", p)
		}
	}
	if r.Counters == nil || r.Counters.ProcessManager != "static" || r.Config.MinWorkers != 3 {
		t.Errorf("counters %+v config %+v", r.Counters, r.Config)
	}
}

// TestProbeEveryWorkerBusy: the heartbeat times out as nginx would (504),
// status over pm.status_listen still answers, and the verdict names the
// busy, hung workers.
func TestProbeEveryWorkerBusy(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	tg := fpmTargets(t, fpm)["www"]
	hold(t, fpm, tg, 2, "ms=5000")
	pr := testProber(500 * time.Millisecond)

	r := fpmtest.Poll(t, 5*time.Second, func() (PoolReport, bool) {
		r := pr.Probe(context.Background(), tg, nil)
		return r, r.HungCount() == 2
	})
	if r.Health != HealthUnhealthy {
		t.Errorf("health %s, want unhealthy; reasons %q", r.Health, r.Reasons)
	}
	if f := r.Heartbeat.Failure; f == nil || f.Reason != "timeout" || f.NginxStatus != 504 {
		t.Errorf("heartbeat %+v, want a timeout (504)", r.Heartbeat)
	}
	if !r.Status.OK {
		t.Fatalf("status over pm.status_listen failed: %+v", r.Status)
	}
	reasons := strings.Join(r.Reasons, "\n")
	for _, want := range []string{"all 2 workers are busy", "GET /sleep.php for", "heartbeat failed (nginx would answer 504)"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("reasons %q lack %q", r.Reasons, want)
		}
	}
	for _, p := range r.Processes {
		if strings.Contains(p.RequestURI, "?") {
			t.Errorf("query string kept: %q", p.RequestURI)
		}
	}
}

// TestProbeStoppedIdleWorker: php-fpm keeps calling a SIGSTOPped worker
// Idle; fpmguard says degraded, and why.
func TestProbeStoppedIdleWorker(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
	tg := fpmTargets(t, fpm)["www"]
	pid := fpm.WorkerPIDs("www")[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	r := fpmtest.Poll(t, 3*time.Second, func() (PoolReport, bool) {
		r := testProber(time.Second).Probe(context.Background(), tg, nil)
		return r, r.Health == HealthDegraded
	})
	var found bool
	for _, p := range r.Processes {
		if p.PID == pid {
			found = true
			if p.State != "Idle" || p.OSState != OSStopped {
				t.Errorf("worker %d: fpm %q os %q, want Idle and stopped", pid, p.State, p.OSState)
			}
		}
	}
	if !found {
		t.Fatalf("worker %d not in %+v", pid, r.Processes)
	}
	if !strings.Contains(strings.Join(r.Reasons, "\n"), "worker "+strconv.Itoa(pid)+" is stopped") {
		t.Errorf("reasons %q do not name the stopped worker", r.Reasons)
	}
}

func TestProbeMasterGone(t *testing.T) {
	t.Run("SIGKILL leaves workers serving", func(t *testing.T) {
		fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}})
		tg := fpmTargets(t, fpm)["www"]
		if err := fpm.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-fpm.Exited()
		r := testProber(time.Second).Probe(context.Background(), tg, nil)
		if r.Health != HealthDown || !strings.Contains(strings.Join(r.Reasons, "\n"), "is gone") {
			t.Errorf("health %s reasons %q, want down: master gone", r.Health, r.Reasons)
		}
		for _, p := range r.Processes {
			if p.ParentOK {
				t.Errorf("orphaned worker %d still counts as the master's", p.PID)
			}
		}
	})
	t.Run("SIGQUIT removes the sockets", func(t *testing.T) {
		fpm := fpmtest.Start(t, fpmtest.Options{})
		tg := fpmTargets(t, fpm)["www"]
		if err := fpm.Signal(syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		<-fpm.Exited()
		r := testProber(time.Second).Probe(context.Background(), tg, nil)
		if r.Health != HealthDown {
			t.Errorf("health %s reasons %q, want down", r.Health, r.Reasons)
		}
		if f := r.Heartbeat.Failure; f == nil || f.Reason != "refused" || f.NginxStatus != 502 {
			t.Errorf("heartbeat %+v", r.Heartbeat)
		}
	})
}

func TestProbeWrongStatusPath(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	tg := fpmTargets(t, fpm)["www"]
	tg.StatusPath = "/fpm-status"
	r := testProber(time.Second).Probe(context.Background(), tg, nil)
	if r.Health != HealthDegraded {
		t.Errorf("health %s, want degraded", r.Health)
	}
	if !strings.Contains(strings.Join(r.Advice, "\n"), "add `pm.status_path = /fpm-status` to pool [www]") {
		t.Errorf("advice %q lacks the status_path line", r.Advice)
	}
}

func TestProbeUnconfiguredEndpoints(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{StatusPath: "-", PingPath: "-"}}})
	tg := fpmTargets(t, fpm)["www"]
	r := testProber(time.Second).Probe(context.Background(), tg, nil)
	advice := strings.Join(r.Advice, "\n")
	for _, want := range []string{"add `pm.status_path = /status` to pool [www]", "add `ping.path = /ping` to pool [www]"} {
		if !strings.Contains(advice, want) {
			t.Errorf("advice %q lacks %q", r.Advice, want)
		}
	}
	if !r.Heartbeat.Skipped || !r.Status.Skipped {
		t.Errorf("heartbeat %+v status %+v, want both skipped", r.Heartbeat, r.Status)
	}
}

// hold starts n requests that keep workers busy until the test ends.
func hold(t *testing.T, fpm *fpmtest.FPM, tg Target, n int, query string) {
	t.Helper()
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	c := fastcgi.Client{Timeout: 30 * time.Second}
	for range n {
		wg.Go(func() {
			_, _ = c.Do(ctx, tg.Address, fastcgi.Request{Path: "/sleep.php", Query: query, Script: filepath.Join(fpm.DocRoot, "sleep.php")})
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// TestMasterNeedsAWitness: a master is gone only when the kernel says the
// pid is free, or the pid shows another program on two reads. A master
// still starting, or one that cannot be read, is unknown.
func TestMasterNeedsAWitness(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	start := func(name string, args ...string) int {
		cmd := exec.Command(name, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd.Process.Pid
	}
	freed := exec.Command("true")
	if err := freed.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pid     int
		procs   ProcReader
		alive   bool
		unknown string // "" for gone or alive
	}{
		{"a running master", fpm.MasterPID(), SystemProcs, true, ""},
		{"a free pid", freed.Process.Pid, SystemProcs, false, ""},
		{"another program", start("sleep", "300"), SystemProcs, false, ""},
		// bash's exec -a sets the command line a starting php-fpm shows.
		{"a master still starting", start("bash", "-c", `exec -a "/usr/sbin/php-fpm8.2 -F -y /etc/php-fpm.conf" sleep 300`), SystemProcs, false, "is starting"},
		{"an unreadable process", fpm.MasterPID(), failingProcs{}, false, "cannot tell whether master"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := testProber(time.Second)
			pr.Procs = tt.procs
			m := pr.master(context.Background(), Target{Name: "www", MasterPID: tt.pid}, nil)
			if m.Alive != tt.alive || !strings.Contains(m.Unknown, tt.unknown) || (tt.unknown == "") != (m.Unknown == "") {
				t.Errorf("master %d: alive %v unknown %q, want alive %v unknown %q", tt.pid, m.Alive, m.Unknown, tt.alive, tt.unknown)
			}
		})
	}
}

// failingProcs fails every read the way /proc does for another user's
// process under hidepid.
type failingProcs struct{}

func (failingProcs) ReadProcess(_ context.Context, pid int) (OSProcess, error) {
	return OSProcess{PID: pid, State: OSUnknown}, fmt.Errorf("reading process %d: %w", pid, os.ErrPermission)
}

// TestTitleNotCachedBeforeRename: php-fpm shows its command line for a few
// milliseconds before it names itself "php-fpm: master process"; a title
// read then must not stick to the process for good. The master is started
// traced, so that it stops at its exec, before it runs a line of its own:
// the first read sees the command line for certain.
func TestTitleNotCachedBeforeRename(t *testing.T) {
	fpm := fpmtest.New(t, fpmtest.Options{})
	argv := fpm.Argv()
	// ptrace requests come from the thread that traces.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Ptrace: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || !ws.Stopped() {
		t.Fatalf("php-fpm did not stop at its exec: %v, status %v", err, ws)
	}
	procs := &procReader{titles: map[titleKey]string{}}
	p, err := procs.ReadProcess(context.Background(), pid)
	if err != nil || p.Title == "" || IsMasterTitle(p.Title) {
		t.Fatalf("title at exec %q (%v), want php-fpm's command line", p.Title, err)
	}
	seen := []string{p.Title}
	if err := syscall.PtraceDetach(pid); err != nil {
		t.Fatal(err)
	}
	fpmtest.Poll(t, 30*time.Second, func() (bool, bool) {
		p, err := procs.ReadProcess(context.Background(), pid)
		if seen[len(seen)-1] != p.Title {
			seen = append(seen, p.Title)
		}
		return true, err == nil && IsMasterTitle(p.Title)
	})
	t.Logf("titles seen: %q", seen)
}

// TestBeatFromHung: the heartbeat is failed unsent only when the status
// page shows every worker the pool may have hung; otherwise a ping could
// be served and must be sent.
func TestBeatFromHung(t *testing.T) {
	hung := ProcessState{State: "Running", Hung: true}
	for _, tc := range []struct {
		name    string
		max     int
		ping    string
		status  bool
		workers []ProcessState
		want    bool
	}{
		{"all hung, max reached", 2, "/ping", true, []ProcessState{hung, hung}, true},
		{"one not hung", 2, "/ping", true, []ProcessState{hung, {State: "Running"}}, false},
		{"php-fpm may start another", 3, "/ping", true, []ProcessState{hung, hung}, false},
		{"max_children unknown", 0, "/ping", true, []ProcessState{hung, hung}, false},
		{"status page not read", 2, "/ping", false, []ProcessState{hung, hung}, false},
		{"no ping.path", 2, "", true, []ProcessState{hung, hung}, false},
		{"no worker", 2, "/ping", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := PoolReport{Status: StatusRead{OK: tc.status}, Processes: tc.workers}
			got := BeatFromHung(Target{Name: "www", PingPath: tc.ping, MaxChildren: tc.max}, &r)
			if got != tc.want || (got && (r.Heartbeat.WaitsBehindHung != len(tc.workers) || !r.Heartbeat.Failed())) {
				t.Errorf("BeatFromHung = %v, heartbeat %+v; want %v", got, r.Heartbeat, tc.want)
			}
		})
	}
}
