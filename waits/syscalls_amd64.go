//go:build linux && amd64

package waits

import "golang.org/x/sys/unix"

// archSyscalls are the older calls amd64 has and arm64 does not.
var archSyscalls = map[uint64]sysInfo{
	unix.SYS_POLL:       {"poll", callPoll},
	unix.SYS_SELECT:     {"select", callSelect},
	unix.SYS_EPOLL_WAIT: {"epoll_wait", callEpoll},
	unix.SYS_PAUSE:      {"pause", callSleep},
}
