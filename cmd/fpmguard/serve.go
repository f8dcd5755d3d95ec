package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/runner"
	"github.com/fpmguard/fpmguard/watch"
	fpmweb "github.com/fpmguard/fpmguard/web"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// watchFlags are the flags of serve and run.
type watchFlags struct {
	cfg              watch.Config
	web              *web.FlagConfig
	telemetryPath    string
	processMetrics   bool
	nginxLogs        []string
	enableKill       bool
	killFromLoopback bool
	allowedHosts     []string
}

func addWatchFlags(cmd *kingpin.CmdClause, f *watchFlags) {
	a := &f.cfg.Actions
	intervalFlag(cmd, &f.cfg.Interval, "Time between probes of each pool.")
	declare(cmd, "unhealthy-after", "Heartbeat failures in a row before a pool counts as failing (/healthz, --reload-unhealthy).",
		&intValue[int]{name: "unhealthy-after", to: &f.cfg.UnhealthyAfter, min: 1, what: "failures", eg: "3"}).Default("3")
	declare(cmd, "ready-max-queue", "/readyz: requests that may wait in a saturated pool's listen queue.",
		&intValue[int64]{name: "ready-max-queue", to: &f.cfg.ReadyMaxQueue, what: "requests", eg: "0"}).Default("0")
	declare(cmd, "opcache-interval", "Time between opcache reads of each master.",
		&durationValue{name: "opcache-interval", to: &f.cfg.OpcacheEvery, min: 10 * time.Millisecond, eg: "5s"}).Default("5s")
	declare(cmd, "kill-hung-after", "SIGTERM a worker whose request is older than this, SIGKILL after --kill-grace (0: off).",
		&durationValue{name: "kill-hung-after", to: &a.KillHungAfter, off: true, eg: "60s"}).Default("0")
	declare(cmd, "kill-grace", "Time from SIGTERM to SIGKILL for a hung worker.",
		&durationValue{name: "kill-grace", to: &a.KillGrace, eg: "5s"}).Default("5s")
	declare(cmd, "max-kill-ratio", "Share of a pool's workers on their way out at once, killed by fpmguard or by hand, from 0 to 1 (at least one worker).",
		&shareValue{name: "max-kill-ratio", to: &a.MaxKillRatio, over: "1 lets every worker be killed at once"}).Default("0.5")
	declare(cmd, "reload-unhealthy", "When the heartbeat keeps failing and no hung worker is left to kill, test the config and SIGUSR2 the master.",
		&boolValue{name: "reload-unhealthy", to: &a.ReloadUnhealthy})
	declare(cmd, "php-fpm-binary", "php-fpm's binary for the config test of --reload-unhealthy (php-fpm8.2 -t); it must belong to root and be writable by no one else. Default: the binary the master runs, if named php-fpm… and only root may change it.",
		&textValue{name: "php-fpm-binary", to: &a.PHPFPMBinary, check: existingFile("/usr/sbin/php-fpm8.2")}).PlaceHolder("PATH")
	declare(cmd, "action-budget", "Actions per pool within --action-budget-window; beyond it fpmguard only reports.",
		&intValue[int]{name: "action-budget", to: &a.Budget, min: 1, what: "actions", eg: "10"}).Default("10")
	declare(cmd, "action-budget-window", "Window of --action-budget.",
		&durationValue{name: "action-budget-window", to: &a.BudgetWindow, min: time.Second, eg: "10m"}).Default("10m")
	declare(cmd, "dry-run", "Log and count the actions that would be taken; take none.", &boolValue{name: "dry-run", to: &a.DryRun})
	declare(cmd, "web.telemetry-path", "Path of the metrics.", &textValue{name: "web.telemetry-path", to: &f.telemetryPath, check: telemetryPath}).Default("/metrics")
	declare(cmd, "process-metrics", "Export the per-worker series (--no-process-metrics: leave them out, for large pools).",
		&boolValue{name: "process-metrics", to: &f.processMetrics}).Default("true")
	nginxLogFlag(cmd, &f.nginxLogs, "Follow this nginx error log and count upstream failures per pool.")
	declare(cmd, "web.enable-kill", "Allow POST /kill, the kill key of `fpmguard top --from`, through the same checks as --kill-hung-after, for the clients --web.config.file authenticates (basic_auth_users, or verified client certificates). Without such a web config fpmguard refuses to start, unless --web.kill-from-loopback is given too.",
		&boolValue{name: "web.enable-kill", to: &f.enableKill})
	declare(cmd, "web.kill-from-loopback", "With --web.enable-kill and no client authentication in --web.config.file: let any client on loopback kill workers. On a host that is every local user and process; in a Kubernetes pod, every container of the pod, the PHP application's included.",
		&boolValue{name: "web.kill-from-loopback", to: &f.killFromLoopback})
	declare(cmd, "web.allowed-host", "A name HTTP clients may reach fpmguard by (a DNS scrape target, a Service), besides IP addresses, localhost and the names in --web.listen-address; .example.com allows the domain and every name below it. Requests naming another Host are refused, so that no web page can read fpmguard by pointing its own name at it (DNS rebinding). Repeatable.",
		&textValue{name: "web.allowed-host", list: &f.allowedHosts, check: allowedHost}).PlaceHolder("NAME")
	f.web = kingpinflag.AddFlags(cmd, ":9253")
}

// validate checks what the flags of serve or run say together.
func (f *watchFlags) validate() error {
	switch {
	case f.killFromLoopback && !f.enableKill:
		return errors.New("--web.kill-from-loopback says who may kill over HTTP: it needs --web.enable-kill")
	}
	if file := *f.web.WebConfigFile; file != "" {
		if _, err := existingFile("/etc/fpmguard/web.yml")(file); err != nil {
			return &badFlag{"web.config.file", file, err.Error()}
		}
	}
	for _, addr := range *f.web.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return &badFlag{"web.listen-address", addr, "give HOST:PORT or :PORT, e.g. :9253 or 127.0.0.1:9253"}
		}
	}
	if bin := f.cfg.Actions.PHPFPMBinary; bin != "" {
		b, err := watch.PHPFPMBinary(bin, 0)
		if err != nil {
			return fmt.Errorf("--php-fpm-binary %q: %w", bin, err)
		}
		b.Close()
	}
	return nil
}

// serveHTTP serves what the session's watcher knows, under policy.
func serveHTTP(f *watchFlags, s *session, logger *slog.Logger, policy fpmweb.Policy) (<-chan error, func()) {
	metrics := fpmweb.NewMetricsHandler(fpmweb.NewCollector(s.snapshot, f.processMetrics), logger)
	handler := fpmweb.WithControl(fpmweb.NewHTTPHandler(s.source, metrics, f.telemetryPath), s.controller, policy)
	srv := fpmweb.NewHTTPServer(handler)
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

// webPolicy says who may reach what over HTTP (see fpmweb.Policy). It
// refuses --web.enable-kill when no client is authenticated, unless
// --web.kill-from-loopback accepts that every local process may kill. A
// web config that cannot be read authenticates nobody (and
// exporter-toolkit refuses to serve it anyway).
func webPolicy(f *watchFlags, logger *slog.Logger) (fpmweb.Policy, error) {
	p := fpmweb.Policy{Kill: f.enableKill, KillFromLoopback: f.killFromLoopback, Log: logger}
	auth, err := fpmweb.AuthenticatesClients(*f.web.WebConfigFile)
	if err != nil {
		logger.Warn("HTTP: no client is authenticated: worker details for loopback clients only", "err", oneLine(err.Error()))
	}
	p.Authenticated = auth
	p.Hosts = append(p.Hosts, f.allowedHosts...)
	for _, addr := range *f.web.WebListenAddresses {
		if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && net.ParseIP(host) == nil {
			p.Hosts = append(p.Hosts, host)
		}
	}
	if !p.Kill {
		return p, nil
	}
	if !auth && !p.KillFromLoopback {
		return p, errors.New("--web.enable-kill without client authentication would let any process on this machine (in a pod: any container, the PHP application's included) kill workers: set basic_auth_users, or client_auth_type RequireAndVerifyClientCert, in --web.config.file; or add --web.kill-from-loopback to accept that")
	}
	who := "clients authenticated by --web.config.file"
	if !auth {
		who = "any client on loopback (--web.kill-from-loopback): every local process, in a pod every container"
	}
	logger.Warn("POST /kill is on (--web.enable-kill) for "+who, "path", "/kill")
	return p, nil
}

func cmdServe(ctx context.Context, args []string, c *cli, stderr io.Writer, logger *slog.Logger) int {
	f := c.watchFlags("serve")
	policy, err := webPolicy(f, logger)
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", err)
		return 2
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	var readyOnce sync.Once
	s := &session{args: args, cmd: "serve", c: *c, events: event.NewLog(logger), logger: logger, reload: hup, history: history.New(),
		onWatcher: func(*watch.Watcher) { readyOnce.Do(func() { close(ready) }) }}
	var wg sync.WaitGroup
	var watchErr error
	wg.Go(func() {
		watchErr = s.run(ctx)
		cancel()
	})
	select {
	case <-ready:
	case <-ctx.Done():
		wg.Wait()
		if watchErr != nil {
			fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(watchErr))
			return 1
		}
		return 0
	}
	errc, shutdown := serveHTTP(f, s, logger, policy)
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintf(stderr, "fpmguard: error: serving HTTP: %s\n", errLine(err))
		code = 1
		cancel()
	}
	shutdown()
	wg.Wait()
	return code
}

func cmdRun(ctx context.Context, args []string, c *cli, stderr io.Writer, logger *slog.Logger) int {
	f := c.watchFlags("run")
	policy, err := webPolicy(f, logger)
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", err)
		return 2
	}
	// php-fpm starts with the watcher: give it an interval to listen.
	f.cfg.FirstProbeAfter = f.cfg.Interval
	conf := runner.ConfigPath(c.runArgv)
	if conf == "" {
		fmt.Fprintf(stderr, "fpmguard: error: run needs php-fpm's config on its command line: fpmguard run -- php-fpm8.2 -F -y /etc/php/8.2/fpm/php-fpm.conf\n")
		return 2
	}
	c.fpmConfigs = append(c.fpmConfigs, c.runConfig()...)
	// run watches what it runs: a config fpmguard's parser refuses would
	// leave php-fpm unwatched, or, as php-fpm most often refuses the same
	// config, restarting for ever. Say what to fix, and start nothing. A
	// config that is not on this side (run -- chroot ROOT php-fpm -y CONF
	// names it as php-fpm sees it) is no such verdict: php-fpm starts.
	if _, err := resolveTargets(ctx, c); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "fpmguard: error: %s; fix it (%s -t -y %s tests it as php-fpm reads it), then start fpmguard run again; php-fpm was not started\n", errLine(err), safe(c.runArgv[0]), safe(conf))
		return exitConfig
	}
	events := event.NewLog(logger)
	// php-fpm's stderr, line by line, to the watcher: its error log when
	// error_log names stderr, for why workers die. Not on a terminal,
	// where php-fpm writes its log rather than to error_log.
	var s *session
	rcfg := runner.Config{Argv: c.runArgv, StopTimeout: c.stopTimeout}
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		rcfg.StderrLines = func(line string) {
			if w := s.current.Load(); w != nil {
				w.FeedErrorLog(line)
			}
		}
	}
	rn, err := runner.New(rcfg, events)
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 2
	}

	// SIGTERM, SIGINT, SIGQUIT and every other signal that would end
	// fpmguard (runner.StopSignals) stop php-fpm gracefully; the
	// context of main is replaced so the runner, not the signal, decides
	// when fpmguard ends. (Go's own SIGQUIT or SIGABRT would dump
	// goroutines and leave php-fpm.)
	stopSigs := make(chan os.Signal, 1)
	signal.Notify(stopSigs, runner.StopSignals...)
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
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var readyOnce sync.Once
	s = &session{args: args, cmd: "run", c: *c, events: events, logger: logger, reload: hup, history: history.New(),
		runPID: rn.PID, runStarted: make(chan int, 1),
		onWatcher: func(w *watch.Watcher) {
			if w != nil {
				w.UseOutput(rn.Reaper().Output)
				w.SetMasterPID(rn.PID())
			}
			readyOnce.Do(func() { close(ready) })
		}}
	rn.OnStart(s.runMasterStarted)
	wg.Go(func() {
		defer readyOnce.Do(func() { close(ready) })
		if err := s.run(watchCtx); err != nil {
			// php-fpm still runs, and restarts; only the watching is off.
			logger.Error("not watching php-fpm's pools", "err", oneLine(err.Error()))
		}
	})
	<-ready
	errc, shutdown := serveHTTP(f, s, logger, policy)
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

	code := rn.Run(fpmCtx, forward)
	stopWatch()
	shutdown()
	wg.Wait()
	if failed.Load() && code == 0 {
		return 1
	}
	return code
}

// exitConfig is run's exit status when it cannot read php-fpm's config:
// php-fpm's own for a config it refuses (FPM_EXIT_CONFIG, sysexits'
// EX_CONFIG), so that a supervisor that stops on it stops on both.
const exitConfig = 78

// signalName is a signal's name as kill(1) takes it, e.g. SIGXCPU.
func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		if name := unix.SignalName(s); name != "" {
			return name
		}
	}
	return sig.String()
}
