package phpstack

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestReadWorkers reads the stacks of live workers on every PHP version of
// the matrix, with opcache off, on, and with the JIT (PHP 8 only): one
// master per version and variant, whose pool www holds workers sleeping in
// known scripts and one spinning, and whose pool slow is traced by php-fpm
// for its slowlog, a second witness of the same frames.
func TestReadWorkers(t *testing.T) {
	files, lines := scripts(t)
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		for _, vr := range variants(v) {
			t.Run(vr.name, func(t *testing.T) {
				modes := sleepModes(v)
				slowModes := []string{"sleep", "eval", "deep"}
				// A worker more than there are requests in each pool, for
				// the status page where there is no pm.status_listen and
				// for checkVariant.
				f := fpmtest.Start(t, fpmtest.Options{Version: v, Defines: vr.defines, Files: files, Pools: []fpmtest.Pool{
					{Name: "www", MaxChildren: len(modes) + 2},
					{Name: "slow", MaxChildren: len(slowModes) + 1, Slowlog: true},
				}})
				pids := busy(t, f, "www", 120000, append(modes, "spin")...)
				slowPIDs := busy(t, f, "slow", 120000, slowModes...)
				t.Run("sleeping", func(t *testing.T) { readSleeping(t, f, pids, modes, lines) })
				t.Run("spinning", func(t *testing.T) { readSpinning(t, f, pids["spin"], lines) })
				t.Run("slowlog", func(t *testing.T) { readMatchesSlowlog(t, f, slowPIDs, slowModes) })
				checkVariant(t, f, vr)
				notTraced(t, f, pids)
			})
		}
	})
}

// readSleeping reads the stacks of workers sleeping in known scripts and
// checks every frame: function, class, file and line. The workers are
// never stopped: their state stays S while they are read.
func readSleeping(t *testing.T, f *fpmtest.FPM, pids map[string]int, modes []string, lines map[string]int) {
	docRoot := f.InRoot(f.DocRoot)
	r := &Reader{}
	for _, mode := range modes {
		pid := pids[mode]
		var want []want
		s, err := readUntil(t, r, pid, func(s Stack) bool {
			want = expected(mode, s.Version, lines)
			return sameFrames(got(s, docRoot), want)
		})
		if err != nil {
			t.Fatalf("%s: reading worker %d: %v", mode, pid, err)
		}
		if !sameFrames(got(s, docRoot), want) {
			t.Fatalf("%s: worker %d's stack:\n%swant:\n%s(incomplete: %v)", mode, pid, describe(got(s, docRoot)), describe(want), s.Incomplete)
		}
		if s.Version != f.PHPVersion {
			t.Errorf("%s: version %s, php-fpm says %s", mode, s.Version, f.PHPVersion)
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
}

// readSpinning reads, many times over, the stack of a worker that spins
// in a loop calling microtime(): its innermost frame comes and goes
// hundreds of thousands of times a second, and every read must still be
// the script's stack, with or without microtime on top, or say it kept
// changing; never a frame the script does not have.
func readSpinning(t *testing.T, f *fpmtest.FPM, pid int, lines map[string]int) {
	docRoot := f.InRoot(f.DocRoot)
	r := &Reader{}
	microtime := want{KindInternal, "microtime", "", 0}
	var wantFrames []want
	matches := func(s Stack) bool {
		wantFrames = expected("spin", s.Version, lines)
		g := got(s, docRoot)
		if len(g) > 0 && g[0] == microtime {
			g = g[1:]
		}
		return s.Incomplete == nil && sameFrames(g, wantFrames)
	}
	if s, err := readUntil(t, r, pid, matches); err != nil || !matches(s) {
		t.Fatalf("worker %d: %v\n%swant, under an optional microtime:\n%s", pid, err, describe(got(s, docRoot)), describe(wantFrames))
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
			t.Fatalf("worker %d: read\n%s(incomplete: %v)\nwant, under an optional microtime:\n%s", pid, describe(got(s, docRoot)), s.Incomplete, describe(wantFrames))
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
}

// readMatchesSlowlog compares the stacks read with php-fpm's own slowlog
// of the same requests, which php-fpm writes by stopping the worker with
// ptrace: a second witness of every frame, written by PHP's own code with
// the compiler's offsets.
func readMatchesSlowlog(t *testing.T, f *fpmtest.FPM, pids map[string]int, modes []string) {
	r := &Reader{}
	for _, mode := range modes {
		pid := pids[mode]
		slow := fpmtest.Poll(t, time.Minute, func() ([]string, bool) {
			s := slowlogFrames(t, f.Pools["slow"].SlowlogPath, pid)
			return s, len(s) > 0
		})
		// The slowlog was written after a second of the request: the
		// worker sleeps in the same frames now.
		s, err := readUntil(t, r, pid, func(s Stack) bool { return strings.Join(asSlowlog(s.Frames), "\n") == strings.Join(slow, "\n") })
		if err != nil {
			t.Fatalf("%s: reading worker %d: %v", mode, pid, err)
		}
		if got := asSlowlog(s.Frames); strings.Join(got, "\n") != strings.Join(slow, "\n") {
			t.Fatalf("%s: worker %d's stack, as a slowlog:\n  %s\nphp-fpm's slowlog:\n  %s", mode, pid, strings.Join(got, "\n  "), strings.Join(slow, "\n  "))
		}
	}
}

// TestReadWorkerThatExits reads workers while they exit, on every version:
// one killed, one that ends by itself after its only request
// (pm.max_requests = 1). Every read gives the script's stack (or, for the
// one whose request ends, a stack on the way to it or none), or ErrExited;
// never a wrong frame nor another error.
func TestReadWorkerThatExits(t *testing.T) {
	files, lines := scripts(t)
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Files: files, Pools: []fpmtest.Pool{
			{Name: "www", MaxChildren: 2},
			{Name: "once", MaxChildren: 2, Extra: []string{"pm.max_requests = 1"}},
		}})
		docRoot := f.InRoot(f.DocRoot)
		whole := expected("sleep", f.PHPVersion, lines)
		t.Run("killed", func(t *testing.T) {
			pid := busy(t, f, "www", 120000, "sleep")["sleep"]
			r := &Reader{}
			if s, err := readUntil(t, r, pid, func(s Stack) bool { return sameFrames(got(s, docRoot), whole) }); err != nil || !sameFrames(got(s, docRoot), whole) {
				t.Fatalf("worker %d: %v\n%s", pid, err, describe(got(s, docRoot)))
			}
			n := readToExit(t, r, pid, func(s Stack) bool { return sameFrames(got(s, docRoot), whole) && s.Incomplete == nil }, func() {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Errorf("killing worker %d: %v", pid, err)
				}
			})
			t.Logf("%d stacks read before the worker's exit", n)
		})
		t.Run("last-request", func(t *testing.T) {
			pid := busy(t, f, "once", 3000, "sleep")["sleep"]
			r := &Reader{}
			full := 0
			n := readToExit(t, r, pid, func(s Stack) bool {
				if sameFrames(got(s, docRoot), whole) {
					full++
				}
				return growing(s, whole, docRoot)
			}, nil)
			if full == 0 {
				t.Errorf("none of %d reads gave the whole stack", n)
			}
			t.Logf("%d stacks read before the worker's exit, %d of them whole", n, full)
		})
	})
}

// TestReadIdleWorker: a worker between requests runs no PHP code; its
// stack is empty and whole, on every version.
func TestReadIdleWorker(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 1}}})
		pid := f.WorkerPIDs("www")[0]
		s, err := (&Reader{}).Read(pid)
		if err != nil || len(s.Frames) != 0 || s.Incomplete != nil || s.Version != f.PHPVersion {
			t.Fatalf("idle worker %d: stack %+v, error %v; want no frames, version %s and no error", pid, s, err, f.PHPVersion)
		}
	})
}

// TestReadUnknownBinaries: a php-fpm whose version string says 8.3 (a
// version the reader has no layout for) and a process that is not PHP at
// all are refused with an UnsupportedError naming the reason, not read
// with offsets that do not fit.
func TestReadUnknownBinaries(t *testing.T) {
	t.Run("patched-php-fpm", func(t *testing.T) {
		bin, data := hostBinary(t)
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
		_, err := (&Reader{}).Read(pid)
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

// BenchmarkRead measures one read of a sleeping worker's stack: the
// script's 8 frames, and 64 frames of recursion (the bound), with the
// executable already identified, and a first read that identifies it.
// The baseline is one read of the worker's /proc/PID/stat, as the watcher
// does for every worker on every tick. cpu-ns/op is the CPU time of the
// whole process (user and system) per read, wall time is ns/op.
func BenchmarkRead(b *testing.B) {
	files, lines := scripts(b)
	f := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3}}, Files: files})
	pids := busy(b, f, "www", 600000, "sleep", "deep")
	for mode, pid := range pids {
		r := &Reader{}
		fpmtest.Poll(b, time.Minute, func() (int, bool) {
			s, err := r.Read(pid)
			return len(s.Frames), err == nil && len(s.Frames) == len(expected(mode, s.Version, lines))
		})
	}
	run := func(b *testing.B, read func() error) {
		b.ReportAllocs()
		start := fpmtest.CPUTime()
		for b.Loop() {
			if err := read(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(fpmtest.CPUTime()-start)/float64(b.N), "cpu-ns/op")
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
