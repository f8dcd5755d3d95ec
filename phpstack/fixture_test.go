package phpstack

// The tests' php-fpm: the scripts whose stacks are known line by line,
// the stacks they must show, opcache's settings, workers kept busy in
// them, and php-fpm's slowlog to compare with.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// The scripts whose stacks the tests know, line by line.
const (
	mainScript = "stack.php"
	incScript  = "stack_inc.php"
	// opcacheScript tells whether opcache and the JIT are on.
	opcacheScript = "opcache.php"
)

// scripts returns the test scripts for fpmtest's Files and the line of
// each "// @name" marker in them, by name.
func scripts(t testing.TB) (map[string]string, map[string]int) {
	t.Helper()
	files := map[string]string{}
	lines := map[string]int{}
	marker := regexp.MustCompile(`// @([a-z-]+)\s*$`)
	for _, name := range []string{mainScript, incScript, opcacheScript} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
		for i, line := range strings.Split(string(b), "\n") {
			if m := marker.FindStringSubmatch(line); m != nil {
				lines[m[1]] = i + 1
			}
		}
	}
	return files, lines
}

// want is a frame as a test expects it.
type want struct {
	kind Kind
	name string // Frame.Name()
	file string // base name, "" for none
	line int
}

func (w want) String() string { return fmt.Sprintf("%v %s %s:%d", w.kind, w.name, w.file, w.line) }

// expected is the stack stack.php must show in mode, innermost first.
// version is the worker's PHP version: since 8.4 a closure's name says
// where it was declared, by its method and line ("{closure:Repo::find():26}").
func expected(mode, version string, lines map[string]int) []want {
	closure := "{closure}"
	if v, _ := strconv.ParseFloat(minorOf(version), 64); v >= 8.4 {
		closure = fmt.Sprintf("{closure:Repo::find():%d}", lines["closure-start"])
	}
	bottom := []want{
		{KindInclude, "require_once", incScript, lines["main"]},
		{KindMain, "<main>", mainScript, lines["require"]},
	}
	switch mode {
	case "deep":
		ws := []want{{KindInternal, "usleep", "", 0}, {KindFunction, "down", incScript, lines["bottom"]}}
		for len(ws) < DefaultMaxFrames {
			ws = append(ws, want{KindFunction, "down", incScript, lines["down"]})
		}
		return ws
	case "fiber":
		closure := "{closure}"
		if v, _ := strconv.ParseFloat(minorOf(version), 64); v >= 8.4 {
			closure = fmt.Sprintf("{closure:handle():%d}", lines["fiber-start"])
		}
		return append([]want{
			{KindInternal, "usleep", "", 0},
			{KindFunction, "wait_db", incScript, lines["sleep"]},
			{KindClosure, closure, incScript, lines["fiber"]},
			{KindInternal, "Fiber->start", "", 0},
			{KindFunction, "handle", incScript, lines["fiber-call"]},
		}, bottom...)
	case "eval":
		return append([]want{
			{KindInternal, "usleep", "", 0},
			{KindFunction, "wait_db", incScript, lines["sleep"]},
			{KindEval, "<eval>", fmt.Sprintf("%s(%d) : eval()'d code", incScript, lines["eval"]), 1},
			{KindFunction, "handle", incScript, lines["eval"]},
		}, bottom...)
	}
	top := []want{{KindInternal, "usleep", "", 0}, {KindFunction, "wait_db", incScript, lines["sleep"]}}
	if mode == "spin" {
		top = []want{{KindFunction, "wait_db", incScript, lines["spin"]}}
	}
	return append(append(top,
		want{KindClosure, "Repo->" + closure, incScript, lines["closure"]},
		want{KindFunction, "Repo->find", incScript, lines["find"]},
		want{KindFunction, "Repo::run", incScript, lines["run"]},
		want{KindFunction, "handle", incScript, lines["handle"]},
	), bottom...)
}

// sleepModes are the modes of stack.php that sleep in version: fibers
// came with PHP 8.1.
func sleepModes(version string) []string {
	if v, _ := strconv.ParseFloat(minorOf(version), 64); v >= 8.1 {
		return []string{"sleep", "eval", "deep", "fiber"}
	}
	return []string{"sleep", "eval", "deep"}
}

// got turns a read stack into wants, file names relative to docRoot.
func got(s Stack, docRoot string) []want {
	var ws []want
	for _, f := range s.Frames {
		file := f.File
		if rel, err := filepath.Rel(docRoot, f.File); err == nil && f.File != "" && !strings.HasPrefix(rel, "..") {
			file = rel
		}
		ws = append(ws, want{f.Kind, f.Name(), file, f.Line})
	}
	return ws
}

func sameFrames(a, b []want) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func describe(ws []want) string {
	var b strings.Builder
	for i, w := range ws {
		fmt.Fprintf(&b, "  %2d %v\n", i, w)
	}
	return b.String()
}

// variant is a php.ini setting of the tests: opcache and its JIT.
type variant struct {
	name         string
	opcache, jit bool
	defines      map[string]string
}

// variants: opcache off, opcache on, and opcache with the JIT (PHP 8
// only), tracing (hot code compiled as it runs) and function (every
// function compiled when its script loads, so the frames read are of
// compiled code). file_update_protection=0 caches the scripts the test
// has just written.
func variants(version string) []variant {
	on := func(more ...string) map[string]string {
		d := map[string]string{"opcache.enable": "1", "opcache.file_update_protection": "0", "opcache.jit_buffer_size": "0"}
		for i := 0; i+1 < len(more); i += 2 {
			d[more[i]] = more[i+1]
		}
		return d
	}
	vs := []variant{
		{"opcache-off", false, false, map[string]string{"opcache.enable": "0"}},
		{"opcache-on", true, false, on()},
	}
	if !strings.HasPrefix(version, "7.") {
		vs = append(vs,
			variant{"jit-tracing", true, true, on("opcache.jit_buffer_size", "32M", "opcache.jit", "tracing")},
			variant{"jit-function", true, true, on("opcache.jit_buffer_size", "32M", "opcache.jit", "function")})
	}
	return vs
}

// checkVariant asks a worker of pool www whether opcache and the JIT are
// on as the variant says, and the test script cached: else the test would
// prove nothing of them.
func checkVariant(t *testing.T, f *fpmtest.FPM, v variant) {
	t.Helper()
	resp, err := fastcgi.Client{Timeout: time.Minute}.Do(context.Background(), fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen},
		fastcgi.Request{Path: "/" + opcacheScript, Script: f.Script(opcacheScript)})
	if err != nil {
		t.Fatalf("asking for opcache's status: %v", err)
	}
	want := fmt.Sprintf(`{"enabled":%t,"jit":%t,"cached":%t}`, v.opcache, v.jit, v.opcache)
	if got := strings.TrimSpace(string(resp.Body)); got != want {
		t.Fatalf("%s: opcache reports %s, want %s", v.name, got, want)
	}
}

// notTraced checks that php-fpm never stopped a worker of pids to trace
// it: the reader must not, and their pool has no slowlog (pool slow's
// workers are traced, by php-fpm).
func notTraced(t *testing.T, f *fpmtest.FPM, pids map[string]int) {
	t.Helper()
	for _, line := range strings.Split(f.Log(), "\n") {
		if !strings.Contains(line, "stopped for tracing") && !strings.Contains(line, "about to trace") {
			continue
		}
		for mode, pid := range pids {
			// "[pool slow] child 1234 stopped for tracing", "about to trace 1234"
			if regexp.MustCompile(fmt.Sprintf(`(^|\D)%d(\D|$)`, pid)).MatchString(line) {
				t.Errorf("php-fpm traced worker %d (%s): %s", pid, mode, line)
			}
		}
	}
}

// busy sends, for each mode, one request for stack.php to pool that lasts
// ms milliseconds (until the test ends, at most), and returns the pid of
// the worker serving each mode. The pool needs a worker more than there
// are modes, for its status page where it has no pm.status_listen.
func busy(t testing.TB, f *fpmtest.FPM, pool string, ms int, modes ...string) map[string]int {
	t.Helper()
	p := f.Pools[pool]
	queries := map[string]string{}
	for _, mode := range modes {
		query := fmt.Sprintf("mode=%s&ms=%d", mode, ms)
		queries[mode] = query
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = fastcgi.Client{Timeout: time.Duration(ms)*time.Millisecond + time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: p.Listen},
				fastcgi.Request{Path: "/" + mainScript, Query: query, Script: f.Script(mainScript)})
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
	}
	pids := map[string]int{}
	for _, mode := range modes {
		pids[mode] = f.WaitWorker(t, pool, func(p fastcgi.Process) bool {
			return p.State == "Running" && strings.HasSuffix(p.RequestURI, "?"+queries[mode])
		})
	}
	return pids
}

// readUntil reads pid's stack until it is the one expected, and returns
// the last read when the deadline passes first: a request takes a moment
// to reach its innermost frame on a loaded machine.
func readUntil(t testing.TB, r *Reader, pid int, ok func(Stack) bool) (Stack, error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := r.Read(pid)
		if err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// osState reads the state letter of /proc/PID/stat.
func osState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return '?'
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return '?'
	}
	return b[i+2]
}

// minorOf is "8.4" of "8.4.27".
func minorOf(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}

// hostVersion is the version of the host's php-fpm, by its reader.
func hostVersion(t testing.TB) string {
	t.Helper()
	bin, data := hostBinary(t)
	b, err := identify(bytes.NewReader(data), int64(len(data)), bin)
	if err != nil {
		t.Fatal(err)
	}
	return b.version
}

// slowlogLine is one frame of php-fpm's slowlog: "[0x...] name() file:line".
var slowlogLine = regexp.MustCompile(`^\[0x[0-9a-f]+\] (.*)\(\) (.*):([0-9]+)$`)

// slowlogFrames reads the entry php-fpm's slowlog has for pid, as
// "name() file:line" lines, or nil when it has none yet.
func slowlogFrames(t *testing.T, path string, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	head := fmt.Sprintf("] pid %d\n", pid)
	at := strings.LastIndex(string(data), head)
	if at < 0 {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data[at+len(head):]), "\n")[1:] { // after script_filename
		m := slowlogLine.FindStringSubmatch(line)
		if m == nil {
			break
		}
		out = append(out, fmt.Sprintf("%s() %s:%s", m[1], m[2], m[3]))
	}
	return out
}

// asSlowlog writes frames as php-fpm's slowlog does (fpm_php_trace.c):
// the function's name alone, "[INCLUDE_OR_EVAL]" for an included file or
// eval'd code, each with the file and line of the nearest user code under
// it, the place of the call; the main script is not listed; 20 lines at
// most.
func asSlowlog(frames []Frame) []string {
	var out []string
	for i, f := range frames {
		if f.Kind == KindMain || len(out) == 20 {
			break
		}
		name := f.Function
		if f.Kind == KindInclude || f.Kind == KindEval {
			name = "[INCLUDE_OR_EVAL]"
		}
		place := "unknown:0"
		for _, caller := range frames[i+1:] {
			if caller.Kind != KindInternal {
				place = fmt.Sprintf("%s:%d", caller.File, caller.Line)
				break
			}
		}
		out = append(out, name+"() "+place)
	}
	return out
}

// growing reports whether s is the sleep script's stack, or a stack on
// the way to it: empty, or the frames under the innermost those of the
// whole stack, and the innermost one of its functions at any line.
func growing(s Stack, whole []want, docRoot string) bool {
	g := got(s, docRoot)
	if len(g) == 0 {
		return true
	}
	if s.Incomplete != nil || len(g) > len(whole) {
		return false
	}
	under := whole[len(whole)-len(g):]
	top, wtop := g[0], under[0]
	return sameFrames(g[1:], under[1:]) && top.kind == wtop.kind && top.name == wtop.name && top.file == wtop.file
}

// readToExit reads pid's stack back to back from two goroutines until
// they see it exit, checks each read with ok, and returns how many reads
// gave a stack; exit, run while they read, ends the worker.
func readToExit(t *testing.T, r *Reader, pid int, ok func(Stack) bool, exit func()) int {
	t.Helper()
	type result struct {
		s   Stack
		err error
	}
	results := make(chan result, 1024)
	stop := make(chan struct{})
	for range 2 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := r.Read(pid)
				results <- result{s, err}
				if errors.Is(err, ErrExited) {
					return
				}
			}
		}()
	}
	defer close(stop)
	exited, stacks := 0, 0
	deadline := time.After(2 * time.Minute)
	for exited < 2 {
		select {
		case res := <-results:
			switch {
			case errors.Is(res.err, ErrExited):
				exited++
			case res.err != nil:
				t.Fatalf("worker %d: %v", pid, res.err)
			case !ok(res.s):
				t.Fatalf("worker %d: read a stack the script does not have:\n%s(incomplete: %v)", pid, describe(got(res.s, "")), res.s.Incomplete)
			default:
				stacks++
				if stacks == 50 && exit != nil {
					exit()
				}
			}
		case <-deadline:
			t.Fatalf("worker %d: no read saw it exit within 2 minutes (%d stacks read)", pid, stacks)
		}
	}
	return stacks
}
