package top

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
)

// column is one column of the worker table. The narrower the terminal,
// the more columns go, lowest priority first; URI and SCRIPT share what
// is left.
type column struct {
	title string
	width int // the width, or the least width of a flexible column
	flex  int // share of the spare width; 0 for a fixed column
	prio  int
	right bool
	// cell is the text, and the style that highlights it (nil: none).
	cell func(m *model, r row) (string, *lipgloss.Style)
	// cut shortens text that does not fit.
	cut func(s string, w int) string
}

func cutRight(s string, w int) string { return ansi.Truncate(s, w, "…") }

// cutLeft keeps the end of a path, the part that names the file.
func cutLeft(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return "…" + ansi.TruncateLeft(s, ansi.StringWidth(s)-w+1, "")
}

var columns = []column{
	{title: "PID", width: 7, prio: 100, right: true, cell: func(_ *model, r row) (string, *lipgloss.Style) { return fmt.Sprint(r.p.PID), nil }},
	{title: "POOL", width: 10, prio: 45, cell: func(m *model, r row) (string, *lipgloss.Style) { return safe(m.label(r.key.pool)), nil }},
	{title: "STATE", width: 9, prio: 85, cell: func(_ *model, r row) (string, *lipgloss.Style) { return safe(r.p.State), nil }},
	{title: "OS", width: 10, prio: 75, cell: func(m *model, r row) (string, *lipgloss.Style) {
		switch r.p.OSState {
		case supervisor.OSStopped, supervisor.OSZombie, supervisor.OSDiskSleep, supervisor.OSGone:
			return string(r.p.OSState), &m.st.warn
		}
		return string(r.p.OSState), nil
	}},
	{title: "AGE", width: 7, prio: 95, right: true, cell: func(m *model, r row) (string, *lipgloss.Style) {
		if r.p.Hung {
			return ageText(r.p), &m.st.hung
		}
		return ageText(r.p), nil
	}},
	{title: "HUNG", width: 8, prio: 80, cell: func(m *model, r row) (string, *lipgloss.Style) {
		switch {
		case !r.p.Hung:
			return "", nil
		case r.p.HungKind == "":
			return "hung", &m.st.hung
		}
		return string(r.p.HungKind), &m.st.hung
	}},
	{title: "WAIT", width: 10, flex: 1, prio: 70, cell: func(m *model, r row) (string, *lipgloss.Style) {
		w := safe(supervisor.WaitShort(r.p.Wait))
		if r.p.Hung && w != "" {
			return w, &m.st.hung
		}
		return w, nil
	}},
	{title: "METHOD", width: 6, prio: 50, cell: func(_ *model, r row) (string, *lipgloss.Style) { return dash(safe(r.p.RequestMethod)), nil }},
	{title: "URI", width: 12, flex: 3, prio: 90, cell: func(m *model, r row) (string, *lipgloss.Style) { return dash(m.uri(r.p)), nil }},
	{title: "SCRIPT", width: 12, flex: 2, prio: 40, cut: cutLeft, cell: func(_ *model, r row) (string, *lipgloss.Style) { return dash(safe(r.p.Script)), nil }},
	{title: "CPU%", width: 5, prio: 60, right: true, cell: func(_ *model, r row) (string, *lipgloss.Style) {
		switch {
		case !r.cpuOK:
			return "-", nil
		case r.cpuPct < 9.95:
			return fmt.Sprintf("%.1f", r.cpuPct), nil
		}
		return fmt.Sprintf("%.0f", r.cpuPct), nil
	}},
	{title: "PSS", width: 8, prio: 55, right: true, cell: func(_ *model, r row) (string, *lipgloss.Style) {
		if r.mem == 0 {
			return "-", nil
		}
		return human.FormatBytes(r.mem), nil
	}},
}

// uri is a worker's request URI as shown: escaped, without its query
// string unless --show-query.
func (m *model) uri(p *supervisor.ProcessState) string {
	u := p.RequestURI
	if !m.opts.ShowQuery {
		u = supervisor.StripQuery(u)
	}
	return safe(u)
}

// layout picks the columns that fit the width and sizes them.
func (m *model) layout() []column {
	cols := slices.Clone(columns)
	if m.pool != (supervisor.PoolID{}) || m.snap == nil || len(m.snap.Pools) < 2 {
		cols = slices.DeleteFunc(cols, func(c column) bool { return c.title == "POOL" })
	}
	if !m.anyPSS() {
		i := slices.IndexFunc(cols, func(c column) bool { return c.title == "PSS" })
		cols[i].title = "RSS"
	}
	need := func() int {
		n := 2 // the selection mark
		for _, c := range cols {
			n += c.width + 1
		}
		return n - 1
	}
	for need() > m.width && len(cols) > 1 {
		low := 0
		for i, c := range cols {
			if c.prio < cols[low].prio {
				low = i
			}
		}
		cols = slices.Delete(cols, low, low+1)
	}
	spare, flex := m.width-need(), 0
	for _, c := range cols {
		flex += c.flex
	}
	if spare > 0 && flex > 0 {
		// Each flexible column gets its share first, then what the others
		// left; never more than its longest value needs.
		share := spare
		for _, whole := range []bool{false, true} {
			for i := range cols {
				if cols[i].flex == 0 {
					continue
				}
				grow := min(spare, max(0, m.longest(cols[i])-cols[i].width))
				if !whole {
					grow = min(grow, share*cols[i].flex/flex)
				}
				cols[i].width += grow
				spare -= grow
			}
		}
	}
	return cols
}

func (m *model) anyPSS() bool {
	for _, r := range m.rows {
		if r.p.PSSBytes > 0 {
			return true
		}
	}
	return false
}

func (m *model) longest(c column) int {
	n := 0
	for _, r := range m.rows {
		s, _ := c.cell(m, r)
		n = max(n, ansi.StringWidth(s))
	}
	return n
}

// table draws the header and as many workers as room allows, keeping the
// selected one in sight.
func (m *model) table(room int) []string {
	if room <= 0 {
		return nil
	}
	cols := m.layout()
	var b strings.Builder
	b.WriteString("  ")
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pad(c.title, c.width, c.right))
	}
	lines := []string{m.st.dim.Render(b.String())}
	if len(m.rows) == 0 {
		return append(lines, "  no workers to show")
	}
	shown := room - 1
	sel := max(0, m.selIndex())
	if sel < m.top {
		m.top = sel
	}
	if shown > 0 && sel >= m.top+shown {
		m.top = sel - shown + 1
	}
	m.top = max(0, min(m.top, len(m.rows)-shown))
	for i := m.top; i < len(m.rows) && len(lines) < room; i++ {
		lines = append(lines, m.rowLine(cols, m.rows[i], i == sel && m.high > 0))
	}
	return lines
}

func (m *model) rowLine(cols []column, r row, selected bool) string {
	var b strings.Builder
	if selected {
		b.WriteString("> ")
	} else {
		b.WriteString("  ")
	}
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(' ')
		}
		text, style := c.cell(m, r)
		cut := c.cut
		if cut == nil {
			cut = cutRight
		}
		cell := pad(cut(text, c.width), c.width, c.right)
		if style != nil && !selected {
			cell = style.Render(cell)
		}
		b.WriteString(cell)
	}
	if selected {
		return m.st.sel.Render(b.String())
	}
	return b.String()
}

// pad pads s with spaces to w columns.
func pad(s string, w int, right bool) string {
	n := w - ansi.StringWidth(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ageText is a busy worker's request age, "-" for an idle one.
func ageText(p *supervisor.ProcessState) string {
	if p.Idle() {
		return "-"
	}
	return p.Age().String()
}
