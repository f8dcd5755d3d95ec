package supervisor

import "context"

// connect makes a bare connection to the pool's main socket when no
// request of fpmguard's goes through it (no ping.path, and no status page
// read there), so that a pool fpmguard cannot reach is never taken for
// one that serves: a refused or forbidden connection is a finding. nil
// when a request goes through the socket anyway, and tells more.
func (pr *Prober) connect(ctx context.Context, t Target) *Connect {
	if t.PingPath != "" || (t.StatusPath != "" && t.StatusAddress.IsZero()) {
		return nil
	}
	if err := pr.Client.Connect(ctx, t.Address); err != nil {
		return &Connect{Error: err.Error(), Failure: failure(err)}
	}
	return &Connect{OK: true}
}
