package waits

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/sockdiag"
)

// socket is one of a worker's sockets, as the kernel's tables describe it.
type socket struct {
	fd    int
	inode uint32
	inet  *sockdiag.InetSocket
	unix  *sockdiag.UnixSocket
	// peerName is a unix socket's peer's name: its listener's path.
	peerName string
}

// listening reports whether the socket is a listener: in a worker, the
// pool's own socket.
func (s socket) listening() bool {
	switch {
	case s.inet != nil:
		return s.inet.State == sockdiag.StateListen
	case s.unix != nil:
		return s.unix.State == sockdiag.StateListen
	}
	return false
}

// diagConn is what a view asks the kernel: sockdiag.Conn, or a fake in
// tests.
type diagConn interface {
	InetSockets(protocol uint8, v6 bool, states uint32) ([]sockdiag.InetSocket, error)
	UnixSocket(ino uint32) (sockdiag.UnixSocket, error)
	Close() error
}

// inetStates are the states of sockets a worker may wait on: all but
// TIME_WAIT, which belongs to no descriptor.
var inetStates = sockdiag.AllStates &^ sockdiag.States(sockdiag.StateTimeWait)

// netView resolves socket inodes in one network namespace, for one batch
// of workers: each family's TCP or UDP table is dumped once, and once
// more when an inode is missing from it (a socket younger than the dump).
type netView struct {
	conn  diagConn
	err   error // opening failed: every lookup fails with it
	inet  map[inetKey]map[uint32]sockdiag.InetSocket
	fresh map[inetKey]bool // dumped again after a miss
}

type inetKey struct {
	protocol uint8
	v6       bool
}

func (v *netView) close() {
	if v.conn != nil {
		v.conn.Close()
	}
}

// inetSocket finds an inet socket by inode in its family's table.
func (v *netView) inetSocket(k inetKey, ino uint32) (*sockdiag.InetSocket, error) {
	if v.err != nil {
		return nil, v.err
	}
	if _, ok := v.inet[k]; !ok {
		if err := v.dump(k); err != nil {
			return nil, err
		}
	}
	if s, ok := v.inet[k][ino]; ok {
		return &s, nil
	}
	if !v.fresh[k] {
		// The socket may be younger than the dump.
		v.fresh[k] = true
		if err := v.dump(k); err != nil {
			return nil, err
		}
		if s, ok := v.inet[k][ino]; ok {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("socket %d is in no table of its network namespace", ino)
}

// dump reads one family's table.
func (v *netView) dump(k inetKey) error {
	socks, err := v.conn.InetSockets(k.protocol, k.v6, inetStates)
	if err != nil {
		return err
	}
	table := make(map[uint32]sockdiag.InetSocket, len(socks))
	for _, s := range socks {
		if s.Inode != 0 {
			table[s.Inode] = s
		}
	}
	v.inet[k] = table
	return nil
}

// views holds a netView per network namespace met in one batch.
type views struct {
	self  string // fpmguard's own namespace, as /proc/self/ns/net reads
	open  func(netns string) (diagConn, error)
	byNS  map[string]*netView
	byPID map[int]*netView
	procs procFS
}

func newViews(p procFS, open func(netns string) (diagConn, error)) *views {
	self, _ := p.readLink("self/ns/net")
	return &views{self: self, open: open, byNS: map[string]*netView{}, byPID: map[int]*netView{}, procs: p}
}

func (vs *views) close() {
	for _, v := range vs.byNS {
		v.close()
	}
}

// of returns the view of pid's network namespace.
func (vs *views) of(pid int) *netView {
	if v, ok := vs.byPID[pid]; ok {
		return v
	}
	v := vs.open1(pid)
	vs.byPID[pid] = v
	return v
}

func (vs *views) open1(pid int) *netView {
	ns, err := vs.procs.readLink(strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return &netView{err: fmt.Errorf("reading the network namespace of %d: %w", pid, err)}
	}
	if v, ok := vs.byNS[ns]; ok {
		return v
	}
	v := &netView{inet: map[inetKey]map[uint32]sockdiag.InetSocket{}, fresh: map[inetKey]bool{}}
	path := ""
	if ns != vs.self {
		// Its own namespace: the sockets of ours would not show it.
		path = "/proc/" + strconv.Itoa(pid) + "/ns/net"
	}
	v.conn, v.err = vs.open(path)
	if v.err != nil && path != "" {
		v.err = fmt.Errorf("worker %d is in another network namespace, and entering it to read its sockets failed (it needs CAP_SYS_ADMIN): %w", pid, v.err)
	}
	vs.byNS[ns] = v
	return v
}

// openDiag opens sock_diag in netns, "" for fpmguard's own.
func openDiag(netns string) (diagConn, error) {
	if netns == "" {
		return sockdiag.Open()
	}
	return sockdiag.OpenIn(netns)
}

// errNotSocket: the fd is not a socket.
var errNotSocket = errors.New("not a socket")

// resolve describes pid's socket at fd through the kernel's tables.
func (vs *views) resolve(pid, fd int) (socket, error) {
	s := socket{fd: fd}
	name := strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)
	target, err := vs.procs.readLink(name)
	if err != nil {
		return s, err
	}
	ino, ok := socketInode(target)
	if !ok {
		return s, errNotSocket
	}
	s.inode = ino
	proto, err := vs.procs.sockProto(name)
	if err != nil {
		return s, err
	}
	v := vs.of(pid)
	switch {
	case strings.HasPrefix(proto, "UNIX"):
		if v.err != nil {
			return s, v.err
		}
		u, err := v.conn.UnixSocket(ino)
		if err != nil {
			return s, err
		}
		s.unix = &u
		if u.Peer != 0 {
			if p, err := v.conn.UnixSocket(u.Peer); err == nil {
				s.peerName = p.Name
			}
		}
	case proto == "TCP" || proto == "TCPv6" || proto == "UDP" || proto == "UDPv6":
		k := inetKey{protocol: sockdiag.TCP, v6: strings.HasSuffix(proto, "v6")}
		if strings.HasPrefix(proto, "UDP") {
			k.protocol = sockdiag.UDP
		}
		in, err := v.inetSocket(k, ino)
		if err != nil {
			return s, err
		}
		s.inet = in
	default:
		return s, fmt.Errorf("a %s socket", proto)
	}
	return s, nil
}
