package supervisor

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/sockdiag"
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

// ReadSocketQueue asks the kernel, through sock_diag netlink, for the
// listen queue of the socket at addr. It reads sockets of the network
// namespace fpmguard runs in. One dump of every listening socket serves
// every pool probed within queueMaxAge: at 1,000 pools a dump per pool
// would cost more than the rest of the probe.
func ReadSocketQueue(addr fastcgi.Address) (*SocketQueue, error) {
	if addr.Network == "unix" {
		return queues.unix(addr)
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
	unixQ    unixListeners
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

// unix returns the queue of the unix socket at a. A socket in another
// root was bound by a path of that root, which names another file here,
// or none: it is found by its file instead, opened inside the root.
func (c *queueCache) unix(a fastcgi.Address) (*SocketQueue, error) {
	var file *sockdiag.File
	if a.Root != "" {
		fd, err := a.OpenInRoot()
		if err != nil {
			return nil, fmt.Errorf("reading the listen queue of %s: %w", a.Addr, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("reading the listen queue of %s: %w", a.Addr, err)
		}
		f := sockdiag.FileOf(&st)
		file = &f
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.unixAt) > queueMaxAge {
		c.unixOwn = ownDuring(func() { c.unixQ, c.lastErrs[2] = dumpUnix() })
		c.unixAt = time.Now()
	}
	if c.lastErrs[2] != nil {
		return nil, fmt.Errorf("reading the listen queue of %s: %w", a.Addr, c.lastErrs[2])
	}
	q, ok := c.unixQ.byName[a.Addr]
	if file != nil {
		q, ok = c.unixQ.byFile[*file]
	}
	if !ok {
		return nil, fmt.Errorf("reading the listen queue of %s: no listening socket bound there in this network namespace", a.Addr)
	}
	q.Own = min(q.Length, c.unixOwn[a])
	return &q, nil
}

// unixListeners are the listening unix sockets' queues, by the path each
// was bound by and by its file.
type unixListeners struct {
	byName map[string]SocketQueue
	byFile map[sockdiag.File]SocketQueue
}

// dumpUnix reads every listening unix socket.
func dumpUnix() (unixListeners, error) {
	var out unixListeners
	c, err := sockdiag.Open()
	if err != nil {
		return out, err
	}
	defer c.Close()
	socks, err := c.UnixSockets(sockdiag.States(sockdiag.StateListen))
	out.byName = make(map[string]SocketQueue, len(socks))
	out.byFile = make(map[sockdiag.File]SocketQueue, len(socks))
	for _, s := range socks {
		if s.Name == "" || !s.HasQueue {
			continue
		}
		q := SocketQueue{Length: int64(s.Queue.Recv), Max: int64(s.Queue.Send)}
		out.byName[s.Name] = q
		if s.HasFile {
			out.byFile[s.File] = q
		}
	}
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
	c, err := sockdiag.Open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	socks, err := c.InetSockets(sockdiag.TCP, v6, sockdiag.States(sockdiag.StateListen))
	out := make(map[netip.AddrPort]SocketQueue, len(socks))
	for _, s := range socks {
		out[s.Local] = SocketQueue{Length: int64(s.Queue.Recv), Max: int64(s.Queue.Send)}
	}
	return out, err
}
