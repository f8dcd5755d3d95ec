package sockdiag

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// InetSocket is a TCP or UDP socket as sock_diag describes it.
type InetSocket struct {
	Inode    uint32
	Protocol uint8 // syscall.IPPROTO_TCP or IPPROTO_UDP
	State    uint8
	Local    netip.AddrPort
	Remote   netip.AddrPort // the zero port when not connected
	// Queue: for a listener, the connections waiting to be accepted and
	// the backlog; for others, the bytes queued to read and to send.
	Queue Queue
}

const (
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
)

// InetSockets dumps the sockets of protocol (syscall.IPPROTO_TCP or
// IPPROTO_UDP) of one address family, IPv6 when v6, in states.
func (c *Conn) InetSockets(protocol uint8, v6 bool, states uint32) ([]InetSocket, error) {
	family := byte(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	req := make([]byte, inetDiagReqLen)
	req[0], req[1] = family, protocol
	binary.NativeEndian.PutUint32(req[4:], states)
	var out []InetSocket
	err := c.request(req, true, func(msg []byte) {
		if s, ok := parseInet(msg, protocol); ok {
			out = append(out, s)
		}
	})
	return out, err
}

// parseInet reads a struct inet_diag_msg. Ports are big-endian, addresses
// in network order, the rest in the host's order.
func parseInet(msg []byte, protocol uint8) (InetSocket, bool) {
	var s InetSocket
	if len(msg) < inetDiagMsgLen {
		return s, false
	}
	family := msg[0]
	s.Protocol, s.State = protocol, msg[1]
	sport, dport := binary.BigEndian.Uint16(msg[4:]), binary.BigEndian.Uint16(msg[6:])
	var src, dst netip.Addr
	switch family {
	case unix.AF_INET:
		src, dst = netip.AddrFrom4([4]byte(msg[8:12])), netip.AddrFrom4([4]byte(msg[24:28]))
	case unix.AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(msg[8:24])).Unmap(), netip.AddrFrom16([16]byte(msg[24:40])).Unmap()
	default:
		return s, false
	}
	s.Local, s.Remote = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	s.Queue = Queue{Recv: binary.NativeEndian.Uint32(msg[56:]), Send: binary.NativeEndian.Uint32(msg[60:])}
	s.Inode = binary.NativeEndian.Uint32(msg[68:])
	return s, true
}

// Protocols a dump can ask for.
const (
	TCP = syscall.IPPROTO_TCP
	UDP = syscall.IPPROTO_UDP
)
