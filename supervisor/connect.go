package supervisor

import (
	"context"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// connect checks the pool's main socket when no request of fpmguard's
// goes through it (no ping.path, and no status page read there), so that
// a pool fpmguard cannot reach is never taken for one that serves: a
// socket that does not listen, or that fpmguard may not connect to, is a
// finding. Where the kernel's table of listening sockets shows the socket
// (r.SocketQueue), that and the socket's permissions say it all, and no
// connection is made: one would wait in a saturated pool's queue with
// nginx's requests, closed or not, until a worker took it. Else a bare
// connection is the only witness. nil when a request goes through the
// socket anyway, and tells more.
func (pr *Prober) connect(ctx context.Context, t Target, r *PoolReport) *Connect {
	if t.PingPath != "" || (t.StatusPath != "" && t.StatusAddress.IsZero()) {
		return nil
	}
	var err error
	if r.SocketQueue != nil {
		err = fastcgi.Access(t.Address)
	} else {
		err = pr.Client.Connect(ctx, t.Address)
	}
	if err != nil {
		return &Connect{Error: err.Error(), Failure: failure(err)}
	}
	return &Connect{OK: true}
}
