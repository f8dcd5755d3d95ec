package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

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
	// Own is how many of Length may be fpmguard's own connections: those
	// it had open to the socket while the kernel was asked. They are no
	// request of its users (PoolReport.Queue leaves them out).
	Own int64 `json:"own,omitempty"`
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
// namespace fpmguard runs in. One dump of every listening socket serves
// every pool probed within queueMaxAge: at 1,000 pools a dump per pool
// would cost more than the rest of the probe.
func ReadSocketQueue(addr fastcgi.Address) (*SocketQueue, error) {
	if addr.Network == "unix" {
		return queues.unix(addr.Addr)
	}
	return queues.inet(addr.Addr)
}

// queueMaxAge is how old a dump may be when a pool's queue is read from
// it: a gauge a fraction of an interval old.
const queueMaxAge = 250 * time.Millisecond

// queueCache is the last dump of the listening sockets of each family.
type queueCache struct {
	mu       sync.Mutex
	unixAt   time.Time
	unixQ    map[string]SocketQueue
	inetAt   [2]time.Time // AF_INET, AF_INET6
	inetQ    [2]map[netip.AddrPort]SocketQueue
	lastErrs [3]error
	// own is, for each dump, the connections fpmguard had open to each
	// address while it was taken.
	unixOwn map[fastcgi.Address]int64
	inetOwn [2]map[fastcgi.Address]int64
}

// ownDuring runs dump, and returns how many connections fpmguard may have
// had open to each address meanwhile: opened by its end, and not closed
// before its start. A dump may be shared by pools probed at once, one of
// them waiting on its own request in the queue.
func ownDuring(dump func()) map[fastcgi.Address]int64 {
	before := fastcgi.Connections()
	dump()
	own := map[fastcgi.Address]int64{}
	for a, n := range fastcgi.Connections() {
		if open := n.Opened - before[a].Closed; open > 0 {
			own[a] = int64(open)
		}
	}
	return own
}

var queues = &queueCache{}

// unix returns the queue of the unix socket bound to path.
func (c *queueCache) unix(path string) (*SocketQueue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.unixAt) > queueMaxAge {
		c.unixOwn = ownDuring(func() { c.unixQ, c.lastErrs[2] = dumpUnix() })
		c.unixAt = time.Now()
	}
	if c.lastErrs[2] != nil {
		return nil, fmt.Errorf("reading the listen queue of %s: %w", path, c.lastErrs[2])
	}
	q, ok := c.unixQ[path]
	if !ok {
		return nil, fmt.Errorf("reading the listen queue of %s: no listening socket bound there in this network namespace", path)
	}
	q.Own = min(q.Length, c.unixOwn[fastcgi.Address{Network: "unix", Addr: path}])
	return &q, nil
}

// dumpUnix reads every listening unix socket: its path and queue.
func dumpUnix() (map[string]SocketQueue, error) {
	req := make([]byte, 24) // struct unix_diag_req
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
	binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowRQLen)
	out := map[string]SocketQueue{}
	err := sockDiag(req, func(msg []byte) {
		if len(msg) < unixDiagMsgLen {
			return
		}
		var name []byte
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
				name = trimNUL(data)
			case typ == unixDiagRQLen && len(data) >= 8:
				q = &SocketQueue{Length: int64(binary.NativeEndian.Uint32(data)), Max: int64(binary.NativeEndian.Uint32(data[4:]))}
			}
			attrs = attrs[min(align4(l), len(attrs)):]
		}
		if len(name) > 0 && q != nil {
			out[string(name)] = *q
		}
	})
	return out, err
}

// inet returns the queue of the TCP socket listening on hostport's port,
// bound to its address or to all addresses.
func (c *queueCache) inet(hostport string) (*SocketQueue, error) {
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
	fam := 0
	if ap.Addr().Is6() {
		fam = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.inetAt[fam]) > queueMaxAge {
		c.inetOwn[fam] = ownDuring(func() { c.inetQ[fam], c.lastErrs[fam] = dumpInet(fam == 1) })
		c.inetAt[fam] = time.Now()
	}
	if c.lastErrs[fam] != nil {
		return nil, fmt.Errorf("reading the listen queue of %s: %w", hostport, c.lastErrs[fam])
	}
	for _, addr := range []netip.Addr{ap.Addr(), netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		if q, ok := c.inetQ[fam][netip.AddrPortFrom(addr, ap.Port())]; ok {
			q.Own = min(q.Length, c.inetOwn[fam][fastcgi.Address{Network: "tcp", Addr: hostport}])
			return &q, nil
		}
	}
	return nil, fmt.Errorf("reading the listen queue of %s: no listening socket there in this network namespace", hostport)
}

// dumpInet reads every listening TCP socket of one family.
func dumpInet(v6 bool) (map[netip.AddrPort]SocketQueue, error) {
	family := byte(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	req := make([]byte, 56) // struct inet_diag_req_v2
	req[0], req[1] = family, syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen)
	out := map[netip.AddrPort]SocketQueue{}
	err := sockDiag(req, func(msg []byte) {
		if len(msg) < inetDiagMsgLen {
			return
		}
		port := binary.BigEndian.Uint16(msg[4:])
		var src netip.Addr
		if family == unix.AF_INET {
			src = netip.AddrFrom4([4]byte(msg[8:12]))
		} else {
			src = netip.AddrFrom16([16]byte(msg[8:24]))
		}
		out[netip.AddrPortFrom(src, port)] = SocketQueue{Length: int64(binary.NativeEndian.Uint32(msg[56:])), Max: int64(binary.NativeEndian.Uint32(msg[60:]))}
	})
	return out, err
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
