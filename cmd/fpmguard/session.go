package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/fpmguard/fpmguard/web"
)

// session runs one watcher at a time for serve and run, and what the HTTP
// server reads comes from it. SIGHUP replaces the watcher: the session
// re-reads the command line and the config file into a cli of its own.
//
// The session follows php-fpm as it changes. A reload (SIGUSR2) or a
// restart may add pools, drop some or move their sockets, and a master may
// start after fpmguard. The watcher says when a master it watches changed
// (reloaded, restarted, gone); the session then reads php-fpm's configs
// again and gives the watcher the pools they hold now, and the watcher
// keeps what it knows of every pool that stayed. With no pool named,
// discovery also scans the process table again every rescanEvery, and
// every interval for rescanFastFor after a master went away, to find the
// master that replaces it.
type session struct {
	args   []string // the command line, read again on SIGHUP
	cmd    string   // "serve" or "run"
	c      cli      // the session's own copy of the flags
	events *event.Log
	logger *slog.Logger
	reload <-chan os.Signal
	// onWatcher is called with each new watcher, and with nil when
	// discovery found no master and the session waits for one.
	onWatcher func(*watch.Watcher)
	// history outlives each watcher: advice covers reloads.
	history *history.History
	// runPID is `run`'s master, 0 while none runs; nil under serve.
	runPID func() int
	// runStarted holds the latest master `run` started, not yet looked at.
	runStarted chan int
	// discovery follows the running masters when no pool is named; nil
	// until the first scan, and after SIGHUP, which forgets the masters
	// gone.
	discovery *supervisor.Discovery
	// missingSince is when discovery last found a known master missing.
	missingSince time.Time
	// waiting: no pool found yet, and that was said.
	waiting bool
	// targets are the pools given to the watcher last.
	targets []supervisor.Target

	current atomic.Pointer[watch.Watcher]
}

// Rescans of the process table under discovery: a scan reads every
// process's command line (3 ms of CPU for 370 processes,
// supervisor.BenchmarkDiscoveryScan), so it runs every rescanEvery, and
// every interval only for rescanFastFor after a master went away.
const (
	rescanEvery   = 10 * time.Second
	rescanFastFor = time.Minute
)

// source is the current watcher for the HTTP handlers, nil while none.
func (s *session) source() web.Source {
	if w := s.current.Load(); w != nil {
		return w
	}
	return nil
}

// controller is the current watcher for the kill and slowlog endpoints,
// nil while none.
func (s *session) controller() watch.Control {
	if w := s.current.Load(); w != nil {
		return w
	}
	return nil
}

// snapshot is the current watcher's snapshot, nil while none.
func (s *session) snapshot() *watch.Snapshot {
	if w := s.current.Load(); w != nil {
		return w.Snapshot()
	}
	return nil
}

func (s *session) flags() *watchFlags { return s.c.watchFlags(s.cmd) }

// run resolves the pools and runs a watcher until ctx ends, starting a
// new one on every SIGHUP, and under `run` when php-fpm starts again in
// another root. It returns the first resolve error.
func (s *session) run(ctx context.Context) error {
	for {
		f := s.flags()
		targets, root, err := s.resolve(ctx)
		if err != nil && len(targets) == 0 {
			if s.runPID != nil && root == "" && errors.Is(err, fs.ErrNotExist) {
				// run -- chroot ROOT php-fpm -y CONF: CONF is a path of
				// ROOT, read once php-fpm runs there.
				if !s.waiting {
					s.logger.Warn("php-fpm's config is not on this side: reading it in php-fpm's root once it runs", "config", s.c.runConfig()[0])
					s.waiting = true
					s.onWatcher(nil)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-s.runStarted:
				case <-s.reload:
					s.rereadFlags()
				}
				continue
			}
			if len(s.c.pools) > 0 || len(s.c.fpmConfigs) > 0 {
				return err
			}
			// Discovery: php-fpm may start after fpmguard, as a sidecar's
			// does. Look again every interval meanwhile.
			if !s.waiting {
				s.logger.Warn("no php-fpm master to watch yet; looking again every interval", "err", oneLine(err.Error()))
				s.waiting = true
				s.onWatcher(nil)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(f.cfg.Interval):
			}
			continue
		}
		if err != nil {
			s.logger.Warn("some pools were not found", "err", oneLine(err.Error()))
		}
		s.waiting = false
		s.forgetRemoved(targets)
		w := s.newWatcher(targets)
		s.onWatcher(w)
		s.current.Store(w)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			w.Run(wctx)
			close(done)
		}()
		s.logger.Info("watching", "pools", len(targets), "names", poolNames(targets), "interval", f.cfg.Interval, "kill_hung_after", f.cfg.Actions.KillHungAfter, "dry_run", f.cfg.Actions.DryRun)
		if !s.watch(ctx, w, root) {
			stop()
			<-done
			return nil
		}
		stop()
		<-done
	}
}

// watch waits while the current watcher runs, and gives it the pools of
// php-fpm as it changes: false when ctx ends, true on SIGHUP, when a new
// watcher must start.
func (s *session) watch(ctx context.Context, w *watch.Watcher, root string) bool {
	var rescan *time.Timer
	var rescanC <-chan time.Time
	if s.discovery != nil {
		rescan = time.NewTimer(s.rescanAfter())
		defer rescan.Stop()
		rescanC = rescan.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.reload:
			s.rereadFlags()
			return true
		case pid := <-s.runStarted:
			root = s.follow(ctx, w, root, pid)
		case <-w.Changed():
			root = s.follow(ctx, w, root, 0)
		case <-rescanC:
			root = s.follow(ctx, w, root, 0)
		}
		if rescan != nil {
			rescan.Reset(s.rescanAfter())
		}
	}
}

// follow reads php-fpm's configs again, or scans for masters, and gives w
// the pools found: the pools that stayed keep their state. A config that
// cannot be read now leaves the pools as they are. started is the master
// `run` just started, 0 for none. It returns the root run's config was
// read in (resolve).
func (s *session) follow(ctx context.Context, w *watch.Watcher, root string, started int) string {
	targets, now, err := s.resolve(ctx)
	if ctx.Err() != nil {
		return root
	}
	if err != nil && (s.discovery == nil || len(targets) == 0) {
		s.logger.Warn("php-fpm changed, but its pools could not be read again: watching the same pools", "err", oneLine(err.Error()))
		return root
	}
	if err != nil {
		s.logger.Warn("discovery", "err", oneLine(err.Error()))
	}
	if now != root && now != "" && started > 0 {
		s.events.Add(event.Event{Master: started, Kind: event.KindConfig, Message: fmt.Sprintf("php-fpm master %d started in another root: its config read there", started)})
	}
	s.targets = targets
	w.SetTargets(targets)
	return now
}

// rescanAfter is when discovery scans the process table again.
func (s *session) rescanAfter() time.Duration {
	if !s.discovery.Missing() {
		s.missingSince = time.Time{}
		return rescanEvery
	}
	if s.missingSince.IsZero() {
		s.missingSince = time.Now()
	}
	if time.Since(s.missingSince) < rescanFastFor {
		return s.flags().cfg.Interval
	}
	return rescanEvery
}

// forgetRemoved drops from the history the pools of the last watcher that
// the next one does not watch (SIGHUP named others): advice no longer
// counts them.
func (s *session) forgetRemoved(targets []supervisor.Target) {
	for _, t := range s.targets {
		if !slices.ContainsFunc(targets, func(n supervisor.Target) bool { return n.ID() == t.ID() }) {
			s.history.RemovePool(t)
		}
	}
	s.targets = targets
}

// resolve finds the pools to watch, and says where run's config was read:
// "" on this side, else the /proc/PID/root of run's master. Under `run`,
// once php-fpm runs in another root (run -- chroot ROOT php-fpm -y CONF),
// CONF is read there, as php-fpm reads it.
func (s *session) resolve(ctx context.Context) ([]supervisor.Target, string, error) {
	conf := s.c.runConfig()
	pid := 0
	if s.runPID != nil {
		pid = s.runPID()
	}
	root := ""
	if pid > 0 && len(conf) > 0 {
		var err error
		if root, err = waitRunMaster(ctx, pid, s.c.trust()); err != nil && ctx.Err() == nil {
			// Its config is then read on this side, as before it ran.
			s.logger.Warn("not reading php-fpm's config in its root", "master", pid, "err", oneLine(err.Error()))
		}
	}
	if root == "" && s.runPID == nil && len(s.c.pools) == 0 && len(s.c.fpmConfigs) == 0 {
		if s.discovery == nil {
			s.discovery = &supervisor.Discovery{Trust: s.c.trust()}
		}
		targets, _, err := s.discovery.Scan(ctx)
		if !s.discovery.Found() {
			if s.waiting && err != nil {
				// Said once: what is new since the first scan.
				s.logger.Warn("still no php-fpm master to watch", "err", oneLine(explainTargets(&s.c, err).Error()))
			}
			err = errors.Join(supervisor.ErrNoMaster, err)
		}
		return targets, "", explainTargets(&s.c, err)
	}
	if root == "" {
		targets, err := resolveTargets(ctx, &s.c)
		return targets, "", err
	}
	var targets []supervisor.Target
	c := s.c
	c.fpmConfigs = slices.DeleteFunc(slices.Clone(c.fpmConfigs), func(p string) bool { return p == conf[0] })
	if len(c.pools) > 0 || len(c.fpmConfigs) > 0 {
		ts, err := resolveTargets(ctx, &c)
		if err != nil {
			return ts, root, err
		}
		targets = ts
	}
	ts, err := supervisor.LoadRunConfig(conf[0], root, pid)
	if err != nil {
		return targets, root, fmt.Errorf("php-fpm config %q of master %d, read in its root %s: %w", conf[0], pid, root, err)
	}
	return append(targets, ts...), root, nil
}

// runStartWait bounds the wait for a master `run` started to show its
// title: php-fpm sets it once its config is read, in milliseconds, or
// seconds on a loaded machine.
const runStartWait = 30 * time.Second

// waitRunMaster waits until master pid, which `run` started, runs php-fpm,
// and returns its root (supervisor.RunMasterRoot).
func waitRunMaster(ctx context.Context, pid int, tr supervisor.Trust) (string, error) {
	deadline := time.Now().Add(runStartWait)
	for {
		root, err := supervisor.RunMasterRoot(ctx, pid, tr)
		if !errors.Is(err, supervisor.ErrNotStarted) || time.Now().After(deadline) {
			return root, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runMasterStarted is told of each master `run` starts: the watcher learns
// its pid at once, and the session looks at its root.
func (s *session) runMasterStarted(pid int) {
	if w := s.current.Load(); w != nil {
		w.SetMasterPID(pid)
	}
	for {
		select {
		case s.runStarted <- pid:
			return
		default:
			select {
			case <-s.runStarted: // an older master, gone already
			default:
			}
		}
	}
}

// newWatcher builds a watcher of targets from the session's flags.
func (s *session) newWatcher(targets []supervisor.Target) *watch.Watcher {
	f := s.flags()
	c := s.c
	pr := newProber(&c)
	pr.ReadPSS = f.processMetrics
	pr.Thresholds.MasterRestarted = s.cmd == "run"
	cfg := f.cfg
	cfg.History = s.history
	w := watch.New(pr, targets, cfg, s.events)
	if len(f.nginxLogs) > 0 {
		for _, p := range f.nginxLogs {
			if _, err := os.Stat(p); err != nil {
				s.logger.Warn("nginx error log not there yet: followed once nginx creates it", "path", p)
			}
		}
		w.FollowNginx(f.nginxLogs)
	}
	return w
}

// rereadFlags reads the command line and the config file again, for
// SIGHUP. A bad one keeps the old. The listen addresses stay: the HTTP
// server keeps running.
func (s *session) rereadFlags() {
	var fresh cli
	_, err := parseArgs(newApp(&fresh), &fresh, s.args)
	if err == nil {
		err = fresh.validate(s.cmd)
	}
	if err != nil {
		s.logger.Error("SIGHUP: config not reloaded; keeping the old one", "err", oneLine(err.Error()))
		return
	}
	fresh.fpmConfigs = append(fresh.fpmConfigs, s.c.runConfig()...)
	fresh.watchFlags(s.cmd).cfg.FirstProbeAfter = s.flags().cfg.FirstProbeAfter
	s.c = fresh
	s.discovery, s.missingSince = nil, time.Time{}
	s.events.Add(event.Event{Kind: event.KindConfig, Message: "SIGHUP: configuration reloaded"})
}

// poolNames names the pools for the log line that starts a watcher: the
// first ten, and how many more.
func poolNames(targets []supervisor.Target) string {
	const shown = 10
	names := make([]string, 0, min(len(targets), shown))
	for _, t := range targets[:min(len(targets), shown)] {
		names = append(names, t.Name)
	}
	out := strings.Join(names, ",")
	if n := len(targets) - shown; n > 0 {
		out += fmt.Sprintf(" (+%d more)", n)
	}
	return out
}
