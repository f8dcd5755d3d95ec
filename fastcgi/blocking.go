package fastcgi

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A request to a unix socket is exchanged on a blocking socket, in the
// caller's thread: a write, then reads that sleep in the kernel until
// php-fpm answers. Through Go's netpoller the same exchange parks the
// goroutine and wakes it again, which on a small VM costs more CPU than
// php-fpm spends answering (about 100 µs a wake-up). TCP keeps the
// netpoller: its connect cannot be both non-blocking and simple.

// maxBlocking bounds the exchanges that hold a thread each: a thousand hung
// pools must not mean a thousand threads. Past it, the netpoller serves.
const maxBlocking = 32

var blocking atomic.Int32

// unixConn is a connected, blocking unix socket with a deadline.
type unixConn struct {
	fd       int
	deadline time.Time

	mu     sync.Mutex // orders shutdown by a cancelled ctx before close
	closed bool
}

// dialUnix connects to a unix socket without waiting for room in its
// backlog, as nginx does: a full backlog is EAGAIN at once, nginx's 502.
// ok is false when too many exchanges block already: use the netpoller.
func dialUnix(path string, deadline time.Time) (c *unixConn, ok bool, err error) {
	if blocking.Add(1) > maxBlocking {
		blocking.Add(-1)
		return nil, false, nil
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		blocking.Add(-1)
		return nil, true, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		blocking.Add(-1)
		return nil, true, &os.SyscallError{Syscall: "connect", Err: err}
	}
	// Connected: from here on reads and writes block, up to the deadline.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		blocking.Add(-1)
		return nil, true, os.NewSyscallError("fcntl", err)
	}
	return &unixConn{fd: fd, deadline: deadline}, true, nil
}

// timeout sets the socket's timeout to what is left before the deadline.
func (c *unixConn) timeout(opt int) error {
	left := time.Until(c.deadline)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	tv := unix.NsecToTimeval(left.Nanoseconds())
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1 // zero would mean no timeout at all
	}
	return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, opt, &tv)
}

func (c *unixConn) Write(p []byte) (int, error) {
	if err := c.timeout(unix.SO_SNDTIMEO); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		m, err := unix.Write(c.fd, p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, c.ioError("write", err)
		}
		n += m
	}
	return n, nil
}

func (c *unixConn) Read(p []byte) (int, error) {
	if err := c.timeout(unix.SO_RCVTIMEO); err != nil {
		return 0, err
	}
	for {
		n, err := unix.Read(c.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, c.ioError("read", err)
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// ioError names a timed-out or cancelled read or write as the netpoller
// would: os.ErrDeadlineExceeded.
func (c *unixConn) ioError(op string, err error) error {
	if errors.Is(err, unix.EAGAIN) || time.Now().After(c.deadline) {
		return os.ErrDeadlineExceeded
	}
	c.mu.Lock()
	shut := c.closed
	c.mu.Unlock()
	if shut {
		return os.ErrDeadlineExceeded
	}
	return &os.SyscallError{Syscall: op, Err: err}
}

// cancel wakes a blocked read or write when ctx ends, as the deadline
// would.
func (c *unixConn) cancel(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed {
			c.closed = true
			_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
		}
	})
}

func (c *unixConn) Close() error {
	c.mu.Lock()
	c.closed = true
	err := unix.Close(c.fd)
	c.mu.Unlock()
	blocking.Add(-1)
	return err
}
