package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// The version matrix: the integration families run against a php-fpm of
// each version of fpmtest.Versions. fpmguard runs beside php-fpm as it
// does in the field. For the host's 8.2 it runs on the host, in-process
// for the one-shot commands. For a version in a root of its own it runs
// inside that root, with a /proc of its own (fpmtest.FPM.Command): in the
// same container as php-fpm, as its entrypoint (run) or beside it, and it
// is given paths as php-fpm sees them (guard.path). fpmguard on the host
// watching a master in another root is discovery's case, tested in
// supervisor (TestDiscoverRunningMaster): named by flags, a master in
// another root is out of the host's reach, and discovery with no flags
// would probe every other test's php-fpm on the machine.

// guard runs fpmguard beside the php-fpm f.
type guard struct {
	f   *fpmtest.FPM
	bin string // the binary as the root sees it; "" on the host
}

// newGuard places the fpmguard binary in f's root when f runs in one.
func newGuard(t *testing.T, f *fpmtest.FPM) *guard {
	t.Helper()
	g := &guard{f: f}
	if f.Root == "" {
		return g
	}
	// Static, as make build builds it: the root's libc is not the host's.
	bin := filepath.Join(f.Dir, "fpmguard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g.bin = f.InRoot(bin)
	return g
}

// path is a host path of f's directory as fpmguard sees it.
func (g *guard) path(host string) string { return g.f.InRoot(host) }

// opcacheDir is a directory for fpmguard's opcache script, as fpmguard
// sees it: inside the root when fpmguard runs there, never the root's own
// /var/lib/fpmguard (the root is a cache shared by every test).
func (g *guard) opcacheDir(t *testing.T) string {
	t.Helper()
	if g.bin == "" {
		return opcacheDir(t)
	}
	return g.path(filepath.Join(g.f.Dir, "fpmguard-opcache"))
}

// run runs a one-shot command and returns its exit code and output.
func (g *guard) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if g.bin == "" {
		return runCLI(t, args...)
	}
	cmd := g.f.Command(g.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running fpmguard in %s: %v", g.f.Root, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// start starts a command that runs until stopped (serve, run) and stops it
// with SIGTERM at the end of the test, unless the test did.
func (g *guard) start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	if g.bin == "" {
		return startBinary(t, args...)
	}
	cmd := g.f.Command(g.bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("fpmguard output:\n%s", out.String())
		}
	})
	return cmd, &out
}
