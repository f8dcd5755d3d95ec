package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"golang.org/x/sys/unix"
)

// watchFlags are the flags of serve and run.
type watchFlags struct {
	cfg              supervisor.WatchConfig
	web              *web.FlagConfig
	telemetryPath    string
	noProcessMetrics bool
	noOpcache        bool
	nginxLogs        []string
}

func addWatchFlags(cmd *kingpin.CmdClause, f *watchFlags) {
	a := &f.cfg.Actions
	cmd.Flag("interval", "Time between probes of each pool.").Default("1s").DurationVar(&f.cfg.Interval)
	cmd.Flag("unhealthy-after", "Heartbeat failures in a row before a pool counts as failing.").Default("3").IntVar(&f.cfg.UnhealthyAfter)
	cmd.Flag("ready-max-queue", "/readyz: requests that may wait in a saturated pool's listen queue.").Default("0").Int64Var(&f.cfg.ReadyMaxQueue)
	cmd.Flag("opcache-interval", "Time between opcache reads of each master.").Default("5s").DurationVar(&f.cfg.OpcacheEvery)
	cmd.Flag("kill-hung-after", "SIGTERM a worker whose request is older than this, SIGKILL after --kill-grace (0: off).").Default("0").DurationVar(&a.KillHungAfter)
	cmd.Flag("kill-grace", "Time from SIGTERM to SIGKILL for a hung worker.").Default("5s").DurationVar(&a.KillGrace)
	cmd.Flag("max-kill-ratio", "Share of a pool's workers killed at most per interval (at least one).").Default("0.5").Float64Var(&a.MaxKillRatio)
	cmd.Flag("reload-unhealthy", "When the heartbeat keeps failing and no hung worker is left to kill, test the config and SIGUSR2 the master.").BoolVar(&a.ReloadUnhealthy)
	cmd.Flag("action-budget", "Actions per pool within --action-budget-window; beyond it fpmguard only reports.").Default("10").IntVar(&a.Budget)
	cmd.Flag("action-budget-window", "Window of --action-budget.").Default("10m").DurationVar(&a.BudgetWindow)
	cmd.Flag("dry-run", "Log and count the actions that would be taken; take none.").BoolVar(&a.DryRun)
	cmd.Flag("web.telemetry-path", "Path of the metrics.").Default("/metrics").StringVar(&f.telemetryPath)
	cmd.Flag("no-process-metrics", "Leave out the per-worker series, for large pools.").BoolVar(&f.noProcessMetrics)
	cmd.Flag("no-opcache", "Do not read the opcache.").BoolVar(&f.noOpcache)
	cmd.Flag("nginx-error-log", "Follow this nginx error log and count upstream failures per pool. Repeatable.").PlaceHolder("PATH").StringsVar(&f.nginxLogs)
	f.web = kingpinflag.AddFlags(cmd, ":9253")
}

func (f *watchFlags) check() error {
	switch {
	case f.cfg.Interval < 10*time.Millisecond:
		return fmt.Errorf("--interval %s is too short; use e.g. 1s", f.cfg.Interval)
	case f.cfg.UnhealthyAfter < 1:
		return fmt.Errorf("--unhealthy-after %d must be at least 1", f.cfg.UnhealthyAfter)
	case f.cfg.Actions.MaxKillRatio <= 0 || f.cfg.Actions.MaxKillRatio > 1:
		return fmt.Errorf("--max-kill-ratio %g must be above 0 and at most 1, e.g. 0.5", f.cfg.Actions.MaxKillRatio)
	case f.cfg.Actions.KillHungAfter < 0 || f.cfg.Actions.KillGrace < 0:
		return errors.New("--kill-hung-after and --kill-grace must not be negative")
	case f.cfg.Actions.Budget < 1:
		return fmt.Errorf("--action-budget %d must be at least 1", f.cfg.Actions.Budget)
	}
	return nil
}

// session is one watcher and what it serves; SIGHUP replaces it.
type session struct {
	current atomic.Pointer[supervisor.Watcher]
}

// watch resolves the pools and runs a watcher until ctx ends, starting a
// new one on every value from reload. It returns the first resolve error.
// setup is called with each new watcher, and with nil when discovery found
// no master and watch waits for one.
func watch(ctx context.Context, args []string, cmd string, c *cli, f *watchFlags, events *supervisor.EventLog, s *session, setup func(*supervisor.Watcher), reload <-chan os.Signal, logger *slog.Logger) error {
	waiting := false
	for {
		targets, err := supervisor.ResolveTargets(ctx, c.pools, c.fpmConfigs)
		if err != nil && len(targets) == 0 {
			if len(c.pools) > 0 || len(c.fpmConfigs) > 0 {
				return err
			}
			// Discovery: php-fpm may start after fpmguard, as a sidecar's
			// does. Look again every interval meanwhile.
			if !waiting {
				logger.Warn("no php-fpm master to watch yet; looking again every interval", "err", oneLine(err.Error()))
				waiting = true
				setup(nil)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(f.cfg.Interval):
			}
			continue
		}
		if err != nil {
			logger.Warn("some pools were not found", "err", oneLine(err.Error()))
		}
		c.noOpcache = c.noOpcache || f.noOpcache
		pr := newProber(c)
		pr.ReadPSS = !f.noProcessMetrics
		w := supervisor.NewWatcher(pr, targets, f.cfg, events)
		if len(f.nginxLogs) > 0 {
			w.FollowNginx(f.nginxLogs)
		}
		setup(w)
		s.current.Store(w)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			w.Run(wctx)
			close(done)
		}()
		logger.Info("watching", "pools", len(targets), "interval", f.cfg.Interval, "kill_hung_after", f.cfg.Actions.KillHungAfter, "dry_run", f.cfg.Actions.DryRun)
		select {
		case <-ctx.Done():
			stop()
			<-done
			return nil
		case <-reload:
		}
		// Re-read the flags and the config file, then start over. The
		// listen addresses stay: the HTTP server keeps running.
		var fresh cli
		_, err = parseArgs(newApp(&fresh), &fresh, args)
		if err == nil {
			err = fresh.watchFlags(cmd).check()
		}
		if err != nil {
			logger.Error("SIGHUP: config not reloaded; keeping the old one", "err", oneLine(err.Error()))
		} else {
			fresh.fpmConfigs = append(fresh.fpmConfigs, c.runConfig()...)
			webFlags := f.web
			*c, *f = fresh, *fresh.watchFlags(cmd)
			f.web = webFlags
			events.Add(supervisor.Event{Kind: "config", Message: "SIGHUP: configuration reloaded"})
		}
		stop()
		<-done
	}
}

// serve starts the HTTP server and the watch loop.
func serveHTTP(ctx context.Context, f *watchFlags, s *session, logger *slog.Logger) (<-chan error, func()) {
	metrics := supervisor.NewMetricsHandler(supervisor.NewCollector(s.current.Load, !f.noProcessMetrics), logger)
	handler := supervisor.NewHTTPHandler(s.current.Load, metrics, f.telemetryPath)
	srv := supervisor.NewHTTPServer(handler)
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	errc := make(chan error, 1)
	go func() {
		if err := web.ListenAndServe(srv, f.web, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return errc, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}

func cmdServe(ctx context.Context, args []string, c *cli, stderr io.Writer, logger *slog.Logger) int {
	f := c.watchFlags("serve")
	if err := f.check(); err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", err)
		return 2
	}
	events := supervisor.NewEventLog(logger)
	var s session
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var watchErr error
	ready := make(chan struct{})
	wg.Go(func() {
		watchErr = watch(ctx, args, "serve", c, f, events, &s, func(*supervisor.Watcher) {
			select {
			case <-ready:
			default:
				close(ready)
			}
		}, hup, logger)
		cancel()
	})
	select {
	case <-ready:
	case <-ctx.Done():
		wg.Wait()
		if watchErr != nil {
			fmt.Fprintf(stderr, "fpmguard: error: %s\n", oneLine(watchErr.Error()))
			return 1
		}
		return 0
	}
	errc, shutdown := serveHTTP(ctx, f, &s, logger)
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintf(stderr, "fpmguard: error: serving HTTP: %s\n", oneLine(err.Error()))
		code = 1
		cancel()
	}
	shutdown()
	wg.Wait()
	return code
}

func cmdRun(ctx context.Context, args []string, c *cli, stderr io.Writer, logger *slog.Logger) int {
	f := c.watchFlags("run")
	if err := f.check(); err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", err)
		return 2
	}
	// php-fpm starts with the watcher: give it an interval to listen.
	f.cfg.FirstProbeAfter = f.cfg.Interval
	conf := supervisor.ConfigPath(c.runArgv)
	if conf == "" {
		fmt.Fprintf(stderr, "fpmguard: error: run needs php-fpm's config on its command line: fpmguard run -- php-fpm -F -y /etc/php/8.2/fpm/php-fpm.conf\n")
		return 2
	}
	events := supervisor.NewEventLog(logger)
	runner, err := supervisor.NewRunner(supervisor.RunConfig{Argv: c.runArgv, StopTimeout: c.stopTimeout}, events)
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", oneLine(err.Error()))
		return 2
	}
	c.fpmConfigs = append(c.fpmConfigs, c.runConfig()...)

	// SIGTERM, SIGINT, SIGQUIT and every other signal that would end
	// fpmguard (supervisor.StopSignals) stop php-fpm gracefully; the
	// context of main is replaced so the runner, not the signal, decides
	// when fpmguard ends. (Go's own SIGQUIT or SIGABRT would dump
	// goroutines and leave php-fpm.)
	stopSigs := make(chan os.Signal, 1)
	signal.Notify(stopSigs, supervisor.StopSignals...)
	forward := make(chan os.Signal, 4)
	signal.Notify(forward, syscall.SIGUSR1, syscall.SIGUSR2)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(stopSigs)
	defer signal.Stop(forward)
	defer signal.Stop(hup)

	fpmCtx, stopFPM := context.WithCancel(context.Background())
	defer stopFPM()
	go func() {
		select {
		case sig := <-stopSigs:
			logger.Warn("got a stop signal: stopping php-fpm", "signal", signalName(sig))
		case <-ctx.Done():
		}
		stopFPM()
	}()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	var s session
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var readyOnce sync.Once
	wg.Go(func() {
		defer readyOnce.Do(func() { close(ready) })
		err := watch(watchCtx, args, "run", c, f, events, &s, func(w *supervisor.Watcher) {
			if w != nil {
				w.UseReaper(runner.Reaper())
				w.SetMasterPID(runner.PID())
				runner.OnStart(w.SetMasterPID)
			}
			readyOnce.Do(func() { close(ready) })
		}, hup, logger)
		if err != nil {
			// php-fpm still runs, and restarts; only the watching is off.
			logger.Error("not watching php-fpm's pools", "err", oneLine(err.Error()))
		}
	})
	<-ready
	errc, shutdown := serveHTTP(watchCtx, f, &s, logger)
	// A fatal error stops php-fpm the graceful way too, and fpmguard then
	// exits 1, so that whatever restarts it knows.
	var failed atomic.Bool
	go func() {
		select {
		case err := <-errc:
			logger.Error("serving HTTP: stopping php-fpm", "err", oneLine(err.Error()))
			failed.Store(true)
			stopFPM()
		case <-watchCtx.Done():
		}
	}()

	code := runner.Run(fpmCtx, forward)
	stopWatch()
	shutdown()
	wg.Wait()
	if failed.Load() && code == 0 {
		return 1
	}
	return code
}

// signalName is a signal's name as kill(1) takes it, e.g. SIGXCPU.
func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		if name := unix.SignalName(s); name != "" {
			return name
		}
	}
	return sig.String()
}
