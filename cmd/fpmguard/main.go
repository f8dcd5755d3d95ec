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
	// discoverConfigs narrow discovery to the masters whose name matches.
	discoverConfigs []string

	opcacheScript string
	opcacheDir    string
	opcache       bool // read the opcache along with the pools

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

// versionLine is what `fpmguard version` and --version print.
func versionLine() string {
	return fmt.Sprintf("fpmguard %s (%s, %s/%s)", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// The commands' help. The first paragraph is the summary in the list of
// commands; the rest shows in the command's own help (and man page).
const (
	statusHelp = `Show each pool's verdict with its reasons, counters and workers, and each master's opcache.

Exit status: 0 when every pool serves (OK or DEGRADED), 3 when a pool or an opcache is UNHEALTHY or DOWN (as systemctl status does for a unit that is not running), 1 when fpmguard could not look (no pool found), 2 for a bad flag. For monitoring, use check.`
	checkHelp = `One status line with perfdata, for Nagios, Icinga or an exec probe: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

A degraded pool is a WARNING, an unhealthy or down one CRITICAL; the thresholds below add to that. A bad flag is UNKNOWN (3), as what fpmguard could not judge is.`
	serveHelp = `Watch the pools continuously, serve what fpmguard sees over HTTP, and act when asked (actions are off unless a flag turns them on).

HTTP, on --web.listen-address:

  /          the live status page, for a browser
  /metrics   Prometheus metrics (--web.telemetry-path)
  /healthz   liveness: 503 while a master is gone or a pool is failing
  /readyz    readiness: 503 while a pool cannot take a request now
  /status    the report of fpmguard status -o json
  /snapshot  everything fpmguard top --from reads
  /events    the recent events as JSON (?n=100)
  /advice    the settings of fpmguard advise, as JSON
  /slowlog   a worker's newest slowlog entry (?pool=P&pid=N)
  /stack     a worker's PHP stack, read now (?pool=P&pid=N)
  /kill      POST: kill a worker by hand; off unless --web.enable-kill

SIGHUP reads the flags, --config and php-fpm's configs again.`
	runHelp = `Run php-fpm as a child, the container entrypoint: fpmguard run [flags] -- php-fpm8.2 -F -y CONF. It restarts php-fpm when it dies, and does all serve does.

SIGTERM, SIGINT and SIGQUIT stop php-fpm gracefully (SIGQUIT, then SIGTERM after --stop-timeout); SIGUSR1 and SIGUSR2 go to php-fpm; SIGHUP reads fpmguard's flags again. A config fpmguard's parser refuses stops run at once, exit status 78, before php-fpm starts.`
)

func newApp(c *cli) *kingpin.Application {
	app := kingpin.New("fpmguard", "Supervisor, prober and exporter for php-fpm and its opcache.")
	// --version, and the version in the man page's title line.
	app.Version(version)
	app.HelpFlag.Short('h')
	app.UsageTemplate(usageTemplate).UsageFuncs(usageFuncs)
	probe := append(slices.Clone(targetFlags), "hung-after", "show-query")

	status := app.Command("status", statusHelp)
	c.commonFlags(status, probe...)
	opcacheFlag(status, &c.opcache)
	outputFlag(status, &c.output, "table", "json")
	declare(status, "color", "Colour the table: auto (on a terminal, without NO_COLOR), always or never.",
		&enumValue{name: "color", to: &c.color, options: []string{"auto", "always", "never"}}).Default("auto")

	check := app.Command("check", checkHelp)
	c.commonFlags(check, probe...)
	opcacheFlag(check, &c.opcache)
	addCheckFlags(check, &c.check)

	oc := app.Command("opcache", "Read, reset or invalidate the opcache inside php-fpm, once per master.")
	ocStatus := oc.Command("status", "Show each master's opcache and its verdict.")
	c.commonFlags(ocStatus, targetFlags...)
	outputFlag(ocStatus, &c.output, "table", "json")
	c.commonFlags(oc.Command("reset", "Run opcache_reset() inside php-fpm, and wait for the restart to happen."), targetFlags...)
	inv := oc.Command("invalidate", "Run opcache_invalidate(PATH, true) inside php-fpm for each path, for deploy scripts.")
	c.commonFlags(inv, targetFlags...)
	inv.Arg("path", "Absolute paths of scripts, as php-fpm sees them.").SetValue(&textValue{name: "<path>", list: &c.invalidatePaths, check: absolutePath("/var/www/app/index.php")})
	declare(inv, "glob", "Also every file matching this glob, expanded by PHP inside php-fpm, e.g. '/var/www/app/src/*.php'.",
		&textValue{name: "glob", to: &c.invalidateGlob, check: absolutePath("/var/www/app/src/*.php")}).PlaceHolder("GLOB")

	topCmd := app.Command("top", "A live full-screen view of every pool and worker, with a kill key; --from reads a running serve.")
	c.commonFlags(topCmd, probe...)
	opcacheFlag(topCmd, &c.opcache)
	addTopFlags(topCmd, &c.top)

	adviseCmd := app.Command("advise", "Settings for each pool and opcache, computed from what fpmguard measures: sampled for --duration, or --from a running serve's history.")
	c.commonFlags(adviseCmd, targetFlags...)
	opcacheFlag(adviseCmd, &c.opcache)
	addAdviseFlags(adviseCmd, &c.advise)

	all := append(slices.Clone(probe), "log.level", "log.format")
	serve := app.Command("serve", serveHelp)
	c.commonFlags(serve, all...)
	opcacheFlag(serve, &c.opcache)
	addWatchFlags(serve, &c.serve)
	run := app.Command("run", runHelp)
	// run watches the php-fpm it starts: nothing to discover.
	c.commonFlags(run, slices.DeleteFunc(slices.Clone(all), func(f string) bool { return f == "discover-config" })...)
	opcacheFlag(run, &c.opcache)
	addWatchFlags(run, &c.run)
	declare(run, "stop-timeout", "On SIGTERM: time php-fpm gets after SIGQUIT to finish its requests, before SIGTERM.",
		&durationValue{name: "stop-timeout", to: &c.stopTimeout, eg: "10s"}).Default("10s")
	run.Arg("command", "php-fpm's command line, after --: php-fpm8.2 -F -y CONF.").Required().StringsVar(&c.runArgv)

	app.Command("version", "Print the version.")
	return app
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	promversion.Version = version
	var c cli
	app := newApp(&c)
	app.UsageWriter(helpWriter{stdout}).ErrorWriter(helpWriter{stderr})
	cmd, err, done := parseOrHelp(app, &c, args)
	if done { // --help, --help-man, --version or completion printed its text
		return 0
	}
	if err == nil {
		err = c.validate(cmd)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		if cmd == "check" || (cmd == "" && commandOf(app, args) == "check") {
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
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "status":
		return cmdStatus(ctx, &c, stdout, stderr)
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

// helpDone is how kingpin's --help and --version end parsing: they call
// the application's terminate function, which must not return (kingpin
// would go on, and print the usage again after --version).
type helpDone struct{}

// parseOrHelp parses args; done reports that --help or --version printed
// what was asked, and nothing else is to be done.
func parseOrHelp(app *kingpin.Application, c *cli, args []string) (cmd string, err error, done bool) {
	app.Terminate(func(int) { panic(helpDone{}) })
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(helpDone); !ok {
				panic(r)
			}
			done = true
		}
	}()
	cmd, err = parseArgs(app, c, args)
	return cmd, err, false
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
		Diagnoser:  supervisor.NewDiagnoser(c.trust()),
	}
	if c.opcache {
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

func cmdStatus(ctx context.Context, c *cli, stdout, stderr io.Writer) int {
	_, rep, err := probeOnce(ctx, c)
	if rep == nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: some pools were not found: %s\n", errLine(err))
	}
	if c.output == "json" {
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "fpmguard: error: writing JSON: %v\n", err)
			return 1
		}
	} else {
		writeTable(stdout, rep, useColor(c.color, stdout))
	}
	return statusCode(rep)
}

// Exit statuses of status, as systemctl status gives 3 for a unit that is
// not running: a script can tell "a pool is failing" from "fpmguard could
// not look" (1) and from a bad flag (2).
const (
	statusServing = 0 // every pool OK or DEGRADED: nginx's requests are served
	statusFailing = 3 // a pool or an opcache UNHEALTHY or DOWN
)

// statusCode is status's exit status for rep.
func statusCode(rep *supervisor.Report) int {
	failing := func(h supervisor.Health) bool { return h == supervisor.HealthUnhealthy || h == supervisor.HealthDown }
	for _, p := range rep.Pools {
		if failing(p.Health) {
			return statusFailing
		}
	}
	for _, o := range rep.Opcache {
		if failing(o.Health) {
			return statusFailing
		}
	}
	return statusServing
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
	for _, line := range unreachableQueue(rep, c.check) {
		fmt.Fprintln(stderr, "fpmguard: "+safe(line))
	}
	return res.Code
}

// unreachableQueue names the queue thresholds that can never fire for a
// pool: its listen backlog holds fewer requests (nginx gets EAGAIN, a 502,
// beyond it). Only a probe tells the backlog, hence a warning, not an
// error.
func unreachableQueue(rep *supervisor.Report, th supervisor.CheckThresholds) []string {
	var out []string
	for _, p := range rep.Pools {
		q := p.SocketQueue
		if q == nil || q.Max <= 0 {
			continue
		}
		for _, t := range []struct {
			name  string
			limit int64
		}{{"warning-queue", th.WarnQueue}, {"critical-queue", th.CritQueue}} {
			if t.limit > q.Max {
				out = append(out, fmt.Sprintf("--%s %d can never fire for pool %s: its listen backlog holds %d requests (listen.backlog), and nginx answers 502 beyond it; use a value up to %d", t.name, t.limit, p.Name, q.Max, q.Max))
			}
		}
	}
	return out
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
	c.opcache = true
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
	c.opcache = true
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
	return supervisor.Trust{MasterUsers: c.masterUsers, Configs: c.discoverConfigs}
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
	return targets, explainTargets(c, err)
}

// explainTargets names the flag at fault in an error of finding pools, or
// says what to do.
func explainTargets(c *cli, err error) error {
	if err == nil {
		return nil
	}
	var se *supervisor.SourceError
	switch {
	case errors.As(err, &se) && se.Source == supervisor.SourcePoolSpec:
		err = fmt.Errorf("--pool %q: %w", se.Value, se.Err)
	case errors.As(err, &se) && slices.Contains(c.runConfig(), se.Value):
		err = fmt.Errorf("php-fpm's config %q (run's -y): %w", se.Value, se.Err)
	case errors.As(err, &se):
		err = fmt.Errorf("--fpm-config %q: %w", se.Value, se.Err)
	case errors.Is(err, supervisor.ErrNoMaster) && len(c.discoverConfigs) > 0:
		err = fmt.Errorf("%w whose config matches --discover-config %s: check the pattern against the master names fpmguard status shows without it", err, strings.Join(c.discoverConfigs, ", "))
	case errors.Is(err, supervisor.ErrNoMaster):
		err = fmt.Errorf("%w: start php-fpm, or name pools with --pool or --fpm-config", err)
	case errors.Is(err, supervisor.ErrTitleCut):
		err = fmt.Errorf("%w: pass --fpm-config PATH", err)
	}
	if errors.Is(err, supervisor.ErrUntrustedUser) {
		err = fmt.Errorf("%w; if php-fpm itself runs as that user (not only its pools), name the user with --fpm-master-user", err)
	}
	return err
}
