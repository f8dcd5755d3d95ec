package top

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/muesli/termenv"
)

// conf is the master of the pools of snapshot.
const conf = "/etc/php/8.2/fpm/php-fpm.conf"

// www is pool www of snapshot.
var www = supervisor.PoolID{Pool: "www", Master: conf}

// snapshot is a snapshot set by hand: pools of n workers each, the first
// hung with a hostile URI, the second busy.
func snapshot(at time.Time, pools, n int, cpu float64) *watch.Snapshot {
	s := &watch.Snapshot{Time: at, Self: watch.Self{Interval: time.Second, LagSeconds: 0.01 * cpu},
		Nginx: map[nginxlog.Key]uint64{{Pool: www, Status: 502, Cause: nginxlog.CauseReset}: uint64(cpu)}}
	for i := range pools {
		name := "www"
		if i > 0 {
			name = fmt.Sprintf("api%d", i)
		}
		r := &supervisor.PoolReport{Name: name, MasterName: conf, Address: "unix:///run/php/" + name + ".sock",
			Heartbeat:   supervisor.Heartbeat{OK: true, LatencySeconds: 0.0002 + 0.0001*cpu},
			Status:      supervisor.StatusRead{OK: true, Via: "status_listen"},
			Master:      &supervisor.MasterReport{PID: 100, Alive: true},
			Counters:    &supervisor.Counters{MaxChildrenReached: 3},
			SocketQueue: &supervisor.SocketQueue{Length: 0, Max: 511},
			Config:      supervisor.PoolLimits{PM: "static", MaxChildren: n}}
		for j := range n {
			p := supervisor.ProcessState{PID: 1000*i + 101 + j, State: "Idle", OSState: supervisor.OSSleeping, ParentOK: true,
				RequestMethod: "GET", RequestURI: "/index.php", Script: "/var/www/app/public/index.php", CPUSeconds: cpu * float64(j), RSSBytes: 30 << 20, PSSBytes: uint64(10+j) << 20}
			switch j {
			case 0:
				p.State, p.RequestDurationSeconds, p.RequestURI, p.Hung, p.HungKind = "Running", 45.2, "/sleep.php/\x1b]0;x\a\x1b[31mred?token=secret", true, supervisor.HungBlocked
			case 1:
				p.State, p.RequestDurationSeconds, p.OSState, p.RequestMethod, p.RequestURI = "Running", 2.5, supervisor.OSRunning, "POST", "/api/save"
			}
			r.Processes = append(r.Processes, p)
		}
		supervisor.Judge(r, nil, supervisor.Thresholds{HungAfter: 30 * time.Second})
		s.Pools = append(s.Pools, watch.PoolView{Report: r, LastProbe: at})
	}
	s.Opcache = []supervisor.OpcacheReport{{MasterPID: 100, Master: conf, Pools: []string{"www"}, Enabled: true, FillRatio: 0.07, HitRate: 0.885, Health: supervisor.HealthOK}}
	return s
}

func TestOnceFrame(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	out := Once(Options{Host: "web1", HungAfter: 30 * time.Second}, 160, snapshot(t0, 1, 4, 0), snapshot(t0.Add(time.Second), 1, 4, 0.5))
	t.Logf("\n%s", out)
	for _, want := range []string{"fpmguard top · web1 · ", "lag 0.5%, probes every 1s · hung after 30s · www DEGRADED", "busy 2 idle 2 total 4/4 max", "queue 0/511", "max children reached 3",
		"nginx 5xx/min 0", "opcache 7% full, hits 88.5%", `/sleep.php/\x1b]0;x\x07\x1b[31mred`, "blocked", "PSS", " 50 ", "10.0MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	if strings.ContainsAny(out, "\x1b\a") {
		t.Errorf("raw control character in the frame")
	}
	// The worker rows, wherever the header puts them: sorted by age, the
	// hung worker (101, 45 s) before the busy one (102, 2.5 s), and no
	// query string.
	row := map[int]int{}
	for i, l := range strings.Split(out, "\n") {
		for _, pid := range []int{101, 102, 103, 104} {
			if !strings.HasPrefix(strings.TrimLeft(l, " "), fmt.Sprintf("%d ", pid)) {
				continue
			}
			row[pid] = i
			if strings.Contains(l, "token") {
				t.Errorf("query shown: %q", l)
			}
		}
	}
	if len(row) != 4 || row[101] > row[102] || row[102] > row[103] || row[102] > row[104] {
		t.Errorf("worker rows %v (pid: line): want 4 of them, sorted by age\n%s", row, out)
	}
}

// TestNarrowTerminal: at 80×24 and narrower every line fits, none wraps,
// and the screen is exactly as high as the terminal.
func TestNarrowTerminal(t *testing.T) {
	t0 := time.Now()
	for _, size := range [][2]int{{80, 24}, {60, 20}, {40, 10}, {200, 50}, {20, 5}} {
		m := newModel(Options{Snapshot: func() *watch.Snapshot { return snapshot(t0, 3, 20, 1) }, Refresh: time.Second}, renderer())
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		m.Init()
		for _, k := range []string{"", "?", "esc", "s"} {
			if k != "" {
				m.Update(keyMsg(k))
			}
			view := m.View()
			lines := strings.Split(view, "\n")
			if len(lines) != size[1] {
				t.Errorf("%v after %q: %d lines", size, k, len(lines))
			}
			for i, l := range lines {
				if w := ansi.StringWidth(l); w > size[0] {
					t.Errorf("%v after %q: line %d is %d wide: %q", size, k, i, w, l)
				}
			}
		}
	}
}

// fakeControl records what the view asks for.
type fakeControl struct {
	killed []string // pool and pid
	who    []string
	res    watch.KillResult
}

func (f *fakeControl) KillWorker(_ context.Context, pool string, pid int, who string) (watch.KillResult, error) {
	f.killed = append(f.killed, fmt.Sprint(pool, " ", pid))
	f.who = append(f.who, who)
	return f.res, nil
}

func (f *fakeControl) Slowlog(_ context.Context, pool string, pid int) (string, error) {
	if pid == 103 {
		return "", &supervisor.SlowlogError{Pool: pool, Path: "/proc/self/fd/2", PID: pid, Reason: supervisor.SlowlogUnreadable, Err: errors.New("not a regular file")}
	}
	return fmt.Sprintf("[26-Nov-2026 09:00:00]  [pool %s] pid %d\nscript_filename = /var/www/x.php\n[0x1] sleep() /var/www/x.php:3", pool, pid), nil
}

func (f *fakeControl) Stack(_ context.Context, pool string, pid int) (*supervisor.Stack, error) {
	return &supervisor.Stack{Frames: []supervisor.Frame{{Function: "sleep"}, {Function: "wait_db", File: "/var/www/db.php", Line: 4}, {Function: "<main>", File: "/var/www/x.php", Line: 9}}}, nil
}

func keyMsg(k string) tea.KeyMsg {
	switch k {
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case " ":
		return tea.KeyMsg{Type: tea.KeySpace, Runes: []rune(" ")}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
}

func renderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(nil)
	r.SetColorProfile(termenv.Ascii)
	return r
}

// press sends a key and runs the command it returns, as bubbletea would.
func press(m *model, k string) {
	_, cmd := m.Update(keyMsg(k))
	if cmd != nil {
		if msg := cmd(); msg != nil {
			m.Update(msg)
		}
	}
}

func TestKeys(t *testing.T) {
	t0 := time.Now()
	ctl := &fakeControl{res: watch.KillResult{Result: watch.ResultRefused, Message: "not killing worker 102 of pool www: its request ended a moment ago, and an idle worker is never killed"}}
	snap := snapshot(t0, 2, 3, 1)
	m := newModel(Options{Snapshot: func() *watch.Snapshot { return snap }, Control: ctl, Who: "top test", Refresh: time.Second}, renderer())
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 30})
	m.Init()
	if m.sel != (workerKey{www, 101}) && m.sel != (workerKey{supervisor.PoolID{Pool: "api1", Master: conf}, 1101}) {
		t.Fatalf("selected %v, want the oldest request", m.sel)
	}
	press(m, "p")
	if m.pool != www || len(m.rows) != 3 || !strings.HasPrefix(m.View(), "POOL www fpmguard top") {
		t.Errorf("filter: pool %q, %d rows", m.pool, len(m.rows))
	}
	press(m, "m")
	if m.rows[0].key.pid != 103 || m.sel.pid != 103 {
		t.Errorf("by memory: first %v, selected %v", m.rows[0].key, m.sel)
	}
	press(m, "a")
	press(m, "j") // vi's down, as the arrow
	if m.sel.pid != 102 {
		t.Fatalf("selected %v after j", m.sel)
	}
	press(m, "k") // vi's up: it never kills
	if m.sel.pid != 101 || m.mode != modeTable {
		t.Fatalf("selected %v, mode %v after k", m.sel, m.mode)
	}
	press(m, "down")
	if m.sel.pid != 102 {
		t.Fatalf("selected %v", m.sel)
	}
	press(m, "s")
	if v := m.View(); !strings.Contains(v, "slowlog of worker 102 of pool www") || !strings.Contains(v, "sleep() /var/www/x.php:3") {
		t.Errorf("slowlog view:\n%s", v)
	}
	press(m, "esc")
	press(m, "t")
	if v := m.View(); !strings.Contains(v, "worker 102 of pool www (esc to close)") || !strings.Contains(v, "  wait_db (/var/www/db.php:4)") {
		t.Errorf("stack view:\n%s", v)
	}
	press(m, "esc")
	if !strings.Contains(m.View(), "x kill") {
		t.Errorf("the kill key is not offered for a busy worker:\n%s", m.View())
	}
	press(m, "x")
	if v := m.View(); !strings.Contains(v, "Kill worker 102 of pool www (POST /api/save for 2.5s)? SIGTERM") {
		t.Errorf("no confirmation:\n%s", v)
	}
	press(m, "n")
	if len(ctl.killed) != 0 || !strings.Contains(m.View(), "kill cancelled") {
		t.Errorf("killed without a yes: %v", ctl.killed)
	}
	press(m, "x")
	press(m, "y")
	if len(ctl.killed) != 1 || ctl.killed[0] != "www@"+conf+" 102" || ctl.who[0] != "top test" || !strings.Contains(m.View(), "an idle worker is never killed") {
		t.Errorf("kill: %v\n%s", ctl.killed, m.View())
	}
	// An idle worker: the key is not offered, and pressed anyway it says
	// why, without asking the watcher.
	press(m, "G")
	if m.sel.pid != 103 || strings.Contains(m.View(), "x kill") {
		t.Errorf("selected %v; the kill key is offered for an idle worker:\n%s", m.sel, m.View())
	}
	press(m, "x")
	if v := m.View(); len(ctl.killed) != 1 || m.mode == modeConfirm || !strings.Contains(v, "worker 103 of pool www is not killed: it runs no request (php-fpm says \"Idle\"), and an idle worker is never killed") {
		t.Errorf("x on an idle worker: asked %v, mode %v\n%s", ctl.killed, m.mode, v)
	}
	press(m, " ")
	snap = snapshot(t0.Add(time.Second), 1, 1, 1)
	m.Update(tickMsg(t0))
	if len(m.rows) != 3 || !strings.Contains(m.View(), "PAUSED") {
		t.Errorf("pause: %d rows", len(m.rows))
	}
	press(m, " ")
	m.Update(tickMsg(t0))
	if len(m.rows) != 1 {
		t.Errorf("after pause: %d rows", len(m.rows))
	}
	if _, cmd := m.Update(keyMsg("q")); cmd == nil || cmd() != tea.Quit() {
		t.Error("q does not quit")
	}
}

// TestHeartbeatWords: each kind of heartbeat reads as what it is; an idle
// ondemand pool's heartbeat, not sent, is not a failure.
func TestHeartbeatWords(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		hb   supervisor.Heartbeat
		want string
	}{
		{supervisor.Heartbeat{Idle: true}, "heartbeat not sent (idle ondemand pool)"},
		{supervisor.Heartbeat{WaitsBehindHung: 4, Failure: &supervisor.Failure{Class: fastcgi.ClassTimeout, NginxStatus: 504}}, "heartbeat FAILED (not sent: all 4 workers hung)"},
		{supervisor.Heartbeat{Failure: &supervisor.Failure{Class: fastcgi.ClassReset, NginxStatus: 502}}, "heartbeat FAILED (connection closed early, nginx 502)"},
		{supervisor.Heartbeat{Skipped: true}, "heartbeat not configured"},
	} {
		s := snapshot(t0, 1, 4, 0)
		s.Pools[0].Report.Heartbeat = tc.hb
		if out := Once(Options{Host: "web1"}, 160, s, s); !strings.Contains(out, tc.want) {
			t.Errorf("%+v: frame lacks %q:\n%s", tc.hb, tc.want, out)
		}
	}
}

// TestMessagesWrap: a message longer than the screen is wide is wrapped,
// whole, and the screen keeps its height.
func TestMessagesWrap(t *testing.T) {
	long := "not killing worker 102 of pool www (asked by fpmguard top (pid 4242, uid 0)): it is idle, and an idle worker is never killed"
	snap := snapshot(time.Now(), 1, 3, 1)
	for _, width := range []int{40, 80, 200} {
		m := newModel(Options{Snapshot: func() *watch.Snapshot { return snap }, Control: &fakeControl{res: watch.KillResult{Result: watch.ResultRefused, Message: long}}, Refresh: time.Second}, renderer())
		m.Update(tea.WindowSizeMsg{Width: width, Height: 24})
		m.Init()
		press(m, "j") // worker 102, busy
		press(m, "x")
		question := m.View()
		press(m, "y")
		view := m.View()
		lines := strings.Split(view, "\n")
		if len(lines) != 24 {
			t.Errorf("width %d: %d lines", width, len(lines))
		}
		for i, l := range lines {
			if w := ansi.StringWidth(l); w > width {
				t.Errorf("width %d: line %d is %d wide: %q", width, i, w, l)
			}
		}
		if !strings.Contains(strings.Join(strings.Fields(view), " "), long) {
			t.Errorf("width %d: the message is not whole:\n%s", width, view)
		}
		if !strings.Contains(strings.Join(strings.Fields(question), " "), "Kill worker 102 of pool www (POST /api/save for 2.5s)? SIGTERM; the master starts another. y/N") {
			t.Errorf("width %d: the question is not whole:\n%s", width, question)
		}
	}
}

// TestNoVerdictWithoutEvidence: a pool whose first probe has not ended is
// UNKNOWN, with no heartbeat, worker counts or queue drawn; a pool whose
// status page was not read shows no worker counts; the request rate is
// shown once known.
func TestNoVerdictWithoutEvidence(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	s := snapshot(t0, 3, 2, 0)
	s.Pools[1].LastProbe = time.Time{}
	s.Pools[1].Report = &supervisor.PoolReport{Name: "api1", Health: supervisor.HealthUnknown, Reasons: []string{"not probed yet"},
		Heartbeat: supervisor.Heartbeat{Inconclusive: "not probed yet"}, Status: supervisor.StatusRead{Inconclusive: "not probed yet"}, Processes: []supervisor.ProcessState{}}
	r := s.Pools[2].Report
	r.Status, r.Processes, r.Counters = supervisor.StatusRead{Via: "main", Error: "timeout"}, []supervisor.ProcessState{}, nil
	rate := 12.25
	s.Pools[0].Report.RequestsPerSecond = &rate
	out := Once(Options{Host: "web1"}, 160, s)
	t.Logf("\n%s", out)
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "pool api1 "):
			if !strings.Contains(line, "pool api1 UNKNOWN  not probed yet") || strings.Contains(line, "heartbeat") || strings.Contains(line, "busy") || strings.Contains(line, "queue") {
				t.Errorf("a pool not probed yet: %q", line)
			}
		case strings.HasPrefix(line, "pool api2 "):
			if strings.Contains(line, "busy") || !strings.Contains(line, "queue 0/511") {
				t.Errorf("a pool whose status page was not read: %q", line)
			}
		case strings.HasPrefix(line, "pool www "):
			if !strings.Contains(line, "req/s 12.2") {
				t.Errorf("no request rate: %q", line)
			}
		}
	}
}
