package phpstack

import (
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
)

// scripts returns the test scripts for fpmtest's Files and the line of
// each "// @name" marker in them, by name.
func scripts(t testing.TB) (map[string]string, map[string]int) {
	t.Helper()
	files := map[string]string{}
	lines := map[string]int{}
	marker := regexp.MustCompile(`// @([a-z-]+)\s*$`)
	for _, name := range []string{mainScript, incScript} {
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
// version is the worker's PHP version: 8.4 names closures by place.
func expected(mode, version string, lines map[string]int, docRoot string) []want {
	closure := "{closure}"
	if !strings.HasPrefix(version, "7.") && !strings.HasPrefix(version, "8.0") && !strings.HasPrefix(version, "8.1") &&
		!strings.HasPrefix(version, "8.2") && !strings.HasPrefix(version, "8.3") {
		closure = fmt.Sprintf("{closure:%s:%d}", filepath.Join(docRoot, incScript), lines["closure-start"])
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
	name    string
	defines map[string]string
}

// variants: opcache off, opcache on, and opcache with the tracing JIT
// (PHP 8 only). file_update_protection=0 caches the scripts the test just
// wrote.
func variants(version string) []variant {
	vs := []variant{
		{"opcache-off", map[string]string{"opcache.enable": "0"}},
		{"opcache-on", map[string]string{"opcache.enable": "1", "opcache.file_update_protection": "0", "opcache.jit_buffer_size": "0"}},
	}
	if !strings.HasPrefix(version, "7.") {
		vs = append(vs, variant{"jit-tracing", map[string]string{"opcache.enable": "1", "opcache.file_update_protection": "0",
			"opcache.jit_buffer_size": "32M", "opcache.jit": "tracing"}})
	}
	return vs
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
					want = expected(mode, s.Version, lines, f.DocRoot)
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
			if log := f.Log(); strings.Contains(log, "stopped for tracing") || strings.Contains(log, "about to trace") {
				t.Errorf("php-fpm traced a worker:\n%s", log)
			}
		})
	}
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
