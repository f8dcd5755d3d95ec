package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/waits"
)

// WaitGroup is the hung workers of a pool that wait on the same thing:
// the same database, the same lock and holder, sleep(). One line says it
// for people, in every output.
type WaitGroup struct {
	Wait    waits.Wait `json:"wait"` // the first worker's: the thing waited on
	PIDs    []int      `json:"pids"`
	Workers int        `json:"workers"` // every worker of the pool
	// SeenSeconds is how long fpmguard has seen them wait on it: the
	// longest of the group, from its first reading that showed it (0 at
	// the first; a one-shot command has no earlier one).
	SeenSeconds float64 `json:"seen_seconds"`
	// RequestSeconds is the age of the oldest request of the group: no
	// wait of it began earlier.
	RequestSeconds float64 `json:"request_seconds"`
	// Stacks are the PHP stacks the group's workers are in, the most
	// shared first, for the workers whose stack was read.
	Stacks []StackShare `json:"stacks,omitempty"`
	// Line says it for people: "4 of 4 workers blocked reading from
	// 127.0.0.1:3306 (MySQL) for 31s, in PDO->query <- Repo->find <-
	// handle". It quotes paths and names from PHP: outputs escape it as
	// every message (package termsafe).
	Line string `json:"line"`
}

// StackShare is a PHP stack, by its functions, and the workers in it.
type StackShare struct {
	Stack string `json:"stack"` // Stack.Names: client text
	PIDs  []int  `json:"pids"`
}

// groupWaits groups the hung workers of r whose wait was read, the
// largest group first, and writes each group's line. at is when the waits
// were read.
func groupWaits(r *PoolReport, at time.Time) []WaitGroup {
	var ws []waits.Wait
	byPID := map[int]*ProcessState{}
	for i := range r.Processes {
		p := &r.Processes[i]
		byPID[p.PID] = p
		if p.Hung && p.Wait != nil {
			ws = append(ws, *p.Wait)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	var out []WaitGroup
	for _, g := range mergeUnknown(waits.GroupWaits(ws)) {
		wg := WaitGroup{Wait: g.Wait, PIDs: g.PIDs, Workers: len(r.Processes)}
		for _, pid := range g.PIDs {
			p := byPID[pid]
			wg.RequestSeconds = max(wg.RequestSeconds, p.RequestDurationSeconds)
			if since := p.Wait.Since; !since.IsZero() && since.Before(at) {
				wg.SeenSeconds = max(wg.SeenSeconds, at.Sub(since).Seconds())
			}
			if p.Stack != nil && len(p.Stack.Frames) > 0 {
				wg.Stacks = addStack(wg.Stacks, p.Stack.Names(), pid)
			}
		}
		sortShares(wg.Stacks)
		wg.Line = wg.line(r, byPID)
		out = append(out, wg)
	}
	return out
}

// mergeUnknown makes one group of the workers whose wait is not known,
// whatever the reason each has, so that a pool of unreadable workers is
// one line, not one per reason. The group keeps the reason when all share
// it, else it has none (each worker's own is in its wait). Groups stay
// the largest first.
func mergeUnknown(gs []waits.Group) []waits.Group {
	out := make([]waits.Group, 0, len(gs))
	at := -1
	for _, g := range gs {
		switch {
		case g.Wait.Kind != waits.KindUnknown:
			out = append(out, g)
		case at < 0:
			at = len(out)
			out = append(out, waits.Group{Wait: g.Wait, PIDs: slices.Clone(g.PIDs)})
		default:
			out[at].PIDs = append(out[at].PIDs, g.PIDs...)
			if out[at].Wait.Reason != g.Wait.Reason {
				out[at].Wait.Reason = ""
			}
		}
	}
	slices.SortStableFunc(out, func(a, b waits.Group) int { return len(b.PIDs) - len(a.PIDs) })
	return out
}

func addStack(shares []StackShare, names string, pid int) []StackShare {
	for i := range shares {
		if shares[i].Stack == names {
			shares[i].PIDs = append(shares[i].PIDs, pid)
			return shares
		}
	}
	return append(shares, StackShare{Stack: names, PIDs: []int{pid}})
}

// sortShares puts the stacks most workers share first, stably.
func sortShares(s []StackShare) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && len(s[j].PIDs) > len(s[j-1].PIDs); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// maxLineStacks bounds the distinct stacks a group's line names.
const maxLineStacks = 3

// line writes the group for people.
func (g WaitGroup) line(r *PoolReport, byPID map[int]*ProcessState) string {
	var b strings.Builder
	n := len(g.PIDs)
	switch {
	case n == g.Workers && n == 1:
		b.WriteString("the only worker ")
	case n == g.Workers:
		fmt.Fprintf(&b, "%d of %d workers ", n, g.Workers)
	case n == 1:
		fmt.Fprintf(&b, "worker %d ", g.PIDs[0])
	default:
		fmt.Fprintf(&b, "%d of %d workers ", n, g.Workers)
	}
	b.WriteString(waitWhat(g.Wait, r.Name, byPID))
	seen := time.Duration(g.SeenSeconds * float64(time.Second)).Round(time.Second)
	if seen >= time.Second {
		b.WriteString(" for " + human.FormatDuration(seen))
	} else {
		// One reading: how long the wait has lasted is not known, only
		// that it began within the request.
		b.WriteString(", in requests up to " + human.FormatDuration(time.Duration(g.RequestSeconds*float64(time.Second)).Round(time.Second)) + " old")
	}
	switch len(g.Stacks) {
	case 0:
	case 1:
		b.WriteString(", in " + g.Stacks[0].Stack)
	default:
		b.WriteString(":")
		for i, s := range g.Stacks {
			if i == maxLineStacks {
				fmt.Fprintf(&b, " and %d more stacks", len(g.Stacks)-i)
				break
			}
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %d in %s", len(s.PIDs), s.Stack)
		}
	}
	return b.String()
}

// waitWhat says what a worker waits on, as it reads after "N workers". A lock names its holder as the pool knows it:
// "waiting for the lock on /var/www/app.lock held by worker 4711
// (sleeping in /cron.php for 95s)".
func waitWhat(w waits.Wait, pool string, byPID map[int]*ProcessState) string {
	if w.Kind != waits.KindLock || w.Lock == nil || w.Lock.Holder <= 0 {
		return w.What()
	}
	s := "waiting for the lock on " + w.Lock.Path
	h, ok := byPID[w.Lock.Holder]
	if !ok || (w.Lock.HolderStart != 0 && h.startTicks != 0 && h.startTicks != w.Lock.HolderStart) {
		return s + fmt.Sprintf(" held by pid %d, not a worker of pool %s", w.Lock.Holder, pool)
	}
	s += fmt.Sprintf(" held by worker %d", h.PID)
	if h.Idle() {
		return s + " (idle: it keeps the lock between requests)"
	}
	return s + fmt.Sprintf(" (%s in %s for %s)", doing(h), StripQuery(h.RequestURI), human.FormatDuration(time.Duration(h.Age()).Round(time.Second)))
}

// doing says in a word or two what a busy worker does: its wait when it
// was read, else the kernel's state.
func doing(p *ProcessState) string {
	if p.Wait != nil && p.Wait.Kind != waits.KindUnknown {
		switch p.Wait.Kind {
		case waits.KindSleep:
			return "sleeping"
		case waits.KindRunning:
			return "running"
		case waits.KindLock:
			return "waiting for a lock"
		}
		return p.Wait.What()
	}
	return string(p.OSState)
}

// WaitShort is a worker's wait in a word or two, for a table column:
// "read MySQL", "lock", "sleep", "running"; "?" when not proved.
func WaitShort(w *waits.Wait) string {
	if w == nil {
		return ""
	}
	peer := func(verb string) string {
		if w.Peer == nil {
			return verb
		}
		if t := w.Peer.Service.Title(); t != "" && w.Peer.Service != waits.ServiceOther {
			return verb + " " + t
		}
		return verb + " " + w.Peer.Addr()
	}
	switch w.Kind {
	case waits.KindNetRead:
		return peer("read")
	case waits.KindNetWrite:
		return peer("write")
	case waits.KindConnect:
		return peer("connect")
	case waits.KindDNS:
		return "DNS"
	case waits.KindUnknown:
		return "?"
	}
	return string(w.Kind)
}
