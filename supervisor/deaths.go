package supervisor

import (
	"fmt"
	"strings"

	"github.com/fpmguard/fpmguard/fpmlog"
)

// WorkerDeath is a worker that exited, why (package fpmlog), and what it
// cost: the request it was running, and the failures nginx answered for
// the pool at that moment.
type WorkerDeath struct {
	fpmlog.Death
	// InRequest is the request it was running when it died, as the last
	// status page that named it showed it, without the query string:
	// "POST /import.php". "" when it was idle then, or never seen.
	InRequest string `json:"in_request,omitempty"`
	// Nginx are the upstream failures nginx logged for the pool within a
	// second of the death, when nginx's error log is followed.
	Nginx []NginxCount `json:"nginx,omitempty"`
	// Line says it for people (outputs escape it as every message): "worker
	// 4711 of pool www was OOM-killed (cgroup limit 512.0MiB) while running
	// POST /import.php: 3 × 502 upstream closed the connection early".
	Line string `json:"line"`
}

// NginxCount is a number of upstream failures nginx logged, of one status
// and cause.
type NginxCount struct {
	Status int    `json:"status"`
	Cause  string `json:"cause"` // nginxlog's cause: reset, timeout, refused ...
	Text   string `json:"text"`  // the cause for people: "upstream closed the connection early"
	Count  int    `json:"count"`
}

// NewWorkerDeath makes the report of death d: inRequest is the request the
// worker was last seen running ("" if none), nginx the failures nginx
// logged for its pool at the moment it died.
func NewWorkerDeath(d fpmlog.Death, inRequest string, nginx []NginxCount) WorkerDeath {
	wd := WorkerDeath{Death: d, InRequest: StripQuery(inRequest), Nginx: nginx}
	var b strings.Builder
	b.WriteString(d.String())
	if wd.InRequest != "" && d.Request == "" {
		b.WriteString(" while running " + wd.InRequest)
	}
	for i, n := range nginx {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d × %d %s", n.Count, n.Status, n.Text)
	}
	wd.Line = b.String()
	return wd
}
