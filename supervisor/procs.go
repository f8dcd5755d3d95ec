package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// OSState is the kernel's word for what a process is doing.
type OSState string

// The OS states fpmguard reports.
const (
	OSRunning   OSState = "running"    // R: on a CPU or runnable
	OSSleeping  OSState = "sleeping"   // S: waiting for an event
	OSDiskSleep OSState = "disk-sleep" // D: uninterruptible, usually I/O
	OSStopped   OSState = "stopped"    // T or t: SIGSTOP or a tracer
	OSZombie    OSState = "zombie"     // Z: exited, not yet reaped
	OSIdle      OSState = "idle"       // I: kernel idle thread state
	OSGone      OSState = "gone"       // no such process
	OSUnknown   OSState = "unknown"
)

// OSProcess is the kernel's view of one process.
type OSProcess struct {
	PID        int
	PPID       int
	Title      string // the command line as php-fpm rewrote it
	State      OSState
	CPUSeconds float64 // user + system
	RSSBytes   uint64
	// StartMillis is when the process started (Unix ms): with the pid, it
	// names one process, so a reused pid is told apart.
	StartMillis int64
	// OnCPU and RunQueue are the kernel's schedstat: time run on a CPU and
	// time spent runnable, waiting for one.
	OnCPU, RunQueue time.Duration
}

// Titles php-fpm gives its processes.
const (
	masterTitlePrefix = "php-fpm: master process"
	poolTitlePrefix   = "php-fpm: pool "
)

// PoolTitle is the process title of a worker of pool name.
func PoolTitle(name string) string { return poolTitlePrefix + name }

// IsMasterTitle reports whether title is a php-fpm master's. php-fpm cuts
// its title to the space of the original command line, so a master started
// with a short one may read only "php-fpm: mast".
func IsMasterTitle(title string) bool {
	if strings.HasPrefix(title, masterTitlePrefix) {
		return true
	}
	return len(title) >= len("php-fpm: mast") && strings.HasPrefix(masterTitlePrefix, title)
}

// MasterConfigFromTitle returns the config path a master's title names, as
// `php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`.
func MasterConfigFromTitle(title string) (string, bool) {
	rest, ok := strings.CutPrefix(title, masterTitlePrefix+" (")
	if !ok {
		return "", false
	}
	path, ok := strings.CutSuffix(rest, ")")
	return path, ok && path != ""
}

// ProcReader reads the OS view of processes by pid. It is the seam where
// tests put a forged process table.
type ProcReader interface {
	ReadProcess(ctx context.Context, pid int) (OSProcess, error)
}

// errGone reports a pid with no process behind it.
var errGone = errors.New("no such process")

// gopsutilReader reads /proc through gopsutil. It asks only for the pids it
// is given: no scan of the process table.
type gopsutilReader struct{}

// SystemProcs is the ProcReader for this host's /proc.
var SystemProcs ProcReader = gopsutilReader{}

func (gopsutilReader) ReadProcess(ctx context.Context, pid int) (OSProcess, error) {
	out := OSProcess{PID: pid, State: OSUnknown}
	if pid <= 0 {
		return out, fmt.Errorf("reading process %d: %w", pid, errGone)
	}
	// A bare Process skips NewProcess's existence check and create-time read:
	// the reads below fail on a gone pid anyway.
	p := &process.Process{Pid: int32(pid)}
	states, err := p.StatusWithContext(ctx)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, process.ErrorProcessNotRunning) {
			out.State = OSGone
			return out, fmt.Errorf("reading process %d: %w", pid, errGone)
		}
		return out, fmt.Errorf("reading state of process %d: %w", pid, err)
	}
	if len(states) > 0 {
		out.State = osState(states[0])
	}
	ppid, err := p.PpidWithContext(ctx)
	if err != nil {
		return out, fmt.Errorf("reading parent of process %d: %w", pid, err)
	}
	out.PPID = int(ppid)
	if times, err := p.TimesWithContext(ctx); err == nil {
		out.CPUSeconds = times.User + times.System
	}
	if mem, err := p.MemoryInfoWithContext(ctx); err == nil {
		out.RSSBytes = mem.RSS
	}
	if title, err := p.CmdlineWithContext(ctx); err == nil {
		out.Title = strings.TrimSpace(title)
	}
	if ms, err := p.CreateTimeWithContext(ctx); err == nil {
		out.StartMillis = ms
	}
	out.OnCPU, out.RunQueue = readSchedstat(pid)
	return out, nil
}

// readSchedstat reads /proc/PID/schedstat: ns on a CPU, ns waiting on a run
// queue, timeslices. gopsutil does not read it. Zero when unavailable.
func readSchedstat(pid int) (onCPU, runQueue time.Duration) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0
	}
	a, _ := strconv.ParseInt(f[0], 10, 64)
	r, _ := strconv.ParseInt(f[1], 10, 64)
	return time.Duration(a), time.Duration(r)
}

func osState(s string) OSState {
	switch s {
	case process.Running:
		return OSRunning
	case process.Sleep:
		return OSSleeping
	case process.Blocked:
		return OSDiskSleep
	case process.Stop:
		return OSStopped
	case process.Zombie:
		return OSZombie
	case process.Idle:
		return OSIdle
	}
	return OSUnknown
}

// IsGone reports whether err says the process does not exist.
func IsGone(err error) bool { return errors.Is(err, errGone) }
