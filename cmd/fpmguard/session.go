package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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

	current atomic.Pointer[watch.Watcher]
}

// source is the current watcher for the HTTP handlers, nil while none.
func (s *session) source() web.Source {
	if w := s.current.Load(); w != nil {
		return w
	}
	return nil
}

// controller is the current watcher for the kill and slowlog endpoints,
// nil while none.
func (s *session) controller() web.Controller {
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
// new one on every SIGHUP. It returns the first resolve error.
func (s *session) run(ctx context.Context) error {
	waiting := false
	for {
		f := s.flags()
		targets, err := resolveTargets(ctx, &s.c)
		if err != nil && len(targets) == 0 {
			if len(s.c.pools) > 0 || len(s.c.fpmConfigs) > 0 {
				return err
			}
			// Discovery: php-fpm may start after fpmguard, as a sidecar's
			// does. Look again every interval meanwhile.
			if !waiting {
				s.logger.Warn("no php-fpm master to watch yet; looking again every interval", "err", oneLine(err.Error()))
				waiting = true
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
		select {
		case <-ctx.Done():
			stop()
			<-done
			return nil
		case <-s.reload:
		}
		s.rereadFlags()
		stop()
		<-done
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
