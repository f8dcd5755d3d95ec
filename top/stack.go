package top

import (
	"fmt"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/waits"
)

// The stack key: the selected worker's wait, as the last probe read it,
// and its PHP stack, read now from its memory without stopping it (issue
// 24), with the top of php-fpm's slowlog backtrace of its request.

// showStack opens the stack view of the selected worker and asks for its
// stack.
func (m *model) showStack() tea.Cmd {
	r, ok := m.selected()
	if !ok {
		return nil
	}
	m.mode, m.stackFor = modeStack, r.key
	m.stack = m.stackLines(stackMsg{key: r.key})
	if m.opts.Control == nil {
		m.stack = append(m.stack, "no stack here: this view cannot ask the watcher")
		return nil
	}
	m.stack = append(m.stack, fmt.Sprintf("reading the PHP stack of worker %d…", r.key.pid))
	c, k := m.opts.Control, r.key
	return func() tea.Msg {
		ctx, cancel := contextWithTimeout(m.ctx)
		defer cancel()
		st, err := c.Stack(ctx, k.pool.String(), k.pid)
		return stackMsg{k, st, err}
	}
}

// stackLines is what the stack view shows of the worker: its wait and its
// slowlog backtrace from the latest snapshot, then the stack read (none
// yet while msg has neither stack nor error).
func (m *model) stackLines(msg stackMsg) []string {
	var lines []string
	var p *supervisor.ProcessState
	for _, r := range m.rows {
		if r.key == msg.key {
			p = r.p
		}
	}
	if p != nil {
		switch {
		case p.Idle():
			lines = append(lines, "idle: no request in flight")
		case p.Wait != nil:
			lines = append(lines, "waits: "+waitLine(p.Wait))
		default:
			lines = append(lines, "waits: not read (fpmguard reads it for requests older than half of --hung-after, or the slowlog's timeout)")
		}
		if len(p.SlowlogTrace) > 0 {
			lines = append(lines, "slowlog: "+strings.Join(p.SlowlogTrace, " <- "))
		}
	}
	switch {
	case msg.err != nil:
		lines = append(lines, "PHP stack not read: "+msg.err.Error())
	case msg.stack != nil && msg.stack.Error != "":
		lines = append(lines, "PHP stack not read: "+msg.stack.Error)
	case msg.stack != nil && len(msg.stack.Frames) == 0:
		lines = append(lines, "PHP stack: no PHP code running")
	case msg.stack != nil:
		lines = append(lines, fmt.Sprintf("PHP stack, read %s, innermost first:", msg.stack.At.Local().Format("15:04:05")))
		for _, f := range msg.stack.Frames {
			lines = append(lines, "  "+f.String())
		}
		if msg.stack.Incomplete != "" {
			lines = append(lines, "  ? "+msg.stack.Incomplete)
		}
	}
	return lines
}

// waitLine is a wait with its system call and descriptor.
func waitLine(w *waits.Wait) string {
	s := w.What()
	if w.Syscall != "" {
		s += " (in " + w.Syscall + ")"
	}
	if !w.Since.IsZero() {
		s += ", seen since " + w.Since.Local().Format("15:04:05")
	}
	return s
}

// stackViewLines draws the stack view in room lines.
func (m *model) stackViewLines(room int) []string {
	lines := []string{m.st.title.Render(fmt.Sprintf("worker %d of pool %s (esc to close)", m.stackFor.pid, safe(m.label(m.stackFor.pool))))}
	for _, l := range m.stack {
		lines = append(lines, safe(l))
	}
	return lines[:min(len(lines), room)]
}
