package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/top"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/fpmguard/fpmguard/web"
	"golang.org/x/term"
)

// topFlags are the flags of top.
type topFlags struct {
	from      string
	once      bool
	width     int
	interval  time.Duration
	nginxLogs []string
}

func addTopFlags(cmd *kingpin.CmdClause, f *topFlags) {
	fromFlag(cmd, &f.from, "Show a running fpmguard serve or run instead of probing:")
	declare(cmd, "once", "Print one frame as plain text and exit.", &boolValue{name: "once", to: &f.once})
	declare(cmd, "width", "--once: the frame's width in columns (0: the terminal's, or 160).",
		&intValue[int]{name: "width", to: &f.width, min: 40, max: 1000, zeroOK: true, what: "columns", eg: "160"}).Default("0")
	intervalFlag(cmd, &f.interval, "Time between probes of each pool, and between refreshes.")
	nginxLogFlag(cmd, &f.nginxLogs, "Follow this nginx error log and show each pool's 5xx of the last minute.")
}

// feed is where top's snapshots come from: a watcher of its own, or a
// serve over HTTP.
type feed struct {
	snapshot func() *watch.Snapshot
	problem  func() string
	control  watch.Control
	source   string
	stop     func()
	// events holds the kills asked for here, printed when top ends; nil
	// when another process keeps them.
	events *event.Log
}

func cmdTop(ctx context.Context, c *cli, stdout, stderr io.Writer) int {
	f := &c.top
	out, isFile := stdout.(*os.File)
	if !f.once && (!isFile || !term.IsTerminal(int(out.Fd()))) {
		fmt.Fprintln(stderr, "fpmguard: error: top needs a terminal; use top --once for one frame as plain text")
		return 2
	}
	var fd *feed
	var err error
	if f.from != "" {
		fd, err = remoteFeed(ctx, c)
	} else {
		fd, err = localFeed(ctx, c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	defer fd.stop()
	host, _ := os.Hostname()
	opts := top.Options{Snapshot: fd.snapshot, Problem: fd.problem, Control: fd.control, Source: fd.source, Host: host,
		ShowQuery: c.showQuery, Refresh: f.interval, Who: fmt.Sprintf("fpmguard top (pid %d, uid %d)", os.Getpid(), os.Getuid())}
	if f.from == "" {
		opts.HungAfter = c.hungAfter // serve's own is not known here
	}
	if f.once {
		return topOnce(ctx, c, opts, stdout, stderr)
	}
	err = top.Run(ctx, opts, os.Stdin, out)
	if fd.events != nil {
		// What was done, or refused, stays on the terminal.
		for _, e := range fd.events.Recent(0) {
			if e.Kind == event.KindAction || e.Kind == event.KindActionRefused || e.Kind == event.KindBudget {
				fmt.Fprintf(stderr, "fpmguard top: %s %s\n", e.Time.Local().Format("15:04:05"), safe(e.Message))
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	return 0
}

// topOnce prints one frame from two snapshots an interval apart: the
// second gives the rates.
func topOnce(ctx context.Context, c *cli, opts top.Options, stdout, stderr io.Writer) int {
	f := &c.top
	width := f.width
	if out, ok := stdout.(*os.File); ok && width <= 0 {
		if w, _, err := term.GetSize(int(out.Fd())); err == nil {
			width = w
		}
	}
	if width <= 0 {
		width = 160
	}
	// Every read ends within --timeout; the opcache is read after the
	// first probe of every pool, within one more.
	deadline := time.Now().Add(3*c.timeout + 3*f.interval)
	first := waitSnapshot(ctx, opts.Snapshot, deadline, func(s *watch.Snapshot) bool {
		return allProbed(s) && (!c.opcache || f.from != "" || s.Opcache != nil)
	})
	if first == nil {
		fmt.Fprintf(stderr, "fpmguard: error: no snapshot: %s\n", safe(opts.Problem()))
		return 1
	}
	second := waitSnapshot(ctx, opts.Snapshot, deadline.Add(2*f.interval), func(s *watch.Snapshot) bool {
		for i, p := range s.Pools {
			if i >= len(first.Pools) || !p.LastProbe.After(first.Pools[i].LastProbe) {
				return false
			}
		}
		return true
	})
	snaps := []*watch.Snapshot{first}
	if second != nil {
		snaps = append(snaps, second)
	}
	fmt.Fprintln(stdout, top.Once(opts, width, snaps...))
	return 0
}

func allProbed(s *watch.Snapshot) bool {
	for _, p := range s.Pools {
		if !p.Probed() {
			return false
		}
	}
	return true
}

// waitSnapshot polls snapshot until done holds, and returns the last one
// seen (nil if none) when the deadline or ctx comes first.
func waitSnapshot(ctx context.Context, snapshot func() *watch.Snapshot, deadline time.Time, done func(*watch.Snapshot) bool) *watch.Snapshot {
	var last *watch.Snapshot
	for {
		if s := snapshot(); s != nil {
			last = s
			if done(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// localFeed probes the pools with a watcher of top's own, actions off: the
// kill key asks it, through the watchdog's rules, with their defaults.
func localFeed(ctx context.Context, c *cli) (*feed, error) {
	f := &c.top
	targets, err := supervisor.ResolveTargets(ctx, c.pools, c.fpmConfigs, c.trust())
	if err != nil && len(targets) == 0 {
		return nil, err
	}
	problem := ""
	if err != nil {
		problem = "some pools were not found: " + oneLine(err.Error())
	}
	pr := newProber(c)
	pr.ReadPSS = true
	// Events stay in memory: a log line would tear the full-screen view.
	// The kills are printed when top ends.
	events := event.NewLog(nil)
	w := watch.New(pr, targets, watch.Config{Interval: f.interval}, events)
	if len(f.nginxLogs) > 0 {
		w.FollowNginx(f.nginxLogs)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		w.Run(wctx)
		close(done)
	}()
	return &feed{snapshot: w.Snapshot, problem: func() string { return problem }, control: w, source: "standalone", events: events,
		stop: func() {
			cancel()
			<-done
		}}, nil
}

// remoteFeed reads a running serve every interval, in the background: the
// view never waits on the network.
func remoteFeed(ctx context.Context, c *cli) (*feed, error) {
	f := &c.top
	remote, err := web.NewRemote(f.from, os.Getenv("FPMGUARD_PASSWORD"), max(c.timeout, time.Second))
	if err != nil {
		return nil, err
	}
	var latest atomic.Pointer[watch.Snapshot]
	var problem atomic.Pointer[string]
	read := func() {
		s, err := remote.Snapshot(ctx)
		msg := ""
		if err != nil {
			msg = "cannot read " + remote.String() + ": " + oneLine(err.Error())
			if errors.Is(err, context.Canceled) {
				return
			}
		} else {
			latest.Store(s)
		}
		problem.Store(&msg)
	}
	read()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(f.interval)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				read()
			}
		}
	}()
	return &feed{snapshot: latest.Load, control: remote, source: "from " + remote.String(),
		problem: func() string {
			if p := problem.Load(); p != nil {
				return *p
			}
			return ""
		},
		stop: func() {
			cancel()
			<-done
		}}, nil
}
