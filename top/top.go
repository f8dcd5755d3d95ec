// Package top is `fpmguard top`: a live full-screen view of every pool and
// worker, with a kill key behind a confirmation. It reads a snapshot
// function, as the metrics collector does, and asks a watch.Control to act: it
// reads nothing else of the watcher, and never acts itself. Every string
// that came from php-fpm, a client or a file goes through termsafe before
// it is drawn. It imports watch, supervisor, human and termsafe; only the
// command imports it.
package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/muesli/termenv"
)

// Options configure the view.
type Options struct {
	// Snapshot returns what is known now; nil while nothing is. It is
	// called once per refresh and must not block.
	Snapshot func() *watch.Snapshot
	// Problem says why the snapshot may be stale ("" when it is not):
	// serve cannot be reached, say.
	Problem func() string
	// Control acts on a worker, or reads its slowlog entry or PHP stack:
	// the watcher, or a serve over HTTP; nil turns those keys off.
	Control watch.Control
	// Who names this view in the events of the kills it asks for.
	Who string
	// Source names where the data comes from, for the header.
	Source string
	Host   string
	// ShowQuery keeps query strings in request URIs.
	ShowQuery bool
	// HungAfter is the watcher's threshold, for the header; the workers
	// past it are those the snapshot marks hung.
	HungAfter time.Duration
	// Refresh is the time between redraws of unchanged data; 1s if 0.
	Refresh time.Duration
}

func (o *Options) fill() {
	if o.Refresh <= 0 {
		o.Refresh = time.Second
	}
	if o.Problem == nil {
		o.Problem = func() string { return "" }
	}
}

// Run shows the view on the terminal until the user quits or ctx ends:
// the caller ends it on SIGTERM and SIGINT, as Run handles no signal. The
// terminal is restored on every one of these paths, and when the view
// panics.
func Run(ctx context.Context, opts Options, in io.Reader, out io.Writer) error {
	opts.fill()
	m := newModel(opts, lipgloss.NewRenderer(out))
	m.ctx = ctx
	// Signals are the caller's, through ctx: bubbletea's own handler
	// sends its quit without watching for the end of the program, so when
	// the program had already quit (on the same SIGTERM, through ctx) it
	// blocked for ever, and so did the shutdown that waits for it, with
	// the alternate screen left on.
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithInput(in), tea.WithOutput(out), tea.WithoutSignalHandler())
	// The end of ctx quits the way q does. bubbletea's own context path
	// kills the program instead, and a kill early in its life left the
	// alternate screen on (seen under load in tests).
	stop := context.AfterFunc(ctx, p.Quit)
	defer stop()
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, context.Canceled) {
		return nil // stopped by a signal or its context: the terminal is restored
	}
	if err != nil {
		return fmt.Errorf("terminal view: %w", err)
	}
	return nil
}

// Once renders one frame as plain text, width columns wide, every worker
// included, for scripts and tests. It shows the last of snaps; the ones
// before give the rates (CPU%, nginx's 5xx, fpmguard's lag).
func Once(opts Options, width int, snaps ...*watch.Snapshot) string {
	opts.fill()
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	m := newModel(opts, r)
	m.width = width
	for _, s := range snaps {
		m.refresh(s)
	}
	return m.frame(0)
}
