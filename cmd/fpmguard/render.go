package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/termsafe"
	"github.com/fpmguard/fpmguard/waits"
	"golang.org/x/term"
)

// safe is what every string fpmguard did not write goes through before it
// is printed for people: URIs, scripts, pool names, addresses, paths and
// the messages built from them.
var safe = termsafe.String

// writeJSON writes v as indented JSON, with the controls encoding/json
// leaves raw (DEL, C1) escaped: the values stay exact, and a terminal shows
// it safely.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(termsafe.JSONWriter{W: w})
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// useColor decides on ANSI colour: only on a terminal unless forced, and
// never with NO_COLOR set. A terminal is what the terminal driver says is
// one: /dev/null is a character device too, but no terminal.
func useColor(mode string, w io.Writer) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

var healthColor = map[supervisor.Health]string{
	supervisor.HealthOK:        "\x1b[32m",
	supervisor.HealthUnknown:   "\x1b[2m",
	supervisor.HealthDegraded:  "\x1b[33m",
	supervisor.HealthUnhealthy: "\x1b[31m",
	supervisor.HealthDown:      "\x1b[1;31m",
}

// writeTable prints the report for people.
func writeTable(w io.Writer, rep *supervisor.Report, color bool) {
	// A pool's name alone when no other has it; with its master's name
	// when one does (the www of two PHP versions).
	labels := rep.Labels()
	for i, p := range rep.Pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		health := strings.ToUpper(string(p.Health))
		if color {
			health = healthColor[p.Health] + health + "\x1b[0m"
		}
		fmt.Fprintf(w, "pool %s  %s  %s\n", safe(labels[p.ID()]), safe(p.Address), health)
		// What hung workers wait on first: the question after "hung".
		for _, g := range p.Waits {
			fmt.Fprintf(w, "  waits: %s\n", safe(g.Line))
		}
		for _, r := range p.Reasons {
			fmt.Fprintf(w, "  - %s\n", safe(r))
		}
		for _, r := range p.Inconclusive {
			fmt.Fprintf(w, "  ? %s\n", safe(r))
		}
		for _, d := range p.Deaths {
			fmt.Fprintf(w, "  died %s: %s\n", d.Time.Local().Format("15:04:05"), safe(d.Line))
		}
		fmt.Fprintf(w, "  heartbeat: %s   status: %s", heartbeatText(p.Heartbeat), statusText(p.Status))
		if c := p.Connect; c != nil {
			fmt.Fprintf(w, "   connect: %s", connectText(c))
		}
		fmt.Fprintln(w)
		if m := p.Master; m != nil {
			fmt.Fprintf(w, "  master: %s\n", masterText(m))
		}
		if line := countersText(&p); line != "" {
			fmt.Fprintf(w, "  %s\n", line)
		}
		if len(p.Processes) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  PID\tSTATE\tOS\tAGE\tMETHOD\tURI\tSCRIPT\tCPU\tRSS\tHUNG\tWAIT")
			for _, pr := range p.Processes {
				age := "-"
				if !pr.Idle() {
					age = duration(pr.RequestDurationSeconds)
				}
				hung := "no"
				if pr.Hung {
					hung = "yes"
				}
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pr.PID, safe(pr.State), pr.OSState, age,
					dash(safe(pr.RequestMethod)), dash(safe(pr.RequestURI)), dash(safe(pr.Script)), duration(pr.CPUSeconds), bytesText(pr.RSSBytes), hung,
					dash(safe(supervisor.WaitShort(pr.Wait))))
			}
			tw.Flush()
			writeDiagnosis(w, p.Processes)
		}
		for _, a := range p.Advice {
			fmt.Fprintf(w, "  advice: %s\n", safe(a))
		}
	}
	if len(rep.Opcache) > 0 {
		fmt.Fprintln(w)
		writeOpcacheTable(w, rep.Opcache)
	}
}

// writeDiagnosis prints what was read of each held-up worker under the
// worker table: its wait, its PHP stack with files and lines, and the top
// of php-fpm's slowlog backtrace of its request. A stack error shared by
// several workers (a permission fpmguard lacks) is said once.
func writeDiagnosis(w io.Writer, procs []supervisor.ProcessState) {
	said := map[string]bool{}
	for i := range procs {
		p := &procs[i]
		if p.Wait == nil && p.Stack == nil {
			continue
		}
		fmt.Fprintf(w, "  worker %d", p.PID)
		if p.Wait != nil {
			fmt.Fprintf(w, " %s", safe(waitDetail(p.Wait)))
		}
		fmt.Fprintln(w)
		if s := p.Stack; s != nil {
			switch {
			case s.Error != "" && said[s.Error]:
			case s.Error != "":
				said[s.Error] = true
				fmt.Fprintf(w, "    stack: not read: %s\n", safe(s.Error))
			case len(s.Frames) == 0:
				fmt.Fprintln(w, "    stack: no PHP code running")
			default:
				fmt.Fprintf(w, "    stack: %s\n", safe(s.Places()))
			}
		}
		if len(p.SlowlogTrace) > 0 {
			fmt.Fprintf(w, "    slowlog: %s\n", safe(strings.Join(p.SlowlogTrace, " <- ")))
		}
	}
}

// waitDetail is a worker's wait with what a table leaves out: the system
// call, the descriptor, and since when it has been seen.
func waitDetail(wt *waits.Wait) string {
	s := wt.What()
	var notes []string
	if wt.Syscall != "" {
		notes = append(notes, "in "+wt.Syscall)
	}
	if wt.FD >= 0 {
		fd := fmt.Sprintf("fd %d", wt.FD)
		if wt.FDGuessed {
			fd += ", guessed: the newest socket"
		}
		notes = append(notes, fd)
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// writeOpcacheTable prints one block per master.
func writeOpcacheTable(w io.Writer, reports []supervisor.OpcacheReport) {
	for i, o := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "opcache of %s (master %d, pools %s)  %s\n", safe(o.Master), o.MasterPID, safe(strings.Join(o.Pools, ", ")), strings.ToUpper(string(o.Health)))
		for _, r := range o.Reasons {
			fmt.Fprintf(w, "  - %s\n", safe(r))
		}
		if o.Inconclusive != "" {
			fmt.Fprintf(w, "  ? %s\n", safe(o.Inconclusive))
		}
		if o.Error != "" || (o.Inconclusive != "" && !o.Enabled) {
			continue
		}
		total := uint64(o.MemoryUsedBytes + o.MemoryFreeBytes + o.MemoryWastedBytes)
		fmt.Fprintf(w, "  enabled %v  cache full %v  restart pending %v  in progress %v\n", o.Enabled, o.CacheFull, o.RestartPending, o.RestartInProgress)
		fmt.Fprintf(w, "  memory %s used, %s free, %s wasted of %s (fill %.0f%%, wasted %.1f%% of max %.0f%%)\n",
			bytesText(uint64(o.MemoryUsedBytes)), bytesText(uint64(o.MemoryFreeBytes)), bytesText(uint64(o.MemoryWastedBytes)), bytesText(total),
			100*o.FillRatio, 100*o.WastedRatio, 100*o.MaxWastedRatio)
		fmt.Fprintf(w, "  scripts %d  keys %d/%d  interned strings %s/%s  hits %d  misses %d (hit rate %.1f%%)\n",
			o.CachedScripts, o.CachedKeys, o.MaxCachedKeys, bytesText(uint64(o.InternedStringsUsedBytes)), bytesText(uint64(o.InternedStringsBufferBytes)),
			o.Hits, o.Misses, 100*o.HitRate)
		fmt.Fprintf(w, "  restarts: oom %d  hash %d  manual %d", o.OOMRestarts, o.HashRestarts, o.ManualRestarts)
		if o.LastRestartTime != nil {
			fmt.Fprintf(w, "  (last %s)", o.LastRestartTime.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		switch {
		case o.JITEnabled:
			fmt.Fprintf(w, "  jit buffer %s, %.0f%% full\n", bytesText(uint64(o.JITBufferSizeBytes)), 100*o.JITBufferFill)
		case o.JITBufferSizeBytes > 0:
			// PHP 8.4's default: a buffer made, the JIT off.
			fmt.Fprintf(w, "  jit off, with a buffer of %s made for it (opcache.jit_buffer_size)\n", bytesText(uint64(o.JITBufferSizeBytes)))
		}
	}
}

func writeOpcacheAction(w io.Writer, cmd string, a supervisor.OpcacheAction) {
	what := fmt.Sprintf("master %d (pools %s) via %s", a.MasterPID, safe(strings.Join(a.Pools, ", ")), safe(a.Via))
	if !a.OK {
		fmt.Fprintf(w, "%s: FAILED: %s\n", what, safe(a.Error))
		return
	}
	if cmd == "opcache reset" {
		fmt.Fprintf(w, "%s: opcache_reset() done; manual restarts now %d\n", what, a.ManualRestarts)
		return
	}
	paths := make([]string, 0, len(a.Paths))
	for p := range a.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	fmt.Fprintf(w, "%s: %d path(s)\n", what, len(paths))
	for _, p := range paths {
		state := "invalidated"
		if !a.Paths[p] {
			state = "not invalidated (opcache_invalidate returned false)"
		}
		fmt.Fprintf(w, "  %s  %s\n", safe(p), state)
	}
}

func heartbeatText(h supervisor.Heartbeat) string {
	switch {
	case h.Skipped:
		return "not configured"
	case h.Idle:
		return "not sent (idle ondemand pool: it would start a worker)"
	case h.OK && h.Inconclusive != "":
		return "ok " + duration(h.LatencySeconds) + " (latency not judged)"
	case h.OK:
		return "ok " + duration(h.LatencySeconds)
	case h.Inconclusive != "":
		return "NOT JUDGED" // the reasons above say why
	case h.Misconfigured():
		return fmt.Sprintf("MISCONFIGURED (%s: a worker answered)", h.Failure.Class)
	case h.WaitsBehindHung > 0:
		return fmt.Sprintf("FAILED (not sent: all %d workers are hung, nginx would answer %d)", h.WaitsBehindHung, h.Failure.NginxStatus)
	case h.Failure != nil:
		return fmt.Sprintf("FAILED (%s, nginx would answer %d)", h.Failure.Class, h.Failure.NginxStatus)
	}
	return "FAILED"
}

// countersText is the pool's numbers in one line, each from one source, the
// one the reasons and the worker table use: workers from the process list
// (one serving fpmguard's own request counted as idle), the listen
// queue from the kernel when it was read. php-fpm's own counters follow,
// named as such.
func countersText(p *supervisor.PoolReport) string {
	var parts []string
	c := p.Counters
	if c != nil {
		parts = append(parts, "pm "+safe(c.ProcessManager))
		busy, total := p.Busy()
		probes := 0
		for i := range p.Processes {
			if p.Processes[i].ProbeRequest() {
				probes++
			}
		}
		idle := fmt.Sprintf("idle %d", total-busy)
		if probes > 0 {
			idle += fmt.Sprintf(" (%d serving fpmguard's own request)", probes)
		}
		parts = append(parts, fmt.Sprintf("busy %d", busy), idle, fmt.Sprintf("total %d", total))
	}
	switch q := p.SocketQueue; {
	case q != nil:
		parts = append(parts, fmt.Sprintf("listen queue %d of %d", p.Queue(), q.Max))
	case c != nil:
		parts = append(parts, fmt.Sprintf("listen queue %d (php-fpm's count: max %d, len %d)", c.ListenQueue, c.MaxListenQueue, c.ListenQueueLen))
	}
	if rate := p.RequestsPerSecond; rate != nil {
		parts = append(parts, fmt.Sprintf("requests %.1f/s (fpmguard's own not counted)", *rate))
	}
	if c != nil {
		parts = append(parts, fmt.Sprintf("accepted %d (php-fpm's count, fpmguard's probes included)", c.AcceptedConn),
			fmt.Sprintf("max active %d", c.MaxActiveProcesses), fmt.Sprintf("max children reached %d", c.MaxChildrenReached),
			fmt.Sprintf("slow requests %d", c.SlowRequests))
	}
	return strings.Join(parts, "  ")
}

func connectText(c *supervisor.Connect) string {
	switch {
	case c.OK:
		return "ok"
	case c.Failure != nil:
		return fmt.Sprintf("FAILED (%s, nginx would answer %d)", c.Failure.Class, c.Failure.NginxStatus)
	}
	return "FAILED"
}

func statusText(s supervisor.StatusRead) string {
	switch {
	case s.Skipped:
		return "not configured"
	case s.Idle:
		return "not read (idle ondemand pool)"
	case s.OK:
		return "ok via " + safe(s.Via)
	case s.Inconclusive != "":
		return strings.TrimSpace("NOT JUDGED via " + safe(s.Via))
	case s.Failure != nil:
		return fmt.Sprintf("FAILED via %s (%s)", safe(s.Via), s.Failure.Class)
	}
	return "FAILED"
}

func masterText(m *supervisor.MasterReport) string {
	if m.PID == 0 {
		return "not running: " + safe(m.Error)
	}
	state := "gone"
	switch {
	case m.Alive:
		state = "alive, " + string(m.OSState)
	case m.Unknown != "":
		state = "unknown"
	}
	s := fmt.Sprintf("%d (%s)", m.PID, state)
	if m.Config != "" {
		s += " " + safe(m.Config)
	}
	if m.Alive && m.Error != "" {
		// Found through its workers, not where it should have been (a
		// pid file that names no master, or a forged one): say why.
		s += "; " + safe(m.Error)
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// duration and bytesText print times and sizes for people.
var (
	duration  = human.FormatSeconds
	bytesText = human.FormatBytes
)
