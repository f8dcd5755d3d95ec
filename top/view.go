package top

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/termsafe"
)

// safe is what every string from php-fpm, a client or a file goes through
// before it is drawn.
var safe = termsafe.String

type styles struct {
	health                                 map[supervisor.Health]lipgloss.Style
	title, hung, warn, dim, sel, good, bad lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	c := func(color string) lipgloss.Style { return r.NewStyle().Foreground(lipgloss.Color(color)) }
	return styles{
		health: map[supervisor.Health]lipgloss.Style{
			supervisor.HealthOK: c("2").Bold(true), supervisor.HealthUnknown: c("8").Bold(true), supervisor.HealthDegraded: c("3").Bold(true),
			supervisor.HealthUnhealthy: c("1").Bold(true), supervisor.HealthDown: c("1").Bold(true).Reverse(true),
		},
		title: r.NewStyle().Bold(true).Reverse(true),
		hung:  c("1").Bold(true),
		warn:  c("3"),
		dim:   c("8"),
		sel:   r.NewStyle().Reverse(true),
		good:  c("2"),
		bad:   c("1"),
	}
}

// View draws the screen: never more lines than the terminal has, never a
// line wider than it.
func (m *model) View() string {
	if m.width <= 0 || m.high <= 0 {
		return ""
	}
	return m.frame(m.high)
}

// frame draws the view height lines high, or every worker when height is
// 0 (the plain frame of --once, without keys).
func (m *model) frame(height int) string {
	var lines []string
	add := func(ls ...string) {
		for _, l := range ls {
			lines = append(lines, ansi.Truncate(l, m.width, ""))
		}
	}
	add(m.header())
	if m.snap == nil {
		add("", "waiting for the first probe…")
		if p := m.opts.Problem(); p != "" {
			add(m.st.bad.Render(safe(p)))
		}
		return strings.Join(m.fill(lines, height), "\n")
	}
	// The footer: the message, wrapped to the width (never cut), and the
	// keys.
	var msg []string
	footer := 0
	if height > 0 {
		msg = m.messageLines(max(1, height-3))
		footer = len(msg) + 1
	}
	// The pools may take what is left after the table's header, three
	// workers and the footer.
	poolRoom := 1 << 30
	if height > 0 {
		poolRoom = max(1, height-1-footer-4)
	}
	add(m.pools(poolRoom)...)

	body := 1 << 30
	if height > 0 {
		body = max(0, height-len(lines)-footer)
	}
	switch m.mode {
	case modeHelp:
		add(m.helpLines(body)...)
	case modeSlowlog:
		add(m.slowlogLines(body)...)
	case modeStack:
		add(m.stackViewLines(body)...)
	default:
		add(m.table(body)...)
	}
	if height > 0 {
		lines = m.fill(lines, height-footer)
		add(msg...)
		add(m.help.ShortHelpView(m.keys.ShortHelp()))
	}
	return strings.Join(lines, "\n")
}

// fill pads or cuts lines to exactly n (none when n is 0).
func (m *model) fill(lines []string, n int) []string {
	if n <= 0 {
		return lines
	}
	for len(lines) < n {
		lines = append(lines, "")
	}
	return lines[:n]
}

func (m *model) header() string {
	parts := []string{"fpmguard top"}
	if m.opts.Host != "" {
		parts = append(parts, safe(m.opts.Host))
	}
	if s := m.snap; s != nil {
		parts = append(parts, s.Time.Local().Format("15:04:05"))
		lag := fmt.Sprintf("lag %.1f%%", 100*m.hist.lagShare)
		if s.Self.Interval > 0 {
			lag += ", probes every " + human.FormatDuration(s.Self.Interval)
		}
		parts = append(parts, lag)
		if m.opts.HungAfter > 0 {
			parts = append(parts, "hung after "+human.FormatDuration(m.opts.HungAfter))
		}
		var ps []string
		for _, p := range s.Pools {
			ps = append(ps, safe(m.label(p.Report.ID()))+" "+m.st.health[p.Report.Health].Render(strings.ToUpper(string(p.Report.Health))))
		}
		parts = append(parts, strings.Join(ps, ", "))
	}
	if m.opts.Source != "" {
		parts = append(parts, safe(m.opts.Source))
	}
	line := strings.Join(parts, " · ")
	if m.pool != (supervisor.PoolID{}) {
		line = m.st.title.Render("POOL "+safe(m.label(m.pool))) + " " + line
	}
	if m.pause {
		line = m.st.title.Render("PAUSED") + " " + line
	}
	return line
}

// pools draws each pool in at most room lines.
func (m *model) pools(room int) []string {
	per := 2
	if m.snap != nil && len(m.snap.Pools)*3 <= room {
		per = 3 // room for each pool's first reason
	} else if m.snap != nil && len(m.snap.Pools)*2 > room {
		per = 1
	}
	var out []string
	for i, pv := range m.snap.Pools {
		if len(out)+per > room && i < len(m.snap.Pools) {
			out = append(out, m.st.dim.Render(fmt.Sprintf("… %d more pools (p shows one at a time)", len(m.snap.Pools)-i)))
			break
		}
		r := pv.Report
		segs := []string{m.poolTitle(r), m.st.dim.Render("not probed yet")}
		if pv.Probed() {
			segs = m.poolSegments(r)
		}
		lines := pack(segs, m.width, min(per, 2))
		switch {
		case per == 3 && len(r.Waits) > 0:
			// What the hung workers wait on says more than the first reason.
			reason := "  ! " + safe(r.Waits[0].Line)
			if n := len(r.Waits) - 1; n > 0 {
				reason += fmt.Sprintf(" (+%d more causes)", n)
			}
			lines = append(lines, m.st.warn.Render(reason))
		case per == 3 && len(r.Reasons) > 0:
			reason := "  ! " + safe(r.Reasons[0])
			if n := len(r.Reasons) - 1; n > 0 {
				reason += fmt.Sprintf(" (+%d more)", n)
			}
			lines = append(lines, m.st.warn.Render(reason))
		}
		out = append(out, lines...)
	}
	return out
}

// pack puts segments on at most n lines of width, in order; what does not
// fit is left out.
func pack(segs []string, width, n int) []string {
	var lines []string
	cur := ""
	for _, s := range segs {
		switch {
		case cur == "":
			cur = s
		case ansi.StringWidth(cur)+2+ansi.StringWidth(s) <= width:
			cur += "  " + s
		case len(lines)+1 < n:
			lines = append(lines, cur)
			cur = "    " + s
		}
	}
	return append(lines, cur)
}

// poolTitle is the pool's name and verdict.
func (m *model) poolTitle(r *supervisor.PoolReport) string {
	return "pool " + safe(m.label(r.ID())) + " " + m.st.health[r.Health].Render(strings.ToUpper(string(r.Health)))
}

func (m *model) poolSegments(r *supervisor.PoolReport) []string {
	segs := []string{m.poolTitle(r)}
	h := r.Heartbeat
	switch {
	case h.Skipped:
		segs = append(segs, "heartbeat not configured")
		if c := r.Connect; c != nil && c.Failure != nil {
			segs = append(segs, m.st.bad.Render(fmt.Sprintf("connect FAILED (%s, nginx %d)", c.Failure.Class, c.Failure.NginxStatus)))
		}
	case h.Idle:
		segs = append(segs, "heartbeat not sent (idle ondemand pool)")
	case h.OK:
		segs = append(segs, "heartbeat "+human.FormatSeconds(h.LatencySeconds)+" "+m.hist.sparkline(r.ID()))
	case h.Inconclusive != "":
		segs = append(segs, m.st.warn.Render("heartbeat not judged (fpmguard starved)")+" "+m.hist.sparkline(r.ID()))
	case h.Misconfigured():
		segs = append(segs, m.st.warn.Render(fmt.Sprintf("heartbeat MISCONFIGURED (%s)", h.Failure.Class))+" "+m.hist.sparkline(r.ID()))
	case h.WaitsBehindHung > 0:
		segs = append(segs, m.st.bad.Render(fmt.Sprintf("heartbeat FAILED (not sent: all %d workers hung)", h.WaitsBehindHung))+" "+m.hist.sparkline(r.ID()))
	case h.Failure != nil:
		segs = append(segs, m.st.bad.Render(fmt.Sprintf("heartbeat FAILED (%s, nginx %d)", h.Failure.Class, h.Failure.NginxStatus))+" "+m.hist.sparkline(r.ID()))
	default:
		segs = append(segs, m.st.bad.Render("heartbeat FAILED")+" "+m.hist.sparkline(r.ID()))
	}
	if r.Status.OK {
		// Counted from the process list, when it was read: fpmguard's own
		// status read is no load.
		busy, total := r.Busy()
		workers := fmt.Sprintf("busy %d idle %d total %d", busy, total-busy, total)
		if r.Config.MaxChildren > 0 {
			workers += fmt.Sprintf("/%d max", r.Config.MaxChildren)
		}
		if total > 0 && busy == total {
			workers = m.st.warn.Render(workers)
		}
		segs = append(segs, workers)
	}
	if rate := r.RequestsPerSecond; rate != nil {
		segs = append(segs, fmt.Sprintf("req/s %.1f", *rate))
	}
	if q := r.SocketQueue; q != nil {
		s := fmt.Sprintf("queue %d/%d", r.Queue(), q.Max)
		if r.Queue() > 0 {
			s = m.st.warn.Render(s)
		}
		segs = append(segs, s)
	} else if r.Counters != nil {
		segs = append(segs, fmt.Sprintf("queue %d", r.Counters.ListenQueue))
	}
	if c := r.Counters; c != nil {
		segs = append(segs, fmt.Sprintf("max children reached %d", c.MaxChildrenReached))
	}
	if n, ok := m.hist.nginx5xx(r.ID()); ok {
		s := fmt.Sprintf("nginx 5xx/min %d", n)
		if n > 0 {
			s = m.st.bad.Render(s)
		}
		segs = append(segs, s)
	}
	if o := m.opcacheOf(r); o != nil {
		switch {
		case o.Error != "" || !o.Enabled:
			segs = append(segs, m.st.warn.Render("opcache "+string(o.Health)))
		default:
			s := fmt.Sprintf("opcache %.0f%% full, hits %.1f%%", 100*o.FillRatio, 100*o.HitRate)
			if o.Health != supervisor.HealthOK {
				s = m.st.health[o.Health].Render(s)
			}
			segs = append(segs, s)
		}
	}
	return segs
}

// opcacheOf is the opcache of the pool's master, nil when not read.
func (m *model) opcacheOf(r *supervisor.PoolReport) *supervisor.OpcacheReport {
	for i := range m.snap.Opcache {
		o := &m.snap.Opcache[i]
		if r.Master != nil && r.Master.PID != 0 && o.MasterPID == r.Master.PID {
			return o
		}
	}
	// The master's name, when its pid is not known: the name alone may be
	// another master's pool's too.
	for i := range m.snap.Opcache {
		o := &m.snap.Opcache[i]
		if o.Master == r.MasterName && slices.Contains(o.Pools, r.Name) {
			return o
		}
	}
	return nil
}

// message is the line above the keys: a question, the answer to the last
// key, or what is wrong with the data; its text and its style.
func (m *model) message() (string, lipgloss.Style) {
	switch {
	case m.mode == modeConfirm:
		p := m.confirm.p
		what := "idle"
		if !p.Idle() {
			what = safe(p.RequestMethod) + " " + m.uri(p) + " for " + ageText(p)
		}
		return fmt.Sprintf("Kill worker %d of pool %s (%s)? SIGTERM; the master starts another. y/N", p.PID, safe(m.label(m.confirm.key.pool)), what), m.st.title
	case m.msg != "" && m.msgOK:
		return safe(m.msg), m.st.good
	case m.msg != "":
		return safe(m.msg), m.st.bad
	case m.opts.Problem() != "":
		return safe(m.opts.Problem()), m.st.bad
	}
	if m.snap != nil && time.Since(m.snap.Time) > 3*m.opts.Refresh+2*time.Second {
		return "the data is " + human.FormatDuration(time.Since(m.snap.Time)) + " old", m.st.warn
	}
	return "", m.st.dim
}

// messageLines is the message wrapped to the screen's width, in at most
// room lines: a message is never cut at the edge of the screen.
func (m *model) messageLines(room int) []string {
	text, style := m.message()
	if text == "" {
		return []string{""}
	}
	lines := strings.Split(ansi.Wrap(text, max(1, m.width), " "), "\n")
	if len(lines) > room {
		lines = lines[:room]
		lines[room-1] = ansi.Truncate(lines[room-1], max(1, m.width-1), "") + "…"
	}
	for i, l := range lines {
		lines[i] = style.Render(l)
	}
	return lines
}

func (m *model) helpLines(room int) []string {
	lines := []string{"", "Keys:"}
	lines = append(lines, strings.Split(m.help.FullHelpView(m.keys.FullHelp()), "\n")...)
	lines = append(lines, "",
		"STATE is php-fpm's word for the worker, OS the kernel's. AGE is the age of the",
		"request in flight, in red once it is past --hung-after; HUNG says whether a hung",
		"worker spins on a CPU or waits (blocked). CPU% is over the last probe interval;",
		"PSS counts shared memory (the opcache) once across the workers sharing it.",
		"WAIT is what a held-up worker waits for (read once its request is older than half",
		"of --hung-after); t shows it with the worker's PHP stack, read from its memory now.",
		"The kill key (x, then y) sends SIGTERM through the same checks as --kill-hung-after:",
		"parent and title, never an idle worker, at most --max-kill-ratio of a pool at once.",
		"It is offered only for a worker the watcher would kill: busy, not serving",
		"fpmguard's own probe, its master alive.",
		"esc closes this help.")
	return lines[:min(len(lines), room)]
}

func (m *model) slowlogLines(room int) []string {
	lines := []string{m.st.title.Render(fmt.Sprintf("slowlog of worker %d of pool %s (esc to close)", m.slowlogFor.pid, safe(m.label(m.slowlogFor.pool))))}
	for _, l := range m.slowlog {
		lines = append(lines, safe(l))
	}
	return lines[:min(len(lines), room)]
}
