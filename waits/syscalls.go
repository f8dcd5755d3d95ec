package waits

// call is what a system call a worker sleeps in tells about its wait, and
// where its arguments point.
type call uint8

const (
	callOther   call = iota
	callPoll         // poll, ppoll: (struct pollfd *fds, nfds, ...)
	callSelect       // select, pselect6: (nfds, readfds, writefds, ...)
	callEpoll        // epoll_wait, epoll_pwait, epoll_pwait2: (epfd, ...)
	callRead         // read, recvfrom, ...: the fd is the first argument
	callWrite        // write, sendto, ...: the fd is the first argument
	callConnect      // connect(fd, ...)
	callAccept       // accept, accept4: waiting for the next request
	callFlock        // flock(fd, op)
	callFcntl        // fcntl(fd, cmd, ...): a lock wait with F_SETLKW
	callSleep        // nanosleep, clock_nanosleep, pause
	callFutex        // futex
	callWait         // wait4, waitid: a child process
	callRestart      // restart_syscall: an interrupted sleep or poll resumed
	callSync         // fsync, fdatasync: the fd is the first argument
)

// sysInfo names a system call and its class.
type sysInfo struct {
	name  string
	class call
}

// fcntl commands that wait for a lock (asm-generic/fcntl.h).
const (
	fSetLkW    = 7
	fOFDSetLkW = 38
)
