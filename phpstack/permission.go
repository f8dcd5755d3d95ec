package phpstack

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Missing names what a refused read lacks.
type Missing uint8

// What a read of another process's memory may lack. The kernel lets a
// process read another's /proc/PID/mem when it has CAP_SYS_PTRACE, or
// when both run as the same user, the target is dumpable and Yama's
// ptrace_scope allows it (ptrace_may_access in kernel/ptrace.c).
const (
	// MissingCapSysPtrace: the worker runs as another user and the
	// reader lacks CAP_SYS_PTRACE.
	MissingCapSysPtrace Missing = iota + 1
	// MissingDumpable: same user, but the worker is not dumpable, as
	// php-fpm's workers are when a root master switched them to the
	// pool's user; CAP_SYS_PTRACE or the pool's process.dumpable = yes.
	MissingDumpable
	// MissingPtraceScope: kernel.yama.ptrace_scope forbids it.
	MissingPtraceScope
	// MissingUnknown: refused although none of the above is missing: a
	// security module (AppArmor, SELinux, seccomp) or a user namespace.
	MissingUnknown
)

// PermissionError says why the kernel refused to let the reader read a
// worker's memory, and how to grant it.
type PermissionError struct {
	PID         int
	WorkerUID   int // -1 when unknown
	ReaderUID   int
	Missing     Missing
	PtraceScope int // kernel.yama.ptrace_scope; 0 without Yama
	Err         error
}

func (e *PermissionError) Unwrap() error { return e.Err }

// grantCap is how to give fpmguard CAP_SYS_PTRACE where it runs.
const grantCap = `grant CAP_SYS_PTRACE: in a systemd unit, in CapabilityBoundingSet= and AmbientCapabilities= (when it runs as a user other than root); in Kubernetes, securityContext.capabilities.add: ["SYS_PTRACE"] in fpmguard's container`

func (e *PermissionError) Error() string {
	who := fmt.Sprintf("reading the PHP stack of worker %d (uid %d) as uid %d", e.PID, e.WorkerUID, e.ReaderUID)
	switch e.Missing {
	case MissingCapSysPtrace:
		return who + " needs CAP_SYS_PTRACE, which this process lacks: " + grantCap
	case MissingDumpable:
		return who + " needs CAP_SYS_PTRACE, as the worker is not dumpable (its master switched it to the pool's user): " + grantCap + ", or set process.dumpable = yes in the pool"
	case MissingPtraceScope:
		if e.PtraceScope >= 3 {
			return who + " is refused by kernel.yama.ptrace_scope = 3, which forbids it to every process until the next boot"
		}
		return fmt.Sprintf("%s is refused by kernel.yama.ptrace_scope = %d: %s (or lower the sysctl to %d)", who, e.PtraceScope, grantCap, e.PtraceScope-1)
	}
	return fmt.Sprintf("%s is refused although nothing the kernel's ptrace rules ask for is missing (CAP_SYS_PTRACE, or the same uid with a dumpable worker and ptrace_scope 0): a security module (AppArmor, SELinux) or another user namespace forbids it: %v", who, e.Err)
}

// capSysPtrace is the capability's bit (linux/capability.h).
const capSysPtrace = 19

// diagnose turns a refused open of one of the worker's /proc files into a
// PermissionError that says which condition failed.
func diagnose(p *proc, err error) error {
	e := &PermissionError{PID: p.pid, WorkerUID: -1, ReaderUID: os.Geteuid(), Err: err, PtraceScope: ptraceScope()}
	status, _ := p.readFile("status", 2048)
	if f := strings.Fields(statusField(status, "Uid:")); len(f) >= 1 {
		e.WorkerUID, _ = strconv.Atoi(f[0])
	}
	sameUser := e.WorkerUID == e.ReaderUID
	// A process that is not dumpable has the files in its /proc
	// directory owned by root whatever its uid (task_dump_owner in
	// fs/proc/base.c); the directory itself keeps the process's uid.
	dumpable := true
	var st unix.Stat_t
	if err := unix.Fstatat(int(p.dir.Fd()), "status", &st, 0); err == nil && st.Uid == 0 && e.WorkerUID > 0 {
		dumpable = false
	}
	switch {
	case e.PtraceScope >= 3:
		e.Missing = MissingPtraceScope
	case hasCap(capSysPtrace):
		e.Missing = MissingUnknown
	case !sameUser:
		e.Missing = MissingCapSysPtrace
	case !dumpable:
		e.Missing = MissingDumpable
	case e.PtraceScope >= 1:
		// 1 allows reading descendants only, 2 only with the capability.
		e.Missing = MissingPtraceScope
	default:
		e.Missing = MissingUnknown
	}
	return e
}

// ptraceScope reads kernel.yama.ptrace_scope; 0 where Yama is not built in.
func ptraceScope() int {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// hasCap reports whether this process has capability bit in its effective set.
func hasCap(bit uint) bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	caps, err := strconv.ParseUint(strings.TrimSpace(statusField(status, "CapEff:")), 16, 64)
	return err == nil && caps&(1<<bit) != 0
}

// statusField returns the rest of the line of a /proc status file that
// starts with key, or "".
func statusField(status []byte, key string) string {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			return v
		}
	}
	return ""
}
