//go:build linux && (amd64 || arm64)

package waits

import "golang.org/x/sys/unix"

// syscalls are the system calls a worker waits in, by this architecture's
// numbers: /proc/PID/syscall gives the native number.
var syscalls = func() map[uint64]sysInfo {
	m := map[uint64]sysInfo{
		unix.SYS_READ:            {"read", callRead},
		unix.SYS_READV:           {"readv", callRead},
		unix.SYS_PREAD64:         {"pread64", callRead},
		unix.SYS_RECVFROM:        {"recvfrom", callRead},
		unix.SYS_RECVMSG:         {"recvmsg", callRead},
		unix.SYS_RECVMMSG:        {"recvmmsg", callRead},
		unix.SYS_WRITE:           {"write", callWrite},
		unix.SYS_WRITEV:          {"writev", callWrite},
		unix.SYS_PWRITE64:        {"pwrite64", callWrite},
		unix.SYS_SENDTO:          {"sendto", callWrite},
		unix.SYS_SENDMSG:         {"sendmsg", callWrite},
		unix.SYS_SENDMMSG:        {"sendmmsg", callWrite},
		unix.SYS_PPOLL:           {"ppoll", callPoll},
		unix.SYS_PSELECT6:        {"pselect6", callSelect},
		unix.SYS_EPOLL_PWAIT:     {"epoll_pwait", callEpoll},
		unix.SYS_EPOLL_PWAIT2:    {"epoll_pwait2", callEpoll},
		unix.SYS_CONNECT:         {"connect", callConnect},
		unix.SYS_ACCEPT:          {"accept", callAccept},
		unix.SYS_ACCEPT4:         {"accept4", callAccept},
		unix.SYS_FLOCK:           {"flock", callFlock},
		unix.SYS_FCNTL:           {"fcntl", callFcntl},
		unix.SYS_NANOSLEEP:       {"nanosleep", callSleep},
		unix.SYS_CLOCK_NANOSLEEP: {"clock_nanosleep", callSleep},
		unix.SYS_FUTEX:           {"futex", callFutex},
		unix.SYS_WAIT4:           {"wait4", callWait},
		unix.SYS_WAITID:          {"waitid", callWait},
		unix.SYS_RESTART_SYSCALL: {"restart_syscall", callRestart},
		unix.SYS_FSYNC:           {"fsync", callSync},
		unix.SYS_FDATASYNC:       {"fdatasync", callSync},
	}
	for nr, s := range archSyscalls {
		m[nr] = s
	}
	return m
}()
