package phpstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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

// checkVariant asks a worker whether opcache and the JIT are on as the
// variant says, and the test script cached: else the test would prove
// nothing of them.
func checkVariant(t *testing.T, f *fpmtest.FPM, pool string, v variant) {
	t.Helper()
	resp, err := fastcgi.Client{Timeout: time.Minute}.Do(context.Background(), fastcgi.Address{Network: "unix", Addr: f.Pools[pool].Listen},
		fastcgi.Request{Path: "/" + opcacheScript, Script: filepath.Join(f.DocRoot, opcacheScript)})
	if err != nil {
		t.Fatalf("asking for opcache's status: %v", err)
	}
	want := fmt.Sprintf(`{"enabled":%t,"jit":%t,"cached":%t}`, v.opcache, v.jit, v.opcache)
	if got := strings.TrimSpace(string(resp.Body)); got != want {
		t.Fatalf("%s: opcache reports %s, want %s", v.name, got, want)
	}
}

// request starts a request to pool that lasts as long as the script, until
// the test ends.
func request(t *testing.T, f *fpmtest.FPM, pool, query string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = fastcgi.Client{Timeout: 5 * time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: f.Pools[pool].Listen},
			fastcgi.Request{Path: "/" + mainScript, Query: query, Script: filepath.Join(f.DocRoot, mainScript)})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// workerFor waits until a worker of pool serves the request with query.
func workerFor(t *testing.T, f *fpmtest.FPM, pool, query string) int {
	t.Helper()
	return f.WaitWorker(t, pool, func(p fastcgi.Process) bool {
		return p.State == "Running" && strings.HasSuffix(p.RequestURI, "?"+query)
	})
}

// readUntil reads pid's stack until it is the one expected, and returns
// the last read when the deadline passes first: a request takes a moment
// to reach its innermost frame on a loaded machine.
func readUntil(t *testing.T, r *Reader, pid int, ok func(Stack) bool) (Stack, error) {
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

// TestReadSleepingWorkers reads the stacks of workers sleeping in known
// scripts, with opcache off, on, and with the JIT, and checks every frame:
// function, class, file and line. The workers are never stopped: their
// state stays S while they are read, and the master logs no trace.
func TestReadSleepingWorkers(t *testing.T) {
	files, lines := scripts(t)
	for _, v := range variants(hostVersion(t)) {
		t.Run(v.name, func(t *testing.T) {
			f := fpmtest.Start(t, fpmtest.Options{
				Pools:   []fpmtest.Pool{{MaxChildren: 5, StatusListen: true}},
				Defines: v.defines,
				Files:   files,
			})
			modes := []string{"sleep", "eval", "deep"}
			for _, mode := range modes {
				request(t, f, "www", "mode="+mode+"&ms=120000")
			}
			r := &Reader{}
			for _, mode := range modes {
				pid := workerFor(t, f, "www", "mode="+mode+"&ms=120000")
				var want []want
				s, err := readUntil(t, r, pid, func(s Stack) bool {
					want = expected(mode, s.Version, lines)
					return sameFrames(got(s, f.DocRoot), want)
				})
				if err != nil {
					t.Fatalf("%s: reading worker %d: %v", mode, pid, err)
				}
				if !sameFrames(got(s, f.DocRoot), want) {
					t.Fatalf("%s: worker %d's stack:\n%swant:\n%s(incomplete: %v)", mode, pid, describe(got(s, f.DocRoot)), describe(want), s.Incomplete)
				}
				if mode == "deep" {
					if !errors.Is(s.Incomplete, ErrTooDeep) {
						t.Errorf("deep: Incomplete = %v, want ErrTooDeep", s.Incomplete)
					}
				} else if s.Incomplete != nil {
					t.Errorf("%s: Incomplete = %v, want a whole stack", mode, s.Incomplete)
				}
				for range 20 {
					if _, err := r.Read(pid); err != nil {
						t.Fatalf("%s: reading again: %v", mode, err)
					}
					if st := osState(pid); st != 'S' {
						t.Fatalf("%s: worker %d is in state %c while its stack is read, want S", mode, pid, st)
					}
				}
				t.Logf("%s on PHP %s: %s", mode, s.Version, s)
			}
			checkVariant(t, f, "www", v)
			if log := f.Log(); strings.Contains(log, "stopped for tracing") || strings.Contains(log, "about to trace") {
				t.Errorf("php-fpm traced a worker:\n%s", log)
			}
		})
	}
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
func hostVersion(t *testing.T) string {
	t.Helper()
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := identify(fh, fi.Size(), bin)
	if err != nil {
		t.Fatal(err)
	}
	return b.version
}

// TestReadSpinningWorkers reads, many times over, the stack of a worker
// that spins in a loop calling microtime(), with opcache off, on and with
// the JIT: its innermost frame comes and goes hundreds of thousands of
// times a second, and every read must still be the script's stack, with
// or without microtime on top, or say it kept changing; never a frame
// the script does not have.
func TestReadSpinningWorkers(t *testing.T) {
	files, lines := scripts(t)
	for _, v := range variants(hostVersion(t)) {
		t.Run(v.name, func(t *testing.T) {
			f := fpmtest.Start(t, fpmtest.Options{
				Pools:   []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
				Defines: v.defines,
				Files:   files,
			})
			query := "mode=spin&ms=120000"
			request(t, f, "www", query)
			pid := workerFor(t, f, "www", query)
			r := &Reader{}
			microtime := want{KindInternal, "microtime", "", 0}
			var wantFrames []want
			matches := func(s Stack) bool {
				wantFrames = expected("spin", s.Version, lines)
				g := got(s, f.DocRoot)
				if len(g) > 0 && g[0] == microtime {
					g = g[1:]
				}
				return s.Incomplete == nil && sameFrames(g, wantFrames)
			}
			if s, err := readUntil(t, r, pid, matches); err != nil || !matches(s) {
				t.Fatalf("worker %d: %v\n%swant, under an optional microtime:\n%s", pid, err, describe(got(s, f.DocRoot)), describe(wantFrames))
			}
			read, changed := 0, 0
			for range 200 {
				s, err := r.Read(pid)
				switch {
				case errors.Is(err, errChanged):
					changed++
				case err != nil:
					t.Fatalf("reading worker %d: %v", pid, err)
				case !matches(s):
					t.Fatalf("worker %d: read\n%s(incomplete: %v)\nwant, under an optional microtime:\n%s", pid, describe(got(s, f.DocRoot)), s.Incomplete, describe(wantFrames))
				default:
					read++
				}
				if st := osState(pid); st != 'R' && st != 'S' {
					t.Fatalf("worker %d is in state %c while its stack is read, want R or S", pid, st)
				}
			}
			if read < 100 {
				t.Errorf("only %d of 200 reads gave a stack (%d: the stack kept changing)", read, changed)
			}
			t.Logf("%d of 200 reads gave the stack, %d kept changing", read, changed)
			checkVariant(t, f, "www", v)
			if log := f.Log(); strings.Contains(log, "stopped for tracing") || strings.Contains(log, "about to trace") {
				t.Errorf("php-fpm traced a worker:\n%s", log)
			}
		})
	}
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

// TestReadMatchesSlowlog compares the stacks read with php-fpm's own
// slowlog of the same requests, which php-fpm writes by stopping the
// worker with ptrace: a second witness of every frame, written by PHP's
// own code with the compiler's offsets.
func TestReadMatchesSlowlog(t *testing.T) {
	files, _ := scripts(t)
	for _, v := range variants(hostVersion(t)) {
		t.Run(v.name, func(t *testing.T) {
			f := fpmtest.Start(t, fpmtest.Options{
				Pools:   []fpmtest.Pool{{MaxChildren: 4, StatusListen: true, Slowlog: true}},
				Defines: v.defines,
				Files:   files,
			})
			modes := []string{"sleep", "eval", "deep"}
			for _, mode := range modes {
				request(t, f, "www", "mode="+mode+"&ms=120000")
			}
			r := &Reader{}
			for _, mode := range modes {
				pid := workerFor(t, f, "www", "mode="+mode+"&ms=120000")
				slow := fpmtest.Poll(t, time.Minute, func() ([]string, bool) {
					s := slowlogFrames(t, f.Pools["www"].SlowlogPath, pid)
					return s, len(s) > 0
				})
				// The slowlog was written after a second of the request:
				// the worker sleeps in the same frames now.
				s, err := readUntil(t, r, pid, func(s Stack) bool { return strings.Join(asSlowlog(s.Frames), "\n") == strings.Join(slow, "\n") })
				if err != nil {
					t.Fatalf("%s: reading worker %d: %v", mode, pid, err)
				}
				if got := asSlowlog(s.Frames); strings.Join(got, "\n") != strings.Join(slow, "\n") {
					t.Fatalf("%s: worker %d's stack, as a slowlog:\n  %s\nphp-fpm's slowlog:\n  %s", mode, pid, strings.Join(got, "\n  "), strings.Join(slow, "\n  "))
				}
			}
		})
	}
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

// TestReadWorkerThatExits reads workers while they exit: one killed, one
// that ends by itself after its only request (pm.max_requests = 1). Every
// read gives the script's stack (or, for the one whose request ends, a
// stack on the way to it or none), or ErrExited; never a wrong frame nor
// another error.
func TestReadWorkerThatExits(t *testing.T) {
	files, lines := scripts(t)
	version := hostVersion(t)
	whole := expected("sleep", version, lines)
	t.Run("killed", func(t *testing.T) {
		f := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}}, Files: files})
		query := "mode=sleep&ms=120000"
		request(t, f, "www", query)
		pid := workerFor(t, f, "www", query)
		r := &Reader{}
		if s, err := readUntil(t, r, pid, func(s Stack) bool { return sameFrames(got(s, f.DocRoot), whole) }); err != nil || !sameFrames(got(s, f.DocRoot), whole) {
			t.Fatalf("worker %d: %v\n%s", pid, err, describe(got(s, f.DocRoot)))
		}
		n := readToExit(t, r, pid, func(s Stack) bool { return sameFrames(got(s, f.DocRoot), whole) && s.Incomplete == nil }, func() {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Errorf("killing worker %d: %v", pid, err)
			}
		})
		t.Logf("%d stacks read before the worker's exit", n)
	})
	t.Run("last-request", func(t *testing.T) {
		f := fpmtest.Start(t, fpmtest.Options{
			Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: true, Extra: []string{"pm.max_requests = 1"}}},
			Files: files,
		})
		query := "mode=sleep&ms=1500"
		request(t, f, "www", query)
		pid := workerFor(t, f, "www", query)
		r := &Reader{}
		full := 0
		n := readToExit(t, r, pid, func(s Stack) bool {
			if sameFrames(got(s, f.DocRoot), whole) {
				full++
			}
			return growing(s, whole, f.DocRoot)
		}, nil)
		if full == 0 {
			t.Errorf("none of %d reads gave the whole stack", n)
		}
		t.Logf("%d stacks read before the worker's exit, %d of them whole", n, full)
	})
}

// TestReadIdleWorker: a worker between requests runs no PHP code; its
// stack is empty and whole.
func TestReadIdleWorker(t *testing.T) {
	f := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1}}})
	pid := f.WorkerPIDs("www")[0]
	s, err := (&Reader{}).Read(pid)
	if err != nil || len(s.Frames) != 0 || s.Incomplete != nil || s.Version == "" {
		t.Fatalf("idle worker %d: stack %+v, error %v; want no frames, a version and no error", pid, s, err)
	}
}

// TestReadUnknownBinaries: a php-fpm whose version string says 8.3 (a
// version the reader has no layout for) and a process that is not PHP at
// all are refused with an UnsupportedError naming the reason, not read
// with offsets that do not fit.
func TestReadUnknownBinaries(t *testing.T) {
	t.Run("patched-php-fpm", func(t *testing.T) {
		bin, err := fpmtest.Binary()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		version := hostVersion(t)
		old := "X-Powered-By: PHP/" + version + "\x00"
		patched := "X-Powered-By: PHP/8.3" + strings.TrimPrefix(version, minorOf(version)) + "\x00"
		if strings.Count(string(data), old) != 1 || len(patched) != len(old) {
			t.Fatalf("%s: want one %q to patch into %q", bin, old, patched)
		}
		copyPath := filepath.Join(fpmtest.Dir(t), "php-fpm-patched")
		if err := os.WriteFile(copyPath, []byte(strings.Replace(string(data), old, patched, 1)), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PHP_FPM", copyPath)
		f := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 1}}})
		pid := f.WorkerPIDs("www")[0]
		_, err = (&Reader{}).Read(pid)
		var unsupported *UnsupportedError
		if !errors.As(err, &unsupported) || !strings.Contains(err.Error(), "PHP 8.3") || unsupported.Binary != copyPath {
			t.Fatalf("worker %d of a php-fpm that says 8.3: error %v, want an UnsupportedError for %s naming PHP 8.3", pid, err, copyPath)
		}
		t.Log(err)
	})
	t.Run("not-php", func(t *testing.T) {
		cmd := exec.Command("sleep", "120")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		_, err := (&Reader{}).Read(cmd.Process.Pid)
		var unsupported *UnsupportedError
		if !errors.As(err, &unsupported) || !strings.Contains(err.Error(), "not a PHP binary") {
			t.Fatalf("sleep %d: error %v, want an UnsupportedError saying it is not PHP", cmd.Process.Pid, err)
		}
		t.Log(err)
	})
	t.Run("gone", func(t *testing.T) {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		if _, err := (&Reader{}).Read(cmd.Process.Pid); !errors.Is(err, ErrExited) {
			t.Fatalf("a process that has exited: error %v, want ErrExited", err)
		}
	})
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRead measures one read of a sleeping worker's stack: the
// script's 8 frames, and 64 frames of recursion (the bound), with the
// executable already identified, and a first read that identifies it.
// The baseline is one read of the worker's /proc/PID/stat, as the watcher
// does for every worker on every tick. cpu-ns/op is the CPU time of the
// whole process (user and system) per read, wall time is ns/op.
func BenchmarkRead(b *testing.B) {
	files, lines := scripts(b)
	f := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3, StatusListen: true}}, Files: files})
	pids := map[string]int{}
	for _, mode := range []string{"sleep", "deep"} {
		query := "mode=" + mode + "&ms=600000"
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = fastcgi.Client{Timeout: 15 * time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: f.Pools["www"].Listen},
				fastcgi.Request{Path: "/" + mainScript, Query: query, Script: filepath.Join(f.DocRoot, mainScript)})
		}()
		b.Cleanup(func() {
			cancel()
			<-done
		})
		pid := f.WaitWorker(b, "www", func(p fastcgi.Process) bool {
			return p.State == "Running" && strings.HasSuffix(p.RequestURI, "?"+query)
		})
		r := &Reader{}
		fpmtest.Poll(b, time.Minute, func() (int, bool) {
			s, err := r.Read(pid)
			want := len(expected(mode, s.Version, lines))
			return len(s.Frames), err == nil && len(s.Frames) == want
		})
		pids[mode] = pid
	}
	run := func(b *testing.B, read func() error) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			if err := read(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	}
	b.Run("baseline-proc-stat", func(b *testing.B) {
		path := "/proc/" + strconv.Itoa(pids["sleep"]) + "/stat"
		run(b, func() error { _, err := os.ReadFile(path); return err })
	})
	r := &Reader{}
	b.Run("8-frames", func(b *testing.B) {
		run(b, func() error { _, err := r.Read(pids["sleep"]); return err })
	})
	b.Run("64-frames", func(b *testing.B) {
		run(b, func() error { _, err := r.Read(pids["deep"]); return err })
	})
	b.Run("first-read", func(b *testing.B) {
		run(b, func() error { _, err := (&Reader{}).Read(pids["sleep"]); return err })
	})
}
