package fastcgi

import (
	"context"
	"sync"
	"sync/atomic"
)

// sent counts, per address, the connections this process made that the
// address accepted: each is a request php-fpm counts in its pool's
// "accepted conn" once a worker takes it, answered or not. fpmguard's
// requests are not its users' load, and this is how much to take away.
var sent struct {
	mu sync.RWMutex
	m  map[Address]*atomic.Uint64
}

// RequestsSent is the number of connections this process has made to addr
// since it started, requests and bare connects (Connect) alike: what its
// own probes added to the "accepted conn" of the pool listening there.
func RequestsSent(addr Address) uint64 {
	sent.mu.RLock()
	n := sent.m[addr]
	sent.mu.RUnlock()
	if n == nil {
		return 0
	}
	return n.Load()
}

func countSent(addr Address) {
	sent.mu.RLock()
	n := sent.m[addr]
	sent.mu.RUnlock()
	if n == nil {
		sent.mu.Lock()
		if sent.m == nil {
			sent.m = map[Address]*atomic.Uint64{}
		}
		if n = sent.m[addr]; n == nil {
			n = new(atomic.Uint64)
			sent.m[addr] = n
		}
		sent.mu.Unlock()
	}
	n.Add(1)
}

// Connect connects to addr and closes the connection at once, sending
// nothing: it proves that something listens there and lets fpmguard in,
// for a pool that answers no ping and no status request. It fails as Do
// fails to connect, with the same classes and hints. php-fpm counts the
// connection as accepted when a worker takes it, finds it closed and goes
// back to waiting.
func (c Client) Connect(ctx context.Context, addr Address) error {
	timeout := c.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := c.dial(ctx, addr)
	if err != nil {
		return dialError("connect", addr, timeout, err)
	}
	countSent(addr)
	return nc.Close()
}
