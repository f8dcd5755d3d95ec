package watch

import "github.com/fpmguard/fpmguard/supervisor"

// slowlogEntry returns the pool's newest slowlog entry for pid, for a kill
// record, "" when it has none or the slowlog cannot be read: Slowlog and
// the diagnosis say why (supervisor.ReadSlowlog reads it safely, inside
// the master's root).
func slowlogEntry(t supervisor.Target, pid int, tr supervisor.Trust) string {
	e, err := supervisor.ReadSlowlog(t, pid, tr)
	if err != nil {
		return ""
	}
	return e.Text
}
