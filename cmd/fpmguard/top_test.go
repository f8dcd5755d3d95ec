package main

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/fpmguard/fpmguard/web"
)

// pane is a tmux session of its own, on a socket of its own, running a
// shell whose prompt is "READY$".
type pane struct {
	t    *testing.T
	sock string
	runs int
}

const prompt = "READY$"

func startPane(t *testing.T, width, height int) *pane {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		requireIntegration(t, "tmux is not installed: run make deps")
	}
	p := &pane{t: t, sock: filepath.Join(fpmtest.Dir(t), "tmux.sock")}
	cmd := exec.Command(tmux, "-S", p.sock, "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height),
		"env", "PS1="+prompt+" ", "sh")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the pane at the end:\n%s", p.capture())
		}
		_ = exec.Command(tmux, "-S", p.sock, "kill-server").Run()
	})
	p.waitFor("the shell's prompt", 30*time.Second, p.atPrompt)
	return p
}

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// send types keys: words are tmux key names (Enter, C-c), text is sent as
// it is with -l.
func (p *pane) send(keys ...string) { p.tmux(append([]string{"send-keys", "-t", "top"}, keys...)...) }
func (p *pane) typeText(s string)   { p.tmux("send-keys", "-t", "top", "-l", s) }

func (p *pane) capture() string { return p.tmux("capture-pane", "-p", "-t", "top") }

func (p *pane) display(format string) string {
	return strings.TrimSpace(p.tmux("display-message", "-p", "-t", "top", format))
}

// waitFor polls the pane until ok holds, and returns that capture.
func (p *pane) waitFor(what string, d time.Duration, ok func(string) bool) string {
	p.t.Helper()
	return fpmtest.Poll(p.t, d, func() (string, bool) {
		s := p.capture()
		return what + ":\n" + s, ok(s)
	})
}

// atPrompt: the last line with text is the shell's prompt.
func (p *pane) atPrompt(screen string) bool {
	lines := strings.Split(strings.TrimRight(screen, "\n "), "\n")
	return strings.TrimSpace(lines[len(lines)-1]) == prompt
}

// restored checks that top gave the terminal back: the normal screen,
// the cursor shown, the prompt back, and the line discipline cooked
// (a command typed runs).
func (p *pane) restored(how string) {
	p.t.Helper()
	p.waitFor("the prompt after "+how, 30*time.Second, func(s string) bool { return p.atPrompt(s) && p.display("#{alternate_on}") == "0" })
	if c := p.display("#{cursor_flag}"); c != "1" {
		p.t.Errorf("after %s the cursor is hidden (cursor_flag %s)", how, c)
	}
	// The shell computes the word, so only a run command prints it.
	p.runs++
	p.typeText(fmt.Sprintf("echo restored-$((%d+1000))", p.runs))
	p.send("Enter")
	want := fmt.Sprintf("restored-%d", p.runs+1000)
	p.waitFor("a command run after "+how, 30*time.Second, func(s string) bool { return strings.Contains(s, "\n"+want+"\n") && p.atPrompt(s) })
}

// tableRows returns the pids of the worker table, top to bottom.
func tableRows(screen string) []int {
	var pids []int
	in := false
	for _, l := range strings.Split(screen, "\n") {
		f := strings.Fields(strings.TrimPrefix(l, ">"))
		switch {
		case len(f) > 1 && f[0] == "PID" && f[1] == "STATE":
			in = true
		case in && len(f) > 0:
			pid, err := strconv.Atoi(f[0])
			if err != nil {
				return pids
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

// rowOf returns the table line of pid.
func rowOf(screen string, pid int) string {
	re := regexp.MustCompile(`^[> ]\s*` + strconv.Itoa(pid) + ` `)
	for _, l := range strings.Split(screen, "\n") {
		if re.MatchString(l) {
			return l
		}
	}
	return ""
}

// TestTopInTmux drives fpmguard top in a real terminal: a worker hangs
// and is marked hung, sorting by age puts it first, the kill key and its
// confirmation kill it and the master replaces it, and every way out (q,
// Ctrl-C, SIGTERM) gives the terminal back.
func TestTopInTmux(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true, Slowlog: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	bin := buildBinary(t)
	p := startPane(t, 120, 40)
	const hungAfter = 2 * time.Second
	cmdline := fmt.Sprintf("%s top --fpm-config %s --hung-after %s --interval 500ms --opcache-dir %s", bin, fpm.Conf, hungAfter, opcacheDir(t))
	startTop := func() {
		p.typeText(cmdline)
		p.send("Enter")
		// The first frame, on the alternate screen: the shell's screen
		// holds the command line and top's last words.
		p.waitFor("top's first frame", 30*time.Second, func(s string) bool {
			return strings.HasPrefix(s, "fpmguard top · ") && strings.Contains(s, "pool www") && p.display("#{alternate_on}") == "1"
		})
	}
	startTop()
	workers := fpm.WorkerPIDs("www")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go func() { _ = fpm.Request(ctx, "sleep.php", "ms=60000") }()
	hung := fpm.WaitWorker(t, "www", fpmtest.Running)
	screen := p.waitFor(fmt.Sprintf("worker %d marked hung", hung), 30*time.Second, func(s string) bool {
		return strings.Contains(rowOf(s, hung), " blocked ")
	})
	took := time.Since(start)
	t.Logf("worker %d shown hung %v after its request began (--hung-after %s, --interval 500ms):\n%s", hung, took.Round(time.Millisecond), hungAfter, screen)
	// php-fpm's clock, one probe interval, one refresh, and room for a
	// loaded machine.
	if took > hungAfter+15*time.Second {
		t.Errorf("hung shown after %v", took)
	}

	p.send("m")
	p.send("a")
	p.waitFor("the hung worker first by age", 30*time.Second, func(s string) bool {
		rows := tableRows(s)
		return len(rows) == 2 && rows[0] == hung && strings.HasPrefix(rowOf(s, hung), ">")
	})

	// vi's keys move, as the arrows do: j down to the idle worker, k up
	// again. Neither kills.
	p.send("j")
	p.waitFor("j moves down", 30*time.Second, func(s string) bool {
		rows := tableRows(s)
		return len(rows) == 2 && strings.HasPrefix(rowOf(s, rows[1]), ">")
	})
	idle := tableRows(p.capture())[1]
	// The kill key on an idle worker is not offered, and says why, in
	// full, on a screen too narrow for the sentence. The idle worker may
	// be serving fpmguard's own status read at the frame the key meets
	// (read through the pool's socket, the page shows it running GET
	// /status): that is refused too, with its own reason.
	p.tmux("resize-window", "-t", "top", "-x", "60")
	p.send("x")
	refusals := []string{
		fmt.Sprintf(`worker %d of pool www is not killed: it runs no request (php-fpm says "Idle"), and an idle worker is never killed`, idle),
		fmt.Sprintf(`worker %d of pool www is not killed: it is serving one of fpmguard's own probes`, idle),
	}
	p.waitFor("the refusal, wrapped", 30*time.Second, func(s string) bool {
		flat := strings.Join(strings.Fields(s), " ")
		return slices.ContainsFunc(refusals, func(r string) bool { return strings.Contains(flat, r) }) && !strings.Contains(s, "x kill")
	})
	p.tmux("resize-window", "-t", "top", "-x", "120")
	p.send("k")
	p.waitFor("k moves up", 30*time.Second, func(s string) bool {
		return strings.HasPrefix(rowOf(s, hung), ">") && strings.Contains(s, "x kill")
	})

	p.send("x")
	p.waitFor("the kill question", 30*time.Second, func(s string) bool {
		return strings.Contains(s, fmt.Sprintf("Kill worker %d of pool www (GET /sleep.php for", hung))
	})
	p.send("y")
	p.waitFor("the kill's answer", 30*time.Second, func(s string) bool {
		return strings.Contains(s, fmt.Sprintf("SIGTERM worker %d of pool www (blocked)", hung))
	})
	replaced := fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := fpm.WorkerPIDs("www")
		return now, len(now) == 2 && !slices.Contains(now, hung)
	})
	var fresh int
	for _, pid := range replaced {
		if !slices.Contains(workers, pid) {
			fresh = pid
		}
	}
	p.waitFor(fmt.Sprintf("worker %d gone and %d in its place", hung, fresh), 30*time.Second, func(s string) bool {
		rows := tableRows(s)
		return len(rows) == 2 && !slices.Contains(rows, hung) && slices.Contains(rows, fresh)
	})

	p.send("q")
	p.restored("q")
	startTop()
	p.send("C-c")
	p.restored("Ctrl-C")
	// SIGTERM, a few times over: bubbletea's own signal handler used to
	// race fpmguard's and hang its shutdown about one time in three under
	// load, with the alternate screen left on.
	shell, err := strconv.Atoi(p.display("#{pane_pid}"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		startTop()
		kids := children(shell)
		if len(kids) != 1 {
			t.Fatalf("the shell of the pane has children %v, want top alone", kids)
		}
		if err := syscall.Kill(kids[0], syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.restored("SIGTERM")
	}
}

// onceWorkers runs top --once and returns its workers: pid to php-fpm
// state.
func onceWorkers(t *testing.T, args ...string) (map[int]string, string) {
	t.Helper()
	code, out, stderr := runCLI(t, append([]string{"top", "--once", "--width", "200", "--interval", "200ms", "--no-opcache"}, args...)...)
	if code != 0 {
		t.Fatalf("top --once %v: exit %d\n%s%s", args, code, out, stderr)
	}
	workers := map[int]string{}
	for _, pid := range tableRows(out) {
		workers[pid] = strings.Fields(rowOf(out, pid))[1]
	}
	return workers, out
}

// TestTopFrom: top --from a running serve shows the same workers as top
// probing by itself; its kill is refused, in plain words, while serve does
// not allow kills, and goes through serve's watcher when it does.
func TestTopFrom(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}},
		Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
	})
	fpm.Background(t, 1, "sleep.php", "ms=120000")
	busy := fpm.WaitWorker(t, "www", fpmtest.Running)
	serveFlags := []string{"serve", "--fpm-config", fpm.Conf, "--interval", "200ms", "--no-opcache"}
	addr := freePort(t)
	startBinary(t, append(serveFlags, "--web.listen-address", addr)...)
	waitHTTP(t, "http://"+addr+"/snapshot", 200)

	local, out := onceWorkers(t, "--fpm-config", fpm.Conf)
	remote, outFrom := onceWorkers(t, "--from", addr) // HOST:PORT, read as http://HOST:PORT
	t.Logf("standalone:\n%s\nfrom serve:\n%s", out, outFrom)
	// The same workers, the busy one running in both. The others are idle
	// but for a moment now and then: serve's own heartbeat is served by
	// one of them, and either top may catch it at that moment.
	if len(local) != 3 || local[busy] != "Running" || remote[busy] != "Running" || !slices.Equal(slices.Sorted(maps.Keys(local)), slices.Sorted(maps.Keys(remote))) {
		t.Errorf("top --from shows %v, standalone %v", remote, local)
	}
	if !strings.Contains(outFrom, "from http://"+addr) {
		t.Errorf("the header does not name the source:\n%s", outFrom)
	}

	r, err := web.NewRemote("http://"+addr, "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.KillWorker(context.Background(), "www", busy, "")
	if err != nil || res.Done() || !strings.Contains(res.Message, "killing over HTTP is off: start fpmguard serve (or run) with --web.enable-kill") {
		t.Errorf("kill without --web.enable-kill: %+v %v", res, err)
	}
	if !slices.Contains(fpm.WorkerPIDs("www"), busy) {
		t.Fatalf("worker %d was killed", busy)
	}

	addr = freePort(t)
	startBinary(t, append(serveFlags, "--web.listen-address", addr, "--web.enable-kill", "--web.kill-from-loopback")...)
	waitHTTP(t, "http://"+addr+"/readyz", 200)
	r, _ = web.NewRemote("http://"+addr, "", 10*time.Second)
	res, err = r.KillWorker(context.Background(), "www", busy, "")
	if err != nil || res.Result != watch.ResultOK || !strings.Contains(res.Message, "on request of HTTP client 127.0.0.1:") {
		t.Fatalf("kill with --web.enable-kill: %+v %v", res, err)
	}
	fpmtest.Poll(t, 30*time.Second, func() ([]int, bool) {
		now := fpm.WorkerPIDs("www")
		return now, len(now) == 3 && !slices.Contains(now, busy)
	})
}
