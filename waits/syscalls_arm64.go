//go:build linux && arm64

package waits

// archSyscalls: arm64 has only the newer calls, in syscalls_linux.go.
var archSyscalls = map[uint64]sysInfo{}
