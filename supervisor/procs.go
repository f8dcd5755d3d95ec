package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// StartTicks is when the process started, in ticks since boot: with
	// the pid it names one process, so a reused pid is told apart.
	StartTicks uint64
	// ExecID changes each time the process runs a program anew (execve):
	// the kernel places its code and its stack at new random addresses at
	// each exec, and php-fpm's reload (SIGUSR2) is an exec under the same
	// pid and start time. 0 when /proc hides those addresses (a process
	// read without ptrace rights over it).
	ExecID uint64
}

// Titles php-fpm gives its processes.
const (
	masterTitlePrefix = "php-fpm: master process"
	poolTitlePrefix   = "php-fpm: pool "
	// masterTitleCut is the shortest start of a master's title
	// IsMasterTitle takes.
	masterTitleCut = "php-fpm: mast"
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
	return len(title) >= len(masterTitleCut) && strings.HasPrefix(masterTitlePrefix, title)
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

// procReader reads the OS view from /proc. It asks only for the pids it is
// given: no scan of the process table. gopsutil reads the process title;
// /proc/PID/stat is read here, once per process: gopsutil's per-field calls
// read it again for each of state, parent, CPU time and start time, and
// read /proc/stat for the boot time each time too, which cost 6.6 ms of CPU
// per tick of a 50-worker pool against 2 ms for the whole tick.
type procReader struct {
	mu     sync.Mutex
	titles map[titleKey]string
}

// titleKey names one process: a pid and its start time. php-fpm sets a
// process's title once, when it starts, so the title of one process never
// changes and a reused pid has another start time.
type titleKey struct {
	pid   int
	start uint64
}

const maxTitles = 8192

// SystemProcs is the ProcReader for this host's /proc.
var SystemProcs ProcReader = &procReader{titles: map[titleKey]string{}}

// userHZ is the unit of the CPU times in /proc/PID/stat: fixed at 100 by
// the Linux ABI whatever the kernel's own tick rate.
const userHZ = 100

var pageSize = uint64(os.Getpagesize())

func (pr *procReader) ReadProcess(ctx context.Context, pid int) (OSProcess, error) {
	out := OSProcess{PID: pid, State: OSUnknown}
	if pid <= 0 {
		return out, fmt.Errorf("reading process %d: %w", pid, errGone)
	}
	stat, err := readProcFile(pid, "stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			out.State = OSGone
			return out, fmt.Errorf("reading process %d: %w", pid, errGone)
		}
		return out, fmt.Errorf("reading process %d: %w", pid, err)
	}
	if err := parseStat(stat, &out); err != nil {
		return out, fmt.Errorf("reading process %d: %w", pid, err)
	}
	out.Title = pr.title(ctx, pid, out.StartTicks, out.PPID)
	return out, nil
}

// title returns a process's title, cached once it is final. A title is
// final when php-fpm has set it: a worker's "php-fpm: pool NAME", or a
// master's title on a process whose parent is no master. Before that a
// process shows its command line for some milliseconds (longer on a loaded
// machine), and a worker fresh from fork shows its master's title: a cache
// of either would make a live master "gone" and a worker a stranger for
// the life of the process.
func (pr *procReader) title(ctx context.Context, pid int, start uint64, ppid int) string {
	key := titleKey{pid, start}
	pr.mu.Lock()
	title, ok := pr.titles[key]
	pr.mu.Unlock()
	if ok {
		return title
	}
	title = readTitle(ctx, pid)
	final := strings.HasPrefix(title, poolTitlePrefix) || (IsMasterTitle(title) && !IsMasterTitle(readTitle(ctx, ppid)))
	if !final {
		return title
	}
	pr.mu.Lock()
	if len(pr.titles) >= maxTitles {
		clear(pr.titles)
	}
	pr.titles[key] = title
	pr.mu.Unlock()
	return title
}

// readTitle reads a process's title, "" when it cannot be read.
func readTitle(ctx context.Context, pid int) string {
	if pid <= 0 {
		return ""
	}
	p := &process.Process{Pid: int32(pid)}
	cmdline, err := p.CmdlineWithContext(ctx)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(cmdline)
}

// readProcFile reads a small file of /proc/PID. /proc files claim size 0,
// so os.ReadFile's stat is wasted; this does open, read, close.
func readProcFile(pid int, name string) ([]byte, error) {
	return readProcFileMax(pid, name, maxProcFile)
}

// readProcFileMax is readProcFile with a bound of its own.
func readProcFileMax(pid int, name string, max int) ([]byte, error) {
	return readSmallFile("/proc/"+strconv.Itoa(pid)+"/"+name, max)
}

// maxProcFile bounds what is read of a /proc file: the largest fpmguard
// reads, a busy master's task/N/children, holds a few bytes per worker.
const maxProcFile = 1 << 20

// readSmallFile reads a small file of /proc with open, read, close:
// os.ReadFile also stats it and offers it to the netpoller, which refuses
// /proc files (fstat, fcntl, a failing epoll_ctl), and this runs for every
// process of every pool every interval. A short read ends it: /proc writes
// a small file in one read. Past max bytes it fails: no /proc file
// fpmguard reads is that long. Files the watched side may write go
// through package safefile instead.
func readSmallFile(path string, max int) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 1024)
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		n += m
		if m == 0 || n < len(buf) {
			return buf[:n], nil
		}
		if len(buf) >= max {
			return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("longer than %d bytes", max)}
		}
		buf = append(buf, make([]byte, min(len(buf), max-len(buf)+1))...)
	}
}

// parseStat reads the fields fpmguard needs from /proc/PID/stat. The
// command name in parentheses may hold spaces and parentheses itself, so
// the fields are counted from the last ')'.
func parseStat(b []byte, out *OSProcess) error {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return errors.New("malformed stat line")
	}
	// Fields are numbered from 1 in proc(5); the first after the name is
	// field 3. They are walked in place: this runs for every worker of
	// every pool every interval.
	var state []byte
	var nums [29]uint64
	n := 2
	for rest := b[end+1:]; n < 28; {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			i = len(rest)
		}
		n++
		f := bytes.TrimRight(rest[:i], "\n")
		if n == 3 {
			state = f
		} else {
			nums[n] = parseUint(f)
		}
		rest = rest[i:]
	}
	if n < 24 {
		return fmt.Errorf("stat line has %d fields after the name, want at least 22", n-2)
	}
	out.State = stateLetter(string(state))
	out.PPID = int(nums[4])
	out.CPUSeconds = float64(nums[14]+nums[15]) / userHZ
	out.StartTicks = nums[22]
	out.RSSBytes = nums[24] * pageSize
	// startcode (26) and startstack (28): /proc shows 1 and 0 in their
	// place to a reader without ptrace rights.
	out.ExecID = 0
	if nums[28] != 0 {
		out.ExecID = nums[26] ^ nums[28]
	}
	return nil
}

// parseUint reads a decimal number; anything else is 0, as /proc never
// writes it.
func parseUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}

func stateLetter(s string) OSState {
	switch s {
	case "R":
		return OSRunning
	case "S":
		return OSSleeping
	case "D":
		return OSDiskSleep
	case "T", "t":
		return OSStopped
	case "Z", "X":
		return OSZombie
	case "I":
		return OSIdle
	}
	return OSUnknown
}

// ReadSchedstat reads /proc/PID/schedstat: ns on a CPU, ns waiting on a
// run queue, timeslices. gopsutil does not read it. Zero when unavailable.
func ReadSchedstat(pid int) (onCPU, runQueue time.Duration) {
	b, err := readProcFile(pid, "schedstat")
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

// ReadPSS reads a process's proportional set size from
// /proc/PID/smaps_rollup, 0 when unavailable.
func ReadPSS(pid int) uint64 {
	b, err := readProcFile(pid, "smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
