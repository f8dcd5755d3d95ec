package fastcgi

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// conns counts the connections fpmguard's probes (clients with Probe set)
// made to one address that the address accepted, and those of them they
// have closed since. Each is a
// request php-fpm counts in its pool's "accepted conn" once a worker takes
// it, answered or not: fpmguard's requests are not its users' load, and
// this is how much to take away.
type conns struct{ opened, closed atomic.Uint64 }

var byAddr struct {
	mu sync.RWMutex
	m  map[Address]*conns
}

func connsOf(addr Address) *conns {
	byAddr.mu.RLock()
	n := byAddr.m[addr]
	byAddr.mu.RUnlock()
	if n != nil {
		return n
	}
	byAddr.mu.Lock()
	defer byAddr.mu.Unlock()
	if byAddr.m == nil {
		byAddr.m = map[Address]*conns{}
	}
	if n = byAddr.m[addr]; n == nil {
		n = new(conns)
		byAddr.m[addr] = n
	}
	return n
}

// RequestsSent is the number of connections fpmguard's probes have made to
// addr since it started, requests and bare connects (Connect) alike: what
// they added to the "accepted conn" of the pool listening there.
func RequestsSent(addr Address) uint64 {
	byAddr.mu.RLock()
	n := byAddr.m[addr]
	byAddr.mu.RUnlock()
	if n == nil {
		return 0
	}
	return n.opened.Load()
}

// ConnCount is how many connections to one address fpmguard's probes have
// opened and closed so far.
type ConnCount struct{ Opened, Closed uint64 }

// Connections returns the count of every address's connections. Taken
// before and after a look at a listen queue, it bounds how many of the
// connections waiting there may be fpmguard's own: those opened by
// the end of the look and not closed before it began.
func Connections() map[Address]ConnCount {
	byAddr.mu.RLock()
	defer byAddr.mu.RUnlock()
	out := make(map[Address]ConnCount, len(byAddr.m))
	for a, n := range byAddr.m {
		// Closed first: a connection is never counted closed and not opened.
		c := n.closed.Load()
		out[a] = ConnCount{Opened: n.opened.Load(), Closed: c}
	}
	return out
}

// counted is a connection whose closing is counted.
type counted struct {
	io.ReadWriteCloser
	n *conns
}

func (c *counted) Close() error {
	err := c.ReadWriteCloser.Close()
	c.n.closed.Add(1)
	return err
}

// open dials addr, counting the connection of a probe.
func (c Client) open(ctx context.Context, addr Address) (io.ReadWriteCloser, error) {
	nc, err := c.dial(ctx, addr)
	if err != nil || !c.Probe {
		return nc, err
	}
	n := connsOf(addr)
	n.opened.Add(1)
	return &counted{nc, n}, nil
}

// Connect connects to addr and closes the connection at once, sending
// nothing: it proves that something listens there and lets fpmguard in,
// for a pool that answers no ping and no status request. It fails as Do
// fails to connect, with the same classes and hints. php-fpm counts the
// connection as accepted when a worker takes it, finds it closed and goes
// back to waiting; until then it waits in the listen queue with nginx's
// requests, closed or not. Where the kernel shows the socket listening,
// Access says as much without that.
func (c Client) Connect(ctx context.Context, addr Address) error {
	timeout := c.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := c.open(ctx, addr)
	if err != nil {
		return dialError("connect", addr, timeout, err)
	}
	return nc.Close()
}

// Access reports whether this process may connect to the unix socket at
// addr, without connecting: connecting needs write permission on the
// socket file. It fails as a connect would, with the same classes and
// hints (permission denied, socket missing). A TCP address needs no
// permission: nil.
func Access(addr Address) error {
	if addr.Network != "unix" {
		return nil
	}
	if err := unix.Faccessat(unix.AT_FDCWD, addr.Addr, unix.W_OK, unix.AT_EACCESS); err != nil {
		return classify("connect", addr, 0, err)
	}
	return nil
}
