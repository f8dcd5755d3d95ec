package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// useColor decides on ANSI colour: only on a terminal unless forced, and
// never with NO_COLOR set.
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
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

var healthColor = map[supervisor.Health]string{
	supervisor.HealthOK:        "\x1b[32m",
	supervisor.HealthDegraded:  "\x1b[33m",
	supervisor.HealthUnhealthy: "\x1b[31m",
	supervisor.HealthDown:      "\x1b[1;31m",
}

// writeTable prints the report for people.
func writeTable(w io.Writer, rep *supervisor.Report, color bool) {
	for i, p := range rep.Pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		health := strings.ToUpper(string(p.Health))
		if color {
			health = healthColor[p.Health] + health + "\x1b[0m"
		}
		fmt.Fprintf(w, "pool %s  %s  %s\n", p.Name, p.Address, health)
		for _, r := range p.Reasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
		fmt.Fprintf(w, "  heartbeat: %s   status: %s\n", heartbeatText(p.Heartbeat), statusText(p.Status))
		if m := p.Master; m != nil {
			fmt.Fprintf(w, "  master: %s\n", masterText(m))
		}
		if c := p.Counters; c != nil {
			fmt.Fprintf(w, "  pm %s  accepted %d  listen queue %d (max %d, len %d)  idle %d  active %d  total %d  max active %d  max children reached %d  slow requests %d\n",
				c.ProcessManager, c.AcceptedConn, c.ListenQueue, c.MaxListenQueue, c.ListenQueueLen, c.IdleProcesses, c.ActiveProcesses,
				c.TotalProcesses, c.MaxActiveProcesses, c.MaxChildrenReached, c.SlowRequests)
		}
		if len(p.Processes) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  PID\tSTATE\tOS\tAGE\tMETHOD\tURI\tSCRIPT\tCPU\tRSS\tHUNG")
			for _, pr := range p.Processes {
				age := "-"
				if pr.State != "Idle" {
					age = duration(pr.RequestDuration)
				}
				hung := "no"
				if pr.Hung {
					hung = "yes"
				}
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pr.PID, pr.State, pr.OSState, age,
					dash(pr.RequestMethod), dash(pr.RequestURI), dash(pr.Script), duration(pr.CPUSeconds), bytesText(pr.RSSBytes), hung)
			}
			tw.Flush()
		}
		for _, a := range p.Advice {
			fmt.Fprintf(w, "  advice: %s\n", a)
		}
	}
}

func heartbeatText(h supervisor.Heartbeat) string {
	switch {
	case h.Skipped:
		return "not configured"
	case h.OK:
		return "ok " + duration(h.LatencySeconds)
	case h.Failure != nil:
		return fmt.Sprintf("FAILED (%s, nginx would answer %d)", h.Failure.Class, h.Failure.NginxStatus)
	}
	return "FAILED"
}

func statusText(s supervisor.StatusRead) string {
	switch {
	case s.Skipped:
		return "not configured"
	case s.OK:
		return "ok via " + s.Via
	case s.Failure != nil:
		return fmt.Sprintf("FAILED via %s (%s)", s.Via, s.Failure.Class)
	}
	return "FAILED"
}

func masterText(m *supervisor.MasterReport) string {
	if m.PID == 0 {
		return "not running: " + m.Error
	}
	state := "gone"
	if m.Alive {
		state = "alive, " + string(m.OSState)
	}
	s := fmt.Sprintf("%d (%s)", m.PID, state)
	if m.Config != "" {
		s += " " + m.Config
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// duration prints seconds the way people read them: 312µs, 4.2ms, 45s.
func duration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
