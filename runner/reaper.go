package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Reaper collects every child that exits: php-fpm's master, its orphaned
// workers (fpmguard is their subreaper, or PID 1 in a container), and the
// commands fpmguard runs itself. It is the only caller of wait, so nothing
// races it for the master's exit status: whoever starts a process through
// it gets that process's status from it.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

// NewReaper makes this process a child subreaper, so orphaned php-fpm
// workers are reparented to it and can be waited for.
func NewReaper() (*Reaper, error) {
	if err := setChildSubreaper(); err != nil {
		return nil, fmt.Errorf("becoming a child subreaper: %w", err)
	}
	return &Reaper{waiting: map[int]chan syscall.WaitStatus{}}, nil
}

// Start starts cmd and returns a channel that receives its exit status.
// The lock is held from start to registration, so the process cannot be
// reaped unregistered. Never call cmd.Wait on it.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	return ch, nil
}

// Run reaps children until ctx ends: on every SIGCHLD, and every second in
// case signals were merged.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		// Anything not waited for is an orphan: reaping it is all it needs.
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		}
	}
}

// Output runs a command through the reaper and returns its combined output,
// like exec.Cmd.CombinedOutput, with no shell in between.
func (r *Reaper) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	done, err := r.Start(cmd)
	pw.Close()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, io.LimitReader(pr, 1<<20))
		_, _ = io.Copy(io.Discard, pr)
		close(copied)
	}()
	var ws syscall.WaitStatus
	select {
	case ws = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		ws = <-done
	}
	<-copied
	if ws.Exited() && ws.ExitStatus() == 0 {
		return out.Bytes(), nil
	}
	return out.Bytes(), fmt.Errorf("%s: %s", name, describeExit(ws))
}

// describeExit says how a process ended.
func describeExit(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", ws.Signal(), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// exitCode is the shell convention: the status, or 128 + the signal.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
