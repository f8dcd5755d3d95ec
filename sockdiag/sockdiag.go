// Package sockdiag asks the kernel about sockets through the sock_diag
// netlink interface (NETLINK_SOCK_DIAG): the unix and inet sockets of a
// network namespace, with their addresses, states, queues and inodes. It is
// what `ss` reads. fpmguard reads the listen queue of a pool's socket with
// it, and the peer of a socket a hung worker waits on.
//
// It imports only the standard library and x/sys/unix; it must not import
// any fpmguard package.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is a sock_diag netlink socket. It answers for the network namespace
// it was opened in: fpmguard's own (Open), or a worker's (OpenIn).
type Conn struct {
	fd  int
	seq uint32
}

// Open opens a sock_diag socket in fpmguard's network namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening sock_diag: %w", err)
	}
	// A dump never takes long, but never block forever either.
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &Conn{fd: fd}, nil
}

// OpenIn opens a sock_diag socket in the network namespace netns names,
// such as /proc/PID/ns/net: a netlink socket answers for the namespace it
// was created in, whatever thread uses it later. It enters the namespace on
// a thread of its own, which it never gives back to the Go scheduler: the
// thread ends with the goroutine, so no other goroutine ever runs in the
// other namespace, even when the way back fails. Entering needs
// CAP_SYS_ADMIN.
func OpenIn(netns string) (*Conn, error) {
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		ns, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: fmt.Errorf("opening the network namespace %s: %w", netns, err)}
			return
		}
		defer unix.Close(ns)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("entering the network namespace %s: %w", netns, err)}
			return
		}
		c, err := Open()
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// Socket states, as the kernel numbers them for TCP (include/net/tcp_states.h);
// unix and UDP sockets use the same numbers.
const (
	StateEstablished = 1
	StateSynSent     = 2
	StateSynRecv     = 3
	StateFinWait1    = 4
	StateFinWait2    = 5
	StateTimeWait    = 6
	StateClose       = 7
	StateCloseWait   = 8
	StateLastAck     = 9
	StateListen      = 10
	StateClosing     = 11
)

// AllStates asks for sockets in every state.
const AllStates = ^uint32(0)

// States makes the state mask of a request.
func States(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// StateName is the state's name as `ss` writes it.
func StateName(s uint8) string {
	names := [...]string{StateEstablished: "established", StateSynSent: "syn-sent", StateSynRecv: "syn-recv",
		StateFinWait1: "fin-wait-1", StateFinWait2: "fin-wait-2", StateTimeWait: "time-wait", StateClose: "close",
		StateCloseWait: "close-wait", StateLastAck: "last-ack", StateListen: "listen", StateClosing: "closing"}
	if int(s) < len(names) && names[s] != "" {
		return names[s]
	}
	return fmt.Sprintf("state-%d", s)
}

const nlmsgHdrLen = 16

// request sends one SOCK_DIAG_BY_FAMILY request, a dump or an exact
// lookup, and calls each with the payload of every answer.
func (c *Conn) request(req []byte, dump bool, each func([]byte)) error {
	c.seq++
	flags := uint16(unix.NLM_F_REQUEST)
	if dump {
		flags |= unix.NLM_F_DUMP
	}
	msg := make([]byte, nlmsgHdrLen+len(req))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	copy(msg[nlmsgHdrLen:], req)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("asking sock_diag: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("reading sock_diag: %w", err)
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if l < nlmsgHdrLen || l > len(b) {
				return errors.New("reading sock_diag: truncated message")
			}
			if seq != c.seq {
				// The answer to an earlier request that timed out: skip it.
				b = b[min(align4(l), len(b)):]
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if l >= nlmsgHdrLen+4 {
					if code := int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:])); code != 0 {
						return fmt.Errorf("sock_diag: %w", syscall.Errno(-code))
					}
				}
				return nil
			default:
				each(b[nlmsgHdrLen:l])
				if !dump {
					return nil // an exact lookup has one answer
				}
			}
			b = b[min(align4(l), len(b)):]
		}
	}
}

// attrs calls fn with the type and data of each netlink attribute in b.
func attrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			return
		}
		fn(typ, b[4:l])
		b = b[min(align4(l), len(b)):]
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}
