// Command fpmguard supervises php-fpm pools and their opcache. It parses
// flags and prints; the work is done in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/opcache"
	"github.com/fpmguard/fpmguard/runner"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/termsafe"
	promversion "github.com/prometheus/common/version"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	drainSIGPIPE()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// drainSIGPIPE keeps fpmguard alive when its stdout or stderr is a pipe
// nobody reads any more (`fpmguard run ... 2>&1 | head`): Go kills a
// program that writes to a broken pipe on fd 1 or 2 unless SIGPIPE is
// handled. Handled, the write fails with EPIPE instead, and the logger
// drops the line (event.LogWriter). Not signal.Ignore: an ignored
// signal stays ignored across exec, into php-fpm; a handled one is reset
// to the default there.
func drainSIGPIPE() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGPIPE)
	go func() {
		for range c {
		}
	}()
}

// cli holds every flag.
type cli struct {
	config     string
	pools      []string
	fpmConfigs []string
	timeout    time.Duration
	hungAfter  time.Duration
	showQuery  bool
	logLevel   string
	logFormat  string

	// masterUsers are the users, besides root and fpmguard's own, whose
	// php-fpm masters fpmguard acts for.
	masterUsers uidList

	opcacheScript string
	opcacheDir    string
	noOpcache     bool

	output string // status: table or json
	color  string // status: auto, always, never

	invalidatePaths []string
	invalidateGlob  string

	check supervisor.CheckThresholds

	top         topFlags
	advise      adviseFlags
	serve, run  watchFlags
	runArgv     []string
	stopTimeout time.Duration
}

// watchFlags returns the watch flags of serve or run.
func (c *cli) watchFlags(cmd string) *watchFlags {
	if cmd == "run" {
		return &c.run
	}
	return &c.serve
}

// runConfig is the php-fpm config on run's command line, as a list.
func (c *cli) runConfig() []string {
	if conf := runner.ConfigPath(c.runArgv); conf != "" {
		return []string{conf}
	}
	return nil
}

func newApp(c *cli) *kingpin.Application {
	app := kingpin.New("fpmguard", "Supervisor, prober and exporter for php-fpm and its opcache.")
	// --version, and the version in the man page's title line.
	app.Version(version)
	app.HelpFlag.Short('h')
	app.Flag("config", "YAML file holding any of these flags by long name; flags on the command line win.").PlaceHolder("FILE").StringVar(&c.config)
	app.Flag("pool", "A pool to watch: ADDR[,name=N,pm.status_path=/status,pm.status_listen=ADDR,ping.path=/ping,ping.response=pong,pid=FILE,pm=static,pm.max_children=N]. Repeatable.").PlaceHolder("SPEC").StringsVar(&c.pools)
	app.Flag("fpm-config", "Watch every pool of this php-fpm config (php-fpm.conf). Repeatable.").PlaceHolder("PATH").StringsVar(&c.fpmConfigs)
	app.Flag("fpm-master-user", "Also act for php-fpm masters running as this user (name or uid), as in a container where php-fpm runs as a user of its own. By default only masters of root and of fpmguard's own user are watched; any other process with a master's title is skipped, since a pool's PHP code could start it. Repeatable.").PlaceHolder("USER").SetValue(&c.masterUsers)
	app.Flag("timeout", "Bound on each FastCGI request.").Default("2s").DurationVar(&c.timeout)
	app.Flag("hung-after", "A request older than this makes its worker hung.").Default(supervisor.DefaultHungAfter.String()).DurationVar(&c.hungAfter)
	app.Flag("show-query", "Keep query strings in request URIs (they may hold tokens).").BoolVar(&c.showQuery)
	app.Flag("opcache-script", "The opcache status script's path as php-fpm sees it, placed by you (examples/php/fpmguard-opcache.php); fpmguard checks its content before each use. Default: fpmguard installs its own copy into --opcache-dir. Reset and invalidate always write into --opcache-dir.").PlaceHolder("PATH").StringVar(&c.opcacheScript)
	app.Flag("opcache-dir", "Directory, as php-fpm sees it (inside its container's root and chroot), where fpmguard installs its opcache status script and writes the script of each reset or invalidate for that call alone. Every directory on its path must belong to root or fpmguard's user and be writable by nobody else; no link is followed.").Default(opcache.DefaultDir).StringVar(&c.opcacheDir)
	app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").EnumVar(&c.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").EnumVar(&c.logFormat, "logfmt", "json")

	status := app.Command("status", "Show each pool's verdict, counters and workers.")
	status.Flag("output", "Output format: table or json.").Short('o').Default("table").EnumVar(&c.output, "table", "json")
	status.Flag("color", "Colour the table: auto (on a terminal), always or never.").Default("auto").EnumVar(&c.color, "auto", "always", "never")
	status.Flag("no-opcache", "Do not read the opcache.").BoolVar(&c.noOpcache)

	check := app.Command("check", "One status line with perfdata; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
	check.Flag("warning-latency", "WARNING when a heartbeat takes this long (0: off).").Default("0").DurationVar(&c.check.WarnLatency)
	check.Flag("critical-latency", "CRITICAL when a heartbeat takes this long (0: off).").Default("0").DurationVar(&c.check.CritLatency)
	check.Flag("warning-queue", "WARNING at this listen queue (0: off).").Default("0").Int64Var(&c.check.WarnQueue)
	check.Flag("critical-queue", "CRITICAL at this listen queue (0: off).").Default("0").Int64Var(&c.check.CritQueue)
	check.Flag("warning-busy", "WARNING when this share of workers is busy, 0 to 1 (0: off).").Default("0").Float64Var(&c.check.WarnBusy)
	check.Flag("critical-busy", "CRITICAL when this share of workers is busy, 0 to 1 (0: off).").Default("0").Float64Var(&c.check.CritBusy)

	check.Flag("no-opcache", "Do not read the opcache.").BoolVar(&c.noOpcache)

	oc := app.Command("opcache", "Read, reset or invalidate the opcache inside php-fpm, once per master.")
	ocStatus := oc.Command("status", "Show each master's opcache and its verdict.")
	ocStatus.Flag("output", "Output format: table or json.").Short('o').Default("table").EnumVar(&c.output, "table", "json")
	oc.Command("reset", "Run opcache_reset() inside php-fpm.")
	inv := oc.Command("invalidate", "Run opcache_invalidate(PATH, true) inside php-fpm, for deploy scripts.")
	inv.Arg("path", "Absolute paths of scripts, as php-fpm sees them.").StringsVar(&c.invalidatePaths)
	inv.Flag("glob", "Also every file matching this glob, expanded by PHP inside php-fpm.").StringVar(&c.invalidateGlob)

	topCmd := app.Command("top", "A live full-screen view of every pool and worker, with a kill key; --from reads a running serve.")
	addTopFlags(topCmd, &c.top)

	addAdviseFlags(app.Command("advise", "Settings for each pool and opcache, computed from what fpmguard measures: sampled for --duration, or --from a running serve's history."), &c.advise)

	serve := app.Command("serve", "Watch the pools continuously; serve /healthz, /readyz, /status, /events and /metrics; act when asked.")
	addWatchFlags(serve, &c.serve)
	run := app.Command("run", "Run php-fpm as a child (the container entrypoint), restart it when it dies, and do all serve does: fpmguard run [flags] -- php-fpm -F -y CONF")
	addWatchFlags(run, &c.run)
	run.Flag("stop-timeout", "On SIGTERM: time php-fpm gets after SIGQUIT to finish its requests, before SIGTERM.").Default("10s").DurationVar(&c.stopTimeout)
	run.Arg("command", "php-fpm's command line, after --.").Required().StringsVar(&c.runArgv)

	app.Command("version", "Print the version.")
	return app
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	promversion.Version = version
	var c cli
	app := newApp(&c)
	app.UsageWriter(stdout).ErrorWriter(stderr)
	exited := -1
	app.Terminate(func(code int) {
		exited = code
		// kingpin parses on after --help, --help-man, --version or a
		// completion script, and prints the usage when no command
		// follows: that would end up in the man page.
		app.UsageWriter(io.Discard).ErrorWriter(io.Discard)
	})
	cmd, err := parseArgs(app, &c, args)
	if exited >= 0 { // --help printed its text
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		if cmd == "check" || (cmd == "" && slices.Contains(args, "check")) {
			fmt.Fprintln(stdout, "FPMGUARD UNKNOWN - "+errLine(err))
			return supervisor.CheckUnknown
		}
		return 2
	}
	logger, logs := newLogger(stderr, c.logLevel, c.logFormat)
	// The last lines say why fpmguard stopped: written before it exits,
	// unless stderr is stalled.
	defer logs.Flush(2 * time.Second)

	if cmd == "run" {
		// run handles its own signals: they go to php-fpm first.
		return cmdRun(ctx, args, &c, stderr, logger)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "serve":
		return cmdServe(ctx, args, &c, stderr, logger)
	case "version":
		fmt.Fprintf(stdout, "fpmguard %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "status":
		return cmdStatus(ctx, &c, stdout, stderr, logger)
	case "top":
		return cmdTop(ctx, &c, stdout, stderr)
	case "advise":
		return cmdAdvise(ctx, &c, stdout, stderr)
	case "check":
		return cmdCheck(ctx, &c, stdout, stderr)
	case "opcache status":
		return cmdOpcacheStatus(ctx, &c, stdout, stderr)
	case "opcache reset", "opcache invalidate":
		return cmdOpcacheAction(ctx, &c, cmd, stdout, stderr)
	}
	fmt.Fprintln(stderr, "fpmguard: error: no command given; try fpmguard --help")
	return 2
}

func newProber(c *cli) *supervisor.Prober {
	// Its connections are counted: php-fpm's counts less them are load.
	client := fastcgi.Client{Timeout: c.timeout, Probe: true}
	self := lag.New(0)
	pr := &supervisor.Prober{
		Client:     client,
		Procs:      supervisor.SystemProcs,
		Thresholds: supervisor.Thresholds{HungAfter: c.hungAfter},
		ShowQuery:  c.showQuery,
		Lag:        self,
		Trust:      c.trust(),
	}
	if !c.noOpcache {
		pr.Opcache = &supervisor.OpcacheProber{Client: client, Script: c.opcacheScript, Dir: c.opcacheDir, Lag: self}
	}
	return pr
}

// probeOnce resolves the pools and probes them all once. It returns the
// targets too, and an error for pools it could not resolve.
func probeOnce(ctx context.Context, c *cli) ([]supervisor.Target, *supervisor.Report, error) {
	targets, err := resolveTargets(ctx, c)
	if err != nil && len(targets) == 0 {
		return nil, nil, err
	}
	return targets, newProber(c).ProbeAll(ctx, targets, nil), err
}

func cmdStatus(ctx context.Context, c *cli, stdout, stderr io.Writer, logger *slog.Logger) int {
	_, rep, err := probeOnce(ctx, c)
	if rep == nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	if err != nil {
		logger.Warn("some pools were not found", "err", oneLine(err.Error()))
	}
	if c.output == "json" {
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "fpmguard: error: writing JSON: %v\n", err)
			return 1
		}
		return 0
	}
	writeTable(stdout, rep, useColor(c.color, stdout))
	return 0
}

func cmdCheck(ctx context.Context, c *cli, stdout, stderr io.Writer) int {
	_, rep, err := probeOnce(ctx, c)
	if rep == nil {
		fmt.Fprintln(stdout, "FPMGUARD UNKNOWN - "+errLine(err))
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return supervisor.CheckUnknown
	}
	res := supervisor.Check(rep, c.check)
	fmt.Fprintln(stdout, safe(res.Line))
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: %s\n", errLine(err))
	}
	return res.Code
}

// newLogger logs to w through an event.LogWriter: a line that cannot be
// written is dropped and counted, never an error that stops fpmguard, and
// a stalled w never blocks the caller. Flush the writer before exiting.
// Both handlers escape control characters below U+0020 in what they log
// (logfmt quotes such a value, JSON escapes it); termsafe.JSONWriter
// escapes the DEL and C1 controls they leave raw.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *event.LogWriter) {
	lw := event.NewLogWriter(w)
	w = termsafe.JSONWriter{W: lw}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lw
	}
	return slog.New(slog.NewTextHandler(w, opts)), lw
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// errLine is an error as one line a terminal shows safely: errors carry
// what php-fpm, nginx or a file said.
func errLine(err error) string { return safe(oneLine(err.Error())) }

func cmdOpcacheStatus(ctx context.Context, c *cli, stdout, stderr io.Writer) int {
	_, rep, err := probeOnce(ctx, c)
	if rep == nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	if c.output == "json" {
		out := struct {
			Version int                        `json:"version"`
			Time    time.Time                  `json:"time"`
			Opcache []supervisor.OpcacheReport `json:"opcache"`
		}{rep.Version, rep.Time, rep.Opcache}
		if err := writeJSON(stdout, out); err != nil {
			fmt.Fprintf(stderr, "fpmguard: error: writing JSON: %v\n", err)
			return 1
		}
		return 0
	}
	writeOpcacheTable(stdout, rep.Opcache)
	return 0
}

func cmdOpcacheAction(ctx context.Context, c *cli, cmd string, stdout, stderr io.Writer) int {
	if cmd == "opcache invalidate" && len(c.invalidatePaths) == 0 && c.invalidateGlob == "" {
		fmt.Fprintln(stderr, "fpmguard: error: opcache invalidate needs paths or --glob; e.g. fpmguard opcache invalidate /var/www/index.php")
		return 2
	}
	c.noOpcache = false
	targets, rep, err := probeOnce(ctx, c)
	if rep == nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	pr := newProber(c).Opcache
	var results []supervisor.OpcacheAction
	if cmd == "opcache reset" {
		results = pr.Reset(ctx, targets, rep.Pools)
	} else {
		results = pr.Invalidate(ctx, targets, rep.Pools, c.invalidatePaths, c.invalidateGlob)
	}
	if len(results) == 0 {
		fmt.Fprintln(stderr, "fpmguard: error: no running php-fpm master to act on")
		return 1
	}
	code := 0
	for _, r := range results {
		writeOpcacheAction(stdout, cmd, r)
		if !r.OK {
			code = 1
		}
	}
	return code
}

// trust is whose masters fpmguard acts for.
func (c *cli) trust() supervisor.Trust {
	return supervisor.Trust{MasterUsers: c.masterUsers}
}

// uidList is the value of a repeatable flag naming users, by name or uid.
type uidList []uint32

func (l *uidList) Set(s string) error {
	s = strings.TrimSpace(s)
	u, err := user.Lookup(s)
	if err != nil {
		if u, err = user.LookupId(s); err != nil {
			return fmt.Errorf("%q is neither a user name nor a uid of this host", s)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return fmt.Errorf("user %q has uid %q, not a number", s, u.Uid)
	}
	*l = append(*l, uint32(uid))
	return nil
}

func (l *uidList) String() string {
	out := make([]string, len(*l))
	for i, u := range *l {
		out[i] = strconv.FormatUint(uint64(u), 10)
	}
	return strings.Join(out, ",")
}

// IsCumulative makes the flag repeatable.
func (l *uidList) IsCumulative() bool { return true }

// resolveTargets finds the pools the flags name, or discovers them, with
// errors that name the flag at fault.
func resolveTargets(ctx context.Context, c *cli) ([]supervisor.Target, error) {
	targets, err := supervisor.ResolveTargets(ctx, c.pools, c.fpmConfigs, c.trust())
	if err == nil {
		return targets, nil
	}
	var se *supervisor.SourceError
	switch {
	case errors.As(err, &se) && se.Source == supervisor.SourcePoolSpec:
		err = fmt.Errorf("--pool %q: %w", se.Value, se.Err)
	case errors.As(err, &se):
		err = fmt.Errorf("--fpm-config %q: %w", se.Value, se.Err)
	case errors.Is(err, supervisor.ErrNoMaster):
		err = fmt.Errorf("%w: start php-fpm, or name pools with --pool or --fpm-config", err)
	case errors.Is(err, supervisor.ErrTitleCut):
		err = fmt.Errorf("%w: pass --fpm-config PATH", err)
	}
	if errors.Is(err, supervisor.ErrUntrustedUser) {
		err = fmt.Errorf("%w; if php-fpm itself runs as that user (not only its pools), name the user with --fpm-master-user", err)
	}
	return targets, err
}
