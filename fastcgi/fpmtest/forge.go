package fpmtest

import (
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Forged processes: what a pool user can start to pass for something it
// is not, such as a php-fpm master, for tests of what fpmguard trusts. A
// forged process runs a copy of the test binary, so the test binary plays
// the part: every package that forges calls ForgeMain first in TestMain.

// forgedName is the file name of every forged binary: the test binary
// knows by it that it runs as one.
const forgedName = "fpmguard-forged"

// PoolUser is the uid and gid of Debian's www-data, the pool user of the
// tests: the one who owns /run/php.
const PoolUser = 33

// ForgeOptions describe a forged process.
type ForgeOptions struct {
	Title string // its argv[0], the whole of its command line, e.g. "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"
	UID   int    // the user it runs as; its gid is the same number
	// BinaryOwner owns its binary, mode 0755: the pool user's own copy, or
	// root's (a root-owned, unwritable program run by the pool user).
	BinaryOwner int
	// Listen is a unix socket path it listens on without ever accepting
	// (a pool socket taken over), "" for none.
	Listen string
}

// Forged is a running forged process.
type Forged struct {
	PID int
	Dir string // its binary's directory, where it records what happens to it
	Exe string // its binary
	cmd *exec.Cmd
}

// Forge starts a forged process and waits until it is ready (signal
// handlers set, socket listening). It is killed when the test ends.
func Forge(t testing.TB, o ForgeOptions) *Forged {
	t.Helper()
	dir, err := os.MkdirTemp("", "fpmguard-forged")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The forged process records into its own directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, o.UID, o.UID); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, forgedName)
	if err := copyExecutable(exe, o.BinaryOwner); err != nil {
		t.Fatal(err)
	}
	f := &Forged{Dir: dir, Exe: exe}
	f.cmd = &exec.Cmd{Path: exe, Args: []string{o.Title}, Dir: "/",
		Env:         []string{"FPMGUARD_FORGED=1", "FPMGUARD_FORGED_LISTEN=" + o.Listen},
		SysProcAttr: &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.UID)}, Setpgid: true}}
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("starting a forged process: %v", err)
	}
	f.PID = f.cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = f.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-f.PID, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return f
		}
		select {
		case <-exited:
			t.Fatalf("the forged process exited while starting")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the forged process was not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func copyExecutable(dst string, owner int) error {
	src, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chown(dst, owner, owner); err != nil {
		return err
	}
	return os.Chmod(dst, 0o755)
}

// Executed lists every run of the forged binary by anyone but the forged
// process itself, as "uid=U euid=E args=[...]": a forged master's binary
// run by fpmguard shows here.
func (f *Forged) Executed() []string { return f.lines("executed") }

// Signals lists the signals the forged process received.
func (f *Forged) Signals() []string { return f.lines("signals") }

func (f *Forged) lines(name string) []string {
	b, _ := os.ReadFile(filepath.Join(f.Dir, name))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ForgeMain plays a forged process's part when the test binary runs as
// one, and returns at once otherwise. Call it first in TestMain.
func ForgeMain() {
	exe, err := os.Executable()
	if err != nil || filepath.Base(exe) != forgedName {
		return
	}
	dir := filepath.Dir(exe)
	if os.Getenv("FPMGUARD_FORGED") != "1" {
		// Someone else ran this binary: record who, and as whom.
		appendLine(filepath.Join(dir, "executed"), "uid="+strconv.Itoa(os.Getuid())+" euid="+strconv.Itoa(os.Geteuid())+" args="+strings.Join(os.Args, ","))
		os.Exit(0)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGINT)
	if path := os.Getenv("FPMGUARD_FORGED_LISTEN"); path != "" {
		_ = os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			os.Exit(3)
		}
		defer ln.Close() // never accepted: connections wait in the backlog
	}
	appendLine(filepath.Join(dir, "ready"), "ready")
	for s := range sigs {
		appendLine(filepath.Join(dir, "signals"), s.(syscall.Signal).String())
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line + "\n")
}
