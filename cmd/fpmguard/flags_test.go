package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/supervisor"
)

// commandsOf lists every command that takes flag name, hidden or not.
func commandsOf(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	var walk func(cmds []*kingpin.CmdModel)
	walk = func(cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			if len(c.Commands) > 0 {
				walk(c.Commands)
				continue
			}
			if slices.ContainsFunc(c.Flags, func(f *kingpin.FlagModel) bool { return f.Name == name }) {
				out = append(out, c.FullCommand)
			}
		}
	}
	var c cli
	walk(newApp(&c).Model().Commands)
	if len(out) == 0 {
		t.Fatalf("no command takes --%s", name)
	}
	return out
}

// withCommand is the command line of cmd with args: run needs php-fpm's
// command line after its flags.
func withCommand(cmd string, args ...string) []string {
	out := append(strings.Fields(cmd), args...)
	if cmd == "run" {
		out = append(out, "--", "php-fpm8.2", "-F", "-y", "/nonexistent/php-fpm.conf")
	}
	if cmd == "opcache invalidate" {
		out = append(out, "/var/www/index.php")
	}
	return out
}

// TestEveryBadFlagIsOneLine runs every command that takes a flag with bad
// values of it: each is refused before anything runs, with one line that
// names the flag, the value and a fix, and exit 2 (3, UNKNOWN, for check).
// The flags go after the command, and before it as they could when they
// were global, and in the form kingpin reads as another flag
// (--hung-after -5s).
func TestEveryBadFlagIsOneLine(t *testing.T) {
	tests := []struct {
		flag, value, want string
	}{
		{"timeout", "2", `--timeout "2": add a unit, e.g. 2s`},
		{"timeout", "0", `--timeout "0": must be above 0`},
		{"timeout", "-1s", `--timeout "-1s": must not be negative`},
		{"timeout", "soon", `--timeout "soon": not a duration`},
		{"hung-after", "-5s", `--hung-after "-5s": must not be negative`},
		{"hung-after", "0s", `--hung-after "0s": must be above 0`},
		{"interval", "0s", `--interval "0s": must be above 0`},
		{"interval", "5ms", `--interval "5ms": is too short: at least 10ms`},
		{"interval", "1", `--interval "1": add a unit, e.g. 1s`},
		{"duration", "5", `--duration "5": add a unit, e.g. 5s`},
		{"duration", "500ms", `--duration "500ms": is too short: at least 1s`},
		{"warning-busy", "50", `--warning-busy "50": a share of the workers goes from 0 to 1: for 50% write 0.5; above 1 it would never fire`},
		{"warning-busy", "-3", `--warning-busy "-3": must not be negative`},
		{"warning-busy", "80%", `--warning-busy "80%": a share from 0 to 1, not a percentage: write 0.8`},
		{"critical-busy", "1.5", `--critical-busy "1.5": a share of the workers goes from 0 to 1`},
		{"warning-queue", "x", `--warning-queue "x": not a whole number of requests`},
		{"critical-queue", "-1", `--critical-queue "-1": must be at least 0 requests`},
		{"warning-latency", "1", `--warning-latency "1": add a unit, e.g. 1s`},
		{"critical-latency", "-1ms", `--critical-latency "-1ms": must not be negative (0 turns it off)`},
		{"kill-hung-after", "-5s", `--kill-hung-after "-5s": must not be negative (0 turns it off)`},
		{"kill-hung-after", "60", `--kill-hung-after "60": add a unit, e.g. 60s`},
		{"kill-grace", "0", `--kill-grace "0": must be above 0`},
		{"max-kill-ratio", "0", `--max-kill-ratio "0": must be above 0`},
		{"max-kill-ratio", "2", `--max-kill-ratio "2": a share of the workers goes from 0 to 1`},
		{"unhealthy-after", "0", `--unhealthy-after "0": must be at least 1 failures`},
		{"action-budget", "0", `--action-budget "0": must be at least 1 actions`},
		{"action-budget-window", "10", `--action-budget-window "10": add a unit, e.g. 10s`},
		{"opcache-interval", "0", `--opcache-interval "0": must be above 0`},
		{"ready-max-queue", "-1", `--ready-max-queue "-1": must be at least 0`},
		{"stop-timeout", "0s", `--stop-timeout "0s": must be above 0`},
		{"from", "ftp://host:9253", `--from "ftp://host:9253": give HOST:PORT or http://HOST:PORT`},
		{"from", "127.0.0.1:99999", `--from "127.0.0.1:99999": give HOST:PORT`},
		{"width", "5", `--width "5": must be at least 40 columns`},
		{"memory", "lots", `--memory "lots": a size in bytes`},
		{"reserve", "-1M", `--reserve "-1M": a size in bytes`},
		{"output", "xml", `--output "xml": use `},
		{"color", "blue", `--color "blue": use auto, always or never`},
		{"log.level", "loud", `--log.level "loud": use debug, info, warn or error`},
		{"log.format", "xml", `--log.format "xml": use logfmt or json`},
		{"nginx-error-log", "/nonexistent/error.log", `--nginx-error-log "/nonexistent/error.log": directory /nonexistent does not exist`},
		{"nginx-error-log", "error.log", `--nginx-error-log "error.log": give the absolute path`},
		{"pool", "www.sock", `--pool "www.sock": bad FastCGI address`},
		{"fpm-config", "/nonexistent.conf", `--fpm-config "/nonexistent.conf": no such file`},
		{"discover-config", "php-fpm.conf", `--discover-config "php-fpm.conf": must be an absolute path or pattern, e.g. /etc/php/8.*/fpm/php-fpm.conf`},
		{"discover-config", "/etc/php/[8/fpm/php-fpm.conf", `--discover-config "/etc/php/[8/fpm/php-fpm.conf": not a valid pattern`},
		{"config", "/nonexistent.yaml", `--config "/nonexistent.yaml": no such file`},
		{"opcache-dir", "fpmguard", `--opcache-dir "fpmguard": must be an absolute path`},
		{"opcache-script", "o.php", `--opcache-script "o.php": must be an absolute path`},
		{"web.telemetry-path", "metrics", `--web.telemetry-path "metrics": an HTTP path starting with /`},
		{"web.allowed-host", "*", `--web.allowed-host "*": give a host name without port or wildcard`},
		{"web.listen-address", "9253", `--web.listen-address "9253": give HOST:PORT or :PORT`},
		{"web.config.file", "/nonexistent/web.yml", `--web.config.file "/nonexistent/web.yml": no such file`},
		{"opcache", "maybe", `--opcache "maybe": a switch: write --opcache or --no-opcache`},
		{"glob", "*.php", `--glob "*.php": must be an absolute path`},
	}
	for _, tt := range tests {
		for _, cmd := range commandsOf(t, tt.flag) {
			forms := [][]string{withCommand(cmd, "--"+tt.flag, tt.value), withCommand(cmd, "--"+tt.flag+"="+tt.value)}
			if !strings.HasPrefix(tt.flag, "web.") && tt.flag != "output" && cmd != "opcache invalidate" {
				// Before the command, as when the flag was global.
				forms = append(forms, append([]string{"--" + tt.flag, tt.value}, withCommand(cmd)...))
			}
			for _, args := range forms {
				if tt.flag == "opcache" && !strings.Contains(args[len(strings.Fields(cmd))], "=") {
					continue // a switch takes its value after =
				}
				code, stdout, stderr := runCLI(t, args...)
				wantCode := 2
				if cmd == "check" {
					wantCode = supervisor.CheckUnknown
					if !strings.HasPrefix(stdout, "FPMGUARD UNKNOWN - ") || !strings.Contains(stdout, tt.want) {
						t.Errorf("%q: stdout %q, want FPMGUARD UNKNOWN with %q", args, stdout, tt.want)
					}
				}
				if code != wantCode {
					t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, wantCode, stderr)
				}
				if lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n"); len(lines) != 1 || lines[0] != "fpmguard: error: "+strings.SplitN(lines[0], "error: ", 2)[1] || !strings.Contains(lines[0], tt.want) {
					t.Errorf("%q: stderr %q, want one line with %q", args, stderr, tt.want)
				}
			}
		}
	}
}

// TestFlagsTogether: what flags say together is checked once each was
// read, in the same words.
func TestFlagsTogether(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"check", "--warning-latency", "3s"}, 3, `--warning-latency "3s": can never fire: a heartbeat is cut at --timeout 2s`},
		{[]string{"check", "--critical-latency", "5s", "--timeout", "5s"}, 3, `--critical-latency "5s": can never fire`},
		{[]string{"check", "--warning-queue", "10", "--critical-queue", "5"}, 3, `--warning-queue "10": above --critical-queue 5: WARNING must come first`},
		{[]string{"check", "--warning-busy", "0.9", "--critical-busy", "0.5"}, 3, `--warning-busy "0.9": above --critical-busy 0.5`},
		{[]string{"advise", "--duration", "2s", "--interval", "5s"}, 2, `--interval "5s": sample more than once within --duration 2s`},
		{[]string{"opcache", "invalidate"}, 2, `opcache invalidate needs paths or --glob`},
		{[]string{"status", "--discover-config", "/etc/php/*/fpm/php-fpm.conf", "--pool", "/run/php/www.sock"}, 2, `--discover-config "/etc/php/*/fpm/php-fpm.conf": narrows discovery, which --pool, --fpm-config and run's own php-fpm leave out`},
		{[]string{"check", "--discover-config", "/etc/php/*/fpm/php-fpm.conf", "--fpm-config", "/etc/hostname"}, 3, `--discover-config "/etc/php/*/fpm/php-fpm.conf": narrows discovery`},
		{[]string{"serve", "--web.kill-from-loopback"}, 2, `--web.kill-from-loopback says who may kill over HTTP: it needs --web.enable-kill`},
		{[]string{"status", "--interval", "1s"}, 2, `--interval is not a flag of status: it is one of top, advise, serve or run`},
		{[]string{"version", "--timeout", "2s"}, 2, `--timeout is not a flag of version`},
		{[]string{"status", "--frobnicate"}, 2, `unknown flag --frobnicate; see fpmguard status --help`},
		{[]string{"check", "--frobnicate"}, 3, `unknown flag --frobnicate; see fpmguard check --help`},
		{[]string{"status", "--timeout"}, 2, `--timeout needs a value`},
		{[]string{"status", "--timeout", "1s", "--timeout", "2s"}, 2, `--timeout is given twice`},
		{[]string{"opcache"}, 2, `opcache needs a subcommand: status, reset or invalidate`},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run"}, 2, `run needs php-fpm's command line after --, e.g. fpmguard run -- php-fpm8.2 -F -y`},
		{[]string{"status", "extra"}, 2, `unexpected extra: status takes no such argument`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
		if lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "fpmguard: error: ") || !strings.Contains(lines[0], tt.want) {
			t.Errorf("%q: stderr %q, want one line with %q", tt.args, stderr, tt.want)
		}
		if tt.code == 3 && !strings.HasPrefix(stdout, "FPMGUARD UNKNOWN - ") {
			t.Errorf("%q: stdout %q, want FPMGUARD UNKNOWN", tt.args, stdout)
		}
	}
}

// TestGoodFlagValues: what the checks accept, and what they keep.
func TestGoodFlagValues(t *testing.T) {
	var c cli
	app := newApp(&c)
	dir := t.TempDir()
	conf := filepath.Join(dir, "php-fpm.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "--timeout", "1.5s", "--hung-after", "1m", "--warning-busy", "0.8", "--critical-busy", "1", "--warning-queue", "0",
		"--critical-latency", "1ns", "--fpm-config", conf, "--no-opcache", "--pool", "127.0.0.1:9000,name=api"}
	cmd, err := parseArgs(app, &c, args)
	if err == nil {
		err = c.validate(cmd)
	}
	if err != nil || cmd != "check" {
		t.Fatalf("%q: %q %v", args, cmd, err)
	}
	if c.timeout.String() != "1.5s" || c.hungAfter.String() != "1m0s" || c.check.WarnBusy != 0.8 || c.check.CritBusy != 1 || c.opcache ||
		!slices.Equal(c.fpmConfigs, []string{conf}) || len(c.pools) != 1 || c.check.CritLatency != 1 {
		t.Errorf("values kept: %+v", c)
	}

	// A switch's value after "=" is the switch's, never an argument: run
	// would take it for php-fpm's command.
	for _, args := range [][]string{{"status", "--opcache=false"}, {"status", "--no-opcache=true"}, {"run", "--opcache=false", "--", "php-fpm8.2", "-F"}} {
		var c cli
		c.opcache = true
		cmd, err := parseArgs(newApp(&c), &c, args)
		if err != nil || c.opcache || (cmd == "run" && !slices.Equal(c.runArgv, []string{"php-fpm8.2", "-F"})) {
			t.Errorf("%q: %v, opcache %v, run's command %q", args, err, c.opcache, c.runArgv)
		}
	}

	for in, want := range map[string]string{
		"127.0.0.1:19253":              "http://127.0.0.1:19253",
		"localhost:9253":               "http://localhost:9253",
		"[::1]:9253":                   "http://[::1]:9253",
		"fpm.example.com":              "http://fpm.example.com:9253",
		"admin@127.0.0.1:9253":         "http://admin@127.0.0.1:9253",
		"http://127.0.0.1:9253":        "http://127.0.0.1:9253",
		"https://fpm.example.com/fpm/": "https://fpm.example.com/fpm/",
	} {
		if got, err := fromAddress(in); err != nil || got != want {
			t.Errorf("--from %q = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://", "ftp://h:1", "h:0", "http://h:1/?q=1", "::1"} {
		if got, err := fromAddress(bad); err == nil {
			t.Errorf("--from %q = %q, want an error", bad, got)
		}
	}
}

// TestFlagsBeforeTheCommand: flags that were global are still read
// before the command, as scripts wrote them.
func TestFlagsBeforeTheCommand(t *testing.T) {
	var c cli
	app := newApp(&c)
	for _, tt := range []struct{ in, want []string }{
		{[]string{"--timeout", "2s", "status"}, []string{"status", "--timeout", "2s"}},
		{[]string{"--timeout=2s", "--show-query", "-o", "json", "status", "--pool", "x"}, []string{"status", "--timeout=2s", "--show-query", "-o", "json", "--pool", "x"}},
		{[]string{"--no-opcache", "opcache", "status", "-ojson"}, []string{"opcache", "status", "--no-opcache", "-ojson"}},
		{[]string{"--fpm-config", "/c", "run", "--", "php-fpm8.2"}, []string{"run", "--fpm-config", "/c", "--", "php-fpm8.2"}},
		{[]string{"--help", "status"}, []string{"--help", "status"}},
		{[]string{"status", "--timeout", "2s"}, []string{"status", "--timeout", "2s"}},
	} {
		if got := hoistFlags(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("hoistFlags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestConfigFileValuesAreChecked: a value from --config gets the flag's own
// check, and no-NAME keys turn a switch off as --no-NAME does.
func TestConfigFileValuesAreChecked(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.yaml", "timeout: 2\n")
	code, _, stderr := runCLI(t, "status", "--config", bad)
	if code != 2 || stderr != "fpmguard: error: config "+bad+": timeout \"2\": add a unit, e.g. 2s\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	var c cli
	good := write("good.yaml", "no-opcache: true\nno-process-metrics: true\ninterval: 2s\n")
	if _, err := parseArgs(newApp(&c), &c, []string{"serve", "--config", good}); err != nil || c.opcache || c.serve.processMetrics || c.serve.cfg.Interval.String() != "2s" {
		t.Errorf("serve --config: %v, opcache %v, process metrics %v, interval %s", err, c.opcache, c.serve.processMetrics, c.serve.cfg.Interval)
	}
}

// TestBadFlagNamesItself: the error type carries the flag, for callers
// that reword it (the config file).
func TestBadFlagNamesItself(t *testing.T) {
	v := &durationValue{name: "timeout", to: new(time.Duration), eg: "2s"}
	var bf *badFlag
	if err := v.Set("2"); !errors.As(err, &bf) || bf.name != "timeout" || bf.value != "2" || bf.fix != "add a unit, e.g. 2s" {
		t.Errorf("Set(2) = %v", err)
	}
}
