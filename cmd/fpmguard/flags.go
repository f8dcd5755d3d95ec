package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/advise"
	"github.com/fpmguard/fpmguard/opcache"
	"github.com/fpmguard/fpmguard/supervisor"
)

// fpmguard parses every flag value itself, with the value types below, so
// that a bad value gets one line naming the flag, the value and a fix,
// and the same line in every command that takes the flag: --timeout "2"
// reads the same under status, check, top, advise, serve and run. The
// types check what one value can say (a unit, a range, a path that must
// exist); cli.validate checks what flags say together (a warning
// threshold above its critical one, a latency the timeout cuts short).
// Values from --config go through the same types.

// badFlag is a flag value fpmguard refuses.
type badFlag struct {
	name  string // without the dashes; an argument's in <>
	value string
	fix   string // what to write instead, or what is wrong and how to mend it
}

func (e *badFlag) Error() string {
	if strings.HasPrefix(e.name, "<") { // an argument, e.g. <path>
		return fmt.Sprintf("%s %q: %s", e.name, e.value, e.fix)
	}
	return fmt.Sprintf("--%s %q: %s", e.name, e.value, e.fix)
}

// flagger is where a flag is declared: the application or a command.
type flagger interface {
	Flag(name, help string) *kingpin.FlagClause
}

// declare declares flag name on cmd with value v.
func declare(cmd flagger, name, help string, v kingpin.Value) *kingpin.FlagClause {
	f := cmd.Flag(name, help)
	f.SetValue(v)
	return f
}

// durationValue is a duration with a unit, never negative.
type durationValue struct {
	name string
	to   *time.Duration
	min  time.Duration // the shortest value that is not 0
	off  bool          // 0 turns the feature off; else 0 is refused
	eg   string        // an example of a good value
}

func (v *durationValue) Set(s string) error {
	bad := func(format string, args ...any) error {
		return &badFlag{v.name, s, fmt.Sprintf(format, args...)}
	}
	t := strings.TrimSpace(s)
	d, err := time.ParseDuration(t)
	if err != nil {
		n, nerr := strconv.ParseFloat(t, 64)
		switch {
		case nerr == nil && n < 0:
			return bad("must not be negative%s; e.g. %s", v.offHint(), v.eg)
		case nerr == nil:
			return bad("add a unit, e.g. %ss", t)
		}
		return bad("not a duration; write e.g. %s (units ms, s, m, h)", v.eg)
	}
	switch {
	case d < 0:
		return bad("must not be negative%s; e.g. %s", v.offHint(), v.eg)
	case d == 0 && v.off:
	case d == 0:
		return bad("must be above 0, e.g. %s", v.eg)
	case d < v.min:
		return bad("is too short: at least %s, e.g. %s", v.min, v.eg)
	}
	*v.to = d
	return nil
}

func (v *durationValue) offHint() string {
	if v.off {
		return " (0 turns it off)"
	}
	return ""
}

func (v *durationValue) String() string { return v.to.String() }

// intValue is a whole number within bounds.
type intValue[T int | int64] struct {
	name     string
	to       *T
	min, max T
	zeroOK   bool   // 0 is allowed below min: it means "the default"
	what     string // what the number counts, for the fix
	eg       string
}

func (v *intValue[T]) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	switch {
	case err != nil:
		return &badFlag{v.name, s, fmt.Sprintf("not a whole number of %s; e.g. %s", v.what, v.eg)}
	case n == 0 && v.zeroOK:
	case n < int64(v.min):
		return &badFlag{v.name, s, fmt.Sprintf("must be at least %d %s; e.g. %s", v.min, v.what, v.eg)}
	case v.max > 0 && n > int64(v.max):
		return &badFlag{v.name, s, fmt.Sprintf("must be at most %d %s; e.g. %s", v.max, v.what, v.eg)}
	}
	*v.to = T(n)
	return nil
}

func (v *intValue[T]) String() string { return strconv.FormatInt(int64(*v.to), 10) }

// shareValue is a share from 0 to 1, of a pool's workers.
type shareValue struct {
	name string
	to   *float64
	off  bool   // 0 turns the feature off; else 0 is refused
	over string // why a share above 1 is wrong, for the fix
}

func (v *shareValue) Set(s string) error {
	t := strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(t, "%"); ok {
		if f, err := strconv.ParseFloat(pct, 64); err == nil && f > 0 && f <= 100 {
			return &badFlag{v.name, s, fmt.Sprintf("a share from 0 to 1, not a percentage: write %g", f/100)}
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return &badFlag{v.name, s, "not a number; write a share of the workers from 0 to 1, e.g. 0.8"}
	case f < 0:
		return &badFlag{v.name, s, "must not be negative; write a share of the workers from 0 to 1, e.g. 0.8"}
	case f == 0 && !v.off:
		return &badFlag{v.name, s, "must be above 0; write a share of the workers up to 1, e.g. 0.5"}
	case f >= 10 && f <= 100:
		return &badFlag{v.name, s, fmt.Sprintf("a share of the workers goes from 0 to 1: for %g%% write %g; %s", f, f/100, v.over)}
	case f > 1:
		return &badFlag{v.name, s, "a share of the workers goes from 0 to 1, e.g. 0.8; " + v.over}
	}
	*v.to = f
	return nil
}

func (v *shareValue) String() string { return strconv.FormatFloat(*v.to, 'g', -1, 64) }

// enumValue is one word of a list.
type enumValue struct {
	name    string
	to      *string
	options []string
}

func (v *enumValue) Set(s string) error {
	if !slices.Contains(v.options, s) {
		return &badFlag{v.name, s, "use " + orList(v.options)}
	}
	*v.to = s
	return nil
}

func (v *enumValue) String() string { return *v.to }

// orList is "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// boolValue is a switch: --NAME, --no-NAME, or --NAME=true|false.
type boolValue struct {
	name string
	to   *bool
}

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return &badFlag{v.name, s, fmt.Sprintf("a switch: write --%s or --no-%s", v.name, v.name)}
	}
	*v.to = b
	return nil
}

func (v *boolValue) String() string   { return strconv.FormatBool(*v.to) }
func (v *boolValue) IsBoolFlag() bool { return true }

// textValue is a string, or a list of them for a repeatable flag, that
// check turns into the value kept, or refuses with a fix.
type textValue struct {
	name  string
	to    *string   // one value
	list  *[]string // or a repeatable flag
	check func(s string) (string, error)
}

func (v *textValue) Set(s string) error {
	if v.check != nil {
		kept, err := v.check(s)
		if err != nil {
			return &badFlag{v.name, s, err.Error()}
		}
		s = kept
	}
	if v.list != nil {
		*v.list = append(*v.list, s)
		return nil
	}
	*v.to = s
	return nil
}

func (v *textValue) String() string {
	if v.list != nil {
		return strings.Join(*v.list, ",")
	}
	return *v.to
}

// IsCumulative makes a list a repeatable flag.
func (v *textValue) IsCumulative() bool { return v.list != nil }

// namedValue is a value of a type of its own whose errors do not name
// the flag: it names it.
type namedValue struct {
	name string
	kingpin.Value
}

func (v *namedValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		return &badFlag{v.name, s, err.Error()}
	}
	return nil
}

// IsCumulative passes on the value's own: repeatable or not.
func (v *namedValue) IsCumulative() bool {
	r, ok := v.Value.(interface{ IsCumulative() bool })
	return ok && r.IsCumulative()
}

// The checks of textValue flags.

// poolSpec is a --pool value, read as it will be used.
func poolSpec(s string) (string, error) {
	if _, err := supervisor.ParsePoolSpec(s); err != nil {
		if se := (*supervisor.SourceError)(nil); errors.As(err, &se) {
			return "", se.Err
		}
		return "", err
	}
	return s, nil
}

// existingFile is a file that must be there when fpmguard starts.
func existingFile(example string) func(string) (string, error) {
	return func(s string) (string, error) {
		st, err := os.Stat(s)
		switch {
		case os.IsNotExist(err):
			return "", fmt.Errorf("no such file; e.g. %s", example)
		case err != nil:
			return "", fmt.Errorf("cannot be read: %v", unwrapPath(err))
		case st.IsDir():
			return "", fmt.Errorf("is a directory: name a file in it, e.g. %s", example)
		}
		return s, nil
	}
}

// unwrapPath is err without the path it repeats: the flag names it.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// nginxLog is an nginx error log: its directory must exist, and the file
// too unless nginx is yet to create it (a sidecar may start first).
func nginxLog(s string) (string, error) {
	if !filepath.IsAbs(s) {
		return "", fmt.Errorf("give the absolute path nginx's error_log names, e.g. /var/log/nginx/error.log")
	}
	dir := filepath.Dir(s)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("directory %s does not exist: give the path of nginx's error_log, e.g. /var/log/nginx/error.log", dir)
	}
	if st, err := os.Stat(s); err == nil && !st.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file: give the path of nginx's error_log, e.g. /var/log/nginx/error.log")
	}
	return s, nil
}

// absolutePath is a path as php-fpm sees it: absolute.
func absolutePath(example string) func(string) (string, error) {
	return func(s string) (string, error) {
		if !filepath.IsAbs(s) {
			return "", fmt.Errorf("must be an absolute path, e.g. %s", example)
		}
		return filepath.Clean(s), nil
	}
}

// configPattern is a pattern of the masters' names discovery keeps: an
// absolute path, with the wildcards of path.Match.
func configPattern(s string) (string, error) {
	const eg = "/etc/php/8.*/fpm/php-fpm.conf"
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("must be an absolute path or pattern, e.g. %s", eg)
	}
	if _, err := path.Match(s, ""); err != nil {
		return "", fmt.Errorf("not a valid pattern (an unclosed [, or a backslash at its end); write e.g. %s", eg)
	}
	return s, nil
}

// fromAddress is where a running serve answers: a URL, or HOST:PORT.
// HOST:PORT is read as http://HOST:PORT, and a bare host as its port
// 9253.
func fromAddress(s string) (string, error) {
	fix := fmt.Errorf("give HOST:PORT or http://HOST:PORT of a running fpmguard serve, e.g. 127.0.0.1:9253")
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		host := raw
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			host = raw[i+1:]
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			raw += ":9253"
		}
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fix
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fix
		}
	}
	return u.String(), nil
}

// size is a memory size, e.g. 2G.
func size(s string) (string, error) {
	if _, err := advise.ParseSize(s); err != nil {
		return "", fmt.Errorf("a size in bytes with an optional K, M, G or T, e.g. 2G")
	}
	return s, nil
}

// allowedHost is a host name without port or wildcard.
func allowedHost(s string) (string, error) {
	name := strings.TrimPrefix(s, ".")
	if name == "" || strings.ContainsAny(name, ":/*[] \t") {
		return "", fmt.Errorf("give a host name without port or wildcard, e.g. fpm.example.com, or .example.com for the domain and every name below it")
	}
	return s, nil
}

// telemetryPath is an HTTP path.
func telemetryPath(s string) (string, error) {
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?# ") {
		return "", fmt.Errorf("an HTTP path starting with /, e.g. /metrics")
	}
	return s, nil
}

// The flags several commands take, one function each: a flag reads, is
// checked and is documented the same in every command.

// commonFlags were global flags before each command took only its own.
// Every command but version still accepts them all, so that scripts
// written then keep working; a command shows in its help only those it
// uses.
func (c *cli) commonFlags(cmd *kingpin.CmdClause, uses ...string) {
	flags := []*kingpin.FlagClause{
		declare(cmd, "config", "YAML file holding flags by their long names (timeout: 2s); a flag on the command line wins over the file.",
			&textValue{name: "config", to: &c.config, check: existingFile("/etc/fpmguard.yaml")}).PlaceHolder("FILE"),
		declare(cmd, "pool", "A pool to watch, by its socket: ADDR[,name=N,pm.status_path=/status,pm.status_listen=ADDR,ping.path=/ping,ping.response=pong,pid=FILE,pm=static,pm.max_children=N]. Repeatable; adds to --fpm-config.",
			&textValue{name: "pool", list: &c.pools, check: poolSpec}).PlaceHolder("SPEC"),
		declare(cmd, "fpm-config", "Watch every pool of this php-fpm config, e.g. /etc/php/8.2/fpm/php-fpm.conf. Repeatable. Without --pool or --fpm-config, fpmguard watches every php-fpm master it finds running.",
			&textValue{name: "fpm-config", list: &c.fpmConfigs, check: existingFile("/etc/php/8.2/fpm/php-fpm.conf")}).PlaceHolder("PATH"),
		declare(cmd, "fpm-master-user", "Also act for php-fpm masters running as this user (name or uid), as in a container where php-fpm runs as a user of its own. By default only masters of root and of fpmguard's own user are watched; any other process with a master's title is skipped, since a pool's PHP code could start it. Repeatable.",
			&namedValue{name: "fpm-master-user", Value: &c.masterUsers}).PlaceHolder("USER"),
		declare(cmd, "discover-config", "Without --pool or --fpm-config, watch only the masters whose name, as status shows it, matches this pattern (* stays within one path element), e.g. /etc/php/8.*/fpm/php-fpm.conf; a master in a root of its own is named by the root's path, //, and its config: /srv/app//etc/php-fpm.conf. Other masters are left alone. Repeatable.",
			&textValue{name: "discover-config", list: &c.discoverConfigs, check: configPattern}).PlaceHolder("GLOB"),
		declare(cmd, "timeout", "Bound on each FastCGI request to php-fpm: a hung pool never hangs fpmguard.",
			&durationValue{name: "timeout", to: &c.timeout, eg: "2s"}).Default("2s"),
		declare(cmd, "hung-after", "A request older than this makes its worker hung.",
			&durationValue{name: "hung-after", to: &c.hungAfter, eg: "30s"}).Default(supervisor.DefaultHungAfter.String()),
		declare(cmd, "show-query", "Keep query strings in request URIs (they may hold tokens and session ids).",
			&boolValue{name: "show-query", to: &c.showQuery}),
		declare(cmd, "opcache-script", "The opcache status script's path as php-fpm sees it, placed by you (examples/php/fpmguard-opcache.php); fpmguard checks its content before each use. Default: fpmguard installs its own copy into --opcache-dir. Reset and invalidate always write into --opcache-dir.",
			&textValue{name: "opcache-script", to: &c.opcacheScript, check: absolutePath("/var/www/fpmguard-opcache.php")}).PlaceHolder("PATH"),
		declare(cmd, "opcache-dir", "Directory, as php-fpm sees it (inside its container's root and chroot), where fpmguard installs its opcache status script and writes the script of each reset or invalidate for that call alone. Every directory on its path must belong to root or fpmguard's user and be writable by nobody else; no link is followed.",
			&textValue{name: "opcache-dir", to: &c.opcacheDir, check: absolutePath(opcache.DefaultDir)}).Default(opcache.DefaultDir),
		declare(cmd, "log.level", "Log level: debug, info, warn or error.",
			&enumValue{name: "log.level", to: &c.logLevel, options: []string{"debug", "info", "warn", "error"}}).Default("info"),
		declare(cmd, "log.format", "Log format: logfmt or json.",
			&enumValue{name: "log.format", to: &c.logFormat, options: []string{"logfmt", "json"}}).Default("logfmt"),
	}
	for _, f := range flags {
		if !slices.Contains(uses, f.Model().Name) {
			f.Hidden()
		}
	}
}

// targetFlags are the common flags of the commands that probe pools once.
var targetFlags = []string{"config", "pool", "fpm-config", "fpm-master-user", "discover-config", "timeout", "opcache-script", "opcache-dir"}

func opcacheFlag(cmd flagger, to *bool) {
	declare(cmd, "opcache", "Read the opcache of each master (--no-opcache: do not).", &boolValue{name: "opcache", to: to}).Default("true")
}

func outputFlag(cmd flagger, to *string, options ...string) {
	declare(cmd, "output", "Output format: "+orList(options)+".", &enumValue{name: "output", to: to, options: options}).Short('o').Default(options[0])
}

func intervalFlag(cmd flagger, to *time.Duration, help string) {
	declare(cmd, "interval", help, &durationValue{name: "interval", to: to, min: 10 * time.Millisecond, eg: "1s"}).Default("1s")
}

func fromFlag(cmd flagger, to *string, help string) {
	declare(cmd, "from", help+" HOST:PORT or http://HOST:PORT (user@ for basic auth, with the password in FPMGUARD_PASSWORD to keep it out of the process list).",
		&textValue{name: "from", to: to, check: fromAddress}).PlaceHolder("ADDR")
}

func nginxLogFlag(cmd flagger, to *[]string, help string) {
	declare(cmd, "nginx-error-log", help+" Repeatable.", &textValue{name: "nginx-error-log", list: to, check: nginxLog}).PlaceHolder("PATH")
}

func addCheckFlags(cmd flagger, th *supervisor.CheckThresholds) {
	latency := func(name, level string, to *time.Duration) {
		declare(cmd, name, level+" when a heartbeat takes this long, below --timeout (0: off).",
			&durationValue{name: name, to: to, off: true, eg: "100ms"}).Default("0")
	}
	queue := func(name, level string, to *int64) {
		declare(cmd, name, level+" when this many requests wait in the listen queue (0: off).",
			&intValue[int64]{name: name, to: to, what: "requests", eg: "10"}).Default("0")
	}
	busy := func(name, level string, to *float64) {
		declare(cmd, name, level+" when this share of the workers is busy, from 0 to 1, e.g. 0.9 (0: off).",
			&shareValue{name: name, to: to, off: true, over: "above 1 it would never fire"}).Default("0")
	}
	latency("warning-latency", "WARNING", &th.WarnLatency)
	latency("critical-latency", "CRITICAL", &th.CritLatency)
	queue("warning-queue", "WARNING", &th.WarnQueue)
	queue("critical-queue", "CRITICAL", &th.CritQueue)
	busy("warning-busy", "WARNING", &th.WarnBusy)
	busy("critical-busy", "CRITICAL", &th.CritBusy)
}

// validate checks what the flags of cmd say together, once each has been
// read: each flag's own value was checked as it was read.
func (c *cli) validate(cmd string) error {
	switch cmd {
	case "check":
		th := c.check
		for _, p := range []struct {
			name         string
			warn, crit   float64
			warnS, critS string
		}{
			{"latency", th.WarnLatency.Seconds(), th.CritLatency.Seconds(), th.WarnLatency.String(), th.CritLatency.String()},
			{"queue", float64(th.WarnQueue), float64(th.CritQueue), fmt.Sprint(th.WarnQueue), fmt.Sprint(th.CritQueue)},
			{"busy", th.WarnBusy, th.CritBusy, fmt.Sprint(th.WarnBusy), fmt.Sprint(th.CritBusy)},
		} {
			if p.warn > 0 && p.crit > 0 && p.warn > p.crit {
				return &badFlag{"warning-" + p.name, p.warnS, fmt.Sprintf("above --critical-%s %s: WARNING must come first; lower it, or raise --critical-%s", p.name, p.critS, p.name)}
			}
		}
		for _, l := range []struct {
			name string
			d    time.Duration
		}{{"warning-latency", th.WarnLatency}, {"critical-latency", th.CritLatency}} {
			if l.d > 0 && l.d >= c.timeout {
				return &badFlag{l.name, l.d.String(), fmt.Sprintf("can never fire: a heartbeat is cut at --timeout %s, and then fails (CRITICAL); use a value below it, or raise --timeout", c.timeout)}
			}
		}
	case "advise":
		f := c.advise
		if f.from == "" && f.interval >= f.duration {
			return &badFlag{"interval", f.interval.String(), fmt.Sprintf("sample more than once within --duration %s: use an interval below it, e.g. --duration 60s --interval 1s", f.duration)}
		}
	case "opcache invalidate":
		if len(c.invalidatePaths) == 0 && c.invalidateGlob == "" {
			return errors.New("opcache invalidate needs paths or --glob, e.g. fpmguard opcache invalidate /var/www/app/index.php")
		}
	case "serve", "run":
		if err := c.watchFlags(cmd).validate(); err != nil {
			return err
		}
	}
	if len(c.discoverConfigs) > 0 && (len(c.pools) > 0 || len(c.fpmConfigs) > 0 || cmd == "run") {
		return &badFlag{"discover-config", c.discoverConfigs[0], "narrows discovery, which --pool, --fpm-config and run's own php-fpm leave out: drop it, or drop those"}
	}
	return nil
}
