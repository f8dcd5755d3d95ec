//go:build !linux || !(amd64 || arm64)

package waits

// syscalls is empty where the numbers are not known: a wait is then
// named from the kernel function it sleeps in (wchan) and the state alone.
var syscalls = map[uint64]sysInfo{}
