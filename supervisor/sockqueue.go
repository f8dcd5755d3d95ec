package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/fpmguard/fpmguard/fastcgi"
	"golang.org/x/sys/unix"
)

// SocketQueue is the kernel's own count of connections waiting to be
// accepted on a pool's listen socket, and the backlog's size. php-fpm's
// status page fills its queue fields only for TCP listeners; on a unix
// socket this is the only true number, and the one that decides when
// nginx's connect gets EAGAIN and it answers 502. It is what `ss -xl` shows
// as Recv-Q and Send-Q.
type SocketQueue struct {
	Length int64 `json:"length"`
	Max    int64 `json:"max"`
}

// sock_diag constants missing from x/sys (linux/unix_diag.h, inet_diag.h).
const (
	udiagShowName  = 0x01
	udiagShowRQLen = 0x10
	unixDiagName   = 0
	unixDiagRQLen  = 4
	tcpListen      = 10
	nlmsgHdrLen    = 16
	unixDiagMsgLen = 16
	inetDiagMsgLen = 72
)

// ReadSocketQueue asks the kernel, through sock_diag netlink, for the
// listen queue of the socket at addr. It reads sockets of the network
// namespace fpmguard runs in.
func ReadSocketQueue(addr fastcgi.Address) (*SocketQueue, error) {
	if addr.Network == "unix" {
		return unixQueue(addr.Addr)
	}
	return inetQueue(addr.Addr)
}

// unixQueue dumps the listening unix sockets and picks the one bound to
// path.
func unixQueue(path string) (*SocketQueue, error) {
	req := make([]byte, 24) // struct unix_diag_req
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
	binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowRQLen)
	var found *SocketQueue
	err := sockDiag(req, func(msg []byte) {
		if len(msg) < unixDiagMsgLen || found != nil {
			return
		}
		var name string
		var q *SocketQueue
		for attrs := msg[unixDiagMsgLen:]; len(attrs) >= 4; {
			l := int(binary.NativeEndian.Uint16(attrs))
			typ := binary.NativeEndian.Uint16(attrs[2:])
			if l < 4 || l > len(attrs) {
				break
			}
			data := attrs[4:l]
			switch {
			case typ == unixDiagName:
				name = string(trimNUL(data))
			case typ == unixDiagRQLen && len(data) >= 8:
				q = &SocketQueue{Length: int64(binary.NativeEndian.Uint32(data)), Max: int64(binary.NativeEndian.Uint32(data[4:]))}
			}
			attrs = attrs[min(align4(l), len(attrs)):]
		}
		if name == path && q != nil {
			found = q
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading the listen queue of %s: %w", path, err)
	}
	if found == nil {
		return nil, fmt.Errorf("reading the listen queue of %s: no listening socket bound there in this network namespace", path)
	}
	return found, nil
}

// inetQueue dumps listening TCP sockets of the address's family and picks
// the one on its port (bound to its address or to all addresses).
func inetQueue(hostport string) (*SocketQueue, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		host, port, serr := net.SplitHostPort(hostport)
		if serr != nil {
			return nil, serr
		}
		ips, lerr := net.LookupIP(host)
		if lerr != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolving %s: %v", host, lerr)
		}
		n, _ := strconv.Atoi(port)
		ip, _ := netip.AddrFromSlice(ips[0])
		ap = netip.AddrPortFrom(ip.Unmap(), uint16(n))
	}
	family := byte(unix.AF_INET)
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	req := make([]byte, 56) // struct inet_diag_req_v2
	req[0], req[1] = family, syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
	var found *SocketQueue
	err = sockDiag(req, func(msg []byte) {
		if len(msg) < inetDiagMsgLen || found != nil {
			return
		}
		port := binary.BigEndian.Uint16(msg[4:])
		if port != ap.Port() {
			return
		}
		var src netip.Addr
		if family == unix.AF_INET {
			src = netip.AddrFrom4([4]byte(msg[8:12]))
		} else {
			src = netip.AddrFrom16([16]byte(msg[8:24]))
		}
		if src.IsUnspecified() || src == ap.Addr() {
			found = &SocketQueue{Length: int64(binary.NativeEndian.Uint32(msg[56:])), Max: int64(binary.NativeEndian.Uint32(msg[60:]))}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading the listen queue of %s: %w", hostport, err)
	}
	if found == nil {
		return nil, fmt.Errorf("reading the listen queue of %s: no listening socket there in this network namespace", hostport)
	}
	return found, nil
}

// sockDiag sends one SOCK_DIAG_BY_FAMILY dump request and calls each with
// the payload of every answer.
func sockDiag(req []byte, each func([]byte)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("opening sock_diag: %w", err)
	}
	defer unix.Close(fd)
	// A dump never takes long, but never block forever either.
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	msg := make([]byte, nlmsgHdrLen+len(req))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	copy(msg[nlmsgHdrLen:], req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("asking sock_diag: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("reading sock_diag: %w", err)
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < nlmsgHdrLen || l > len(b) {
				return errors.New("reading sock_diag: truncated message")
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
			}
			b = b[min(align4(l), len(b)):]
		}
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}
