package fpmtest

import (
	"syscall"
	"time"
)

// CPUTime is this process's user and system CPU time so far, for
// benchmarks that report the CPU an operation costs beside its wall time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
