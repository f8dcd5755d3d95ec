package fpmconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// fixtureEnv is the environment the fixtures expect, for ${VAR}.
var fixtureEnv = map[string]string{
	"FPMCONF_TEST_API_PORT": "9100",
	"FPMCONF_X":             "1",
}

func getenv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func abs(t testing.TB, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func comparePools(t *testing.T, got, want []Pool) {
	t.Helper()
	if len(got) != len(want) {
		names := func(ps []Pool) (n []string) {
			for _, p := range ps {
				n = append(n, p.Name)
			}
			return n
		}
		t.Fatalf("pools %q, want %q", names(got), names(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, w := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
			for f := 0; f < g.NumField(); f++ {
				if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
					t.Errorf("pool %q %s = %#v, want %#v", want[i].Name, g.Type().Field(f).Name, g.Field(f).Interface(), w.Field(f).Interface())
				}
			}
		}
	}
}

func TestDebian82(t *testing.T) {
	root := abs(t, "testdata/debian-8.2")
	cfg, err := Load("/etc/php/8.2/fpm/php-fpm.conf", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"/etc/php/8.2/fpm/php-fpm.conf", "/etc/php/8.2/fpm/pool.d/www.conf"}
	if !reflect.DeepEqual(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	if cfg.Path != "/etc/php/8.2/fpm/php-fpm.conf" || cfg.PIDFile != "/run/php/php8.2-fpm.pid" || cfg.ErrorLog != "/var/log/php8.2-fpm.log" {
		t.Errorf("Path, PIDFile, ErrorLog = %q, %q, %q", cfg.Path, cfg.PIDFile, cfg.ErrorLog)
	}
	comparePools(t, cfg.Pools, []Pool{{
		Name:          "www",
		Listen:        "/run/php/php8.2-fpm.sock",
		ListenAddress: "unix://" + root + "/run/php/php8.2-fpm.sock",
		ListenOwner:   "www-data", ListenGroup: "www-data",
		User: "www-data", Group: "www-data",
		PM: "dynamic", MaxChildren: 5, StartServers: 2, MinSpareServers: 1, MaxSpareServers: 3,
		Line: 4, File: "/etc/php/8.2/fpm/pool.d/www.conf",
	}})
	if n := cfg.Pools[0].MinWorkers(); n != 1 {
		t.Errorf("MinWorkers = %d, want 1", n)
	}
}

// validFixture is a directory under testdata read with the prefix set to
// it, as php-fpm -p would.
type validFixture struct {
	dir   string
	files []string // read, relative to the prefix
	want  func(p string) Config
}

var validFixtures = []validFixture{{
	dir:   "multi",
	files: []string{"php-fpm.conf", "pools/10-app.conf", "pools/20-api.conf", "more/jail.conf", "more/tcp.conf", "more/zz-nested.conf", "more/deeper/reopen.conf"},
	want: func(p string) Config {
		return Config{PIDFile: p + "/run/php-fpm.pid", ErrorLog: p + "/fpm.log", Pools: []Pool{{
			Name: "app", Listen: p + "/sock/app.sock", ListenAddress: "unix://" + p + "/sock/app.sock",
			ListenOwner: "nobody", ListenGroup: "nogroup", ListenMode: "0660", User: "nobody", Group: "nogroup",
			PM: "dynamic", MaxChildren: 10, StartServers: 3, MinSpareServers: 2, MaxSpareServers: 4,
			StatusPath: "/status", PingPath: "/ping", PingResponse: "still alive ; ok",
			RequestTerminateTimeout: 5 * time.Minute, RequestSlowlogTimeout: 20 * time.Second, Slowlog: p + "/app.slow",
			Line: 2, File: p + "/pools/10-app.conf",
		}, {
			Name: "api", Listen: "9100", ListenAddress: "tcp://127.0.0.1:9100", User: "nobody", Group: "nogroup",
			PM: "static", MaxChildren: 4,
			StatusPath: "/", StatusListen: "127.0.0.1:9102", StatusListenAddress: "tcp://127.0.0.1:9102",
			PingPath: "/healthz", PingResponse: "pong", RequestTerminateTimeout: time.Hour,
			Line: 2, File: p + "/pools/20-api.conf",
		}, {
			Name: "jailed", Prefix: p + "/jail", Listen: p + "/jail/jailed.sock", ListenAddress: "unix://" + p + "/jail/jailed.sock",
			User: "nobody", Group: "nogroup", PM: "static", MaxChildren: 1, Chroot: p + "/jail", Chdir: "/srv",
			Line: 2, File: p + "/more/jail.conf",
		}, {
			Name: "any4", Listen: "0.0.0.0:9103", ListenAddress: "tcp://127.0.0.1:9103", User: "nobody", Group: "nogroup",
			PM: "ondemand", MaxChildren: 3, Line: 2, File: p + "/more/tcp.conf",
		}, {
			Name: "any6", Listen: "[::]:9104", ListenAddress: "tcp://[::1]:9104", User: "nobody", Group: "nogroup",
			PM: "static", MaxChildren: 1, RequestTerminateTimeout: 24 * time.Hour, Line: 11, File: p + "/more/tcp.conf",
		}, {
			Name: "local", Listen: "127.0.0.1:9105", ListenAddress: "tcp://127.0.0.1:9105", User: "nobody", Group: "nogroup",
			PM: "static", MaxChildren: 2, Line: 19, File: p + "/more/tcp.conf",
		}}}
	},
}, {
	dir:   "syntax",
	files: []string{"php-fpm.conf"},
	want: func(p string) Config {
		return Config{ErrorLog: p + "/fpm.log", Pools: []Pool{{
			Name: "one", Listen: p + "/with space/one.sock", ListenAddress: "unix://" + p + "/with space/one.sock",
			User: "nobody", Group: "nogroup", PM: "static", MaxChildren: 3,
			PingPath: "/ping", PingResponse: "pong ; not a comment", RequestTerminateTimeout: time.Minute,
			Line: 6, File: p + "/php-fpm.conf",
		}, {
			Name: "two", Listen: p + "/raw-two-${NOT_EXPANDED}.sock", ListenAddress: "unix://" + p + "/raw-two-${NOT_EXPANDED}.sock",
			User: "nobody", Group: "nogroup", PM: "dynamic", MaxChildren: 5, StartServers: 2, MinSpareServers: 1, MaxSpareServers: 3,
			RequestSlowlogTimeout: 2 * time.Second, Slowlog: p + "/two.slow",
			Line: 26, File: p + "/php-fpm.conf",
		}}}
	},
}}

func TestFixtures(t *testing.T) {
	for _, fx := range validFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			p := abs(t, filepath.Join("testdata", fx.dir))
			main := filepath.Join(p, "php-fpm.conf")
			cfg, err := Load(main, Options{Prefix: p, Getenv: getenv(fixtureEnv)})
			if err != nil {
				t.Fatal(err)
			}
			want := fx.want(p)
			var files []string
			for _, f := range fx.files {
				files = append(files, filepath.Join(p, f))
			}
			if !reflect.DeepEqual(cfg.Files, files) {
				t.Errorf("Files = %q, want %q", cfg.Files, files)
			}
			if cfg.Path != main || cfg.PIDFile != want.PIDFile || cfg.ErrorLog != want.ErrorLog {
				t.Errorf("Path, PIDFile, ErrorLog = %q, %q, %q; want %q, %q, %q", cfg.Path, cfg.PIDFile, cfg.ErrorLog, main, want.PIDFile, want.ErrorLog)
			}
			comparePools(t, cfg.Pools, want.Pools)
		})
	}
}

// conf is a one-pool config around extra lines for [www].
func conf(extra string) string {
	return "[global]\nerror_log = fpm.log\n[www]\nuser = nobody\ngroup = nogroup\nlisten = /run/php/www.sock\npm = static\npm.max_children = 1\nping.path = /ping\n" + extra + "\n"
}

// valueCases are values of ping.response: what PHP's INI syntax and
// php-fpm make of them. TestAgainstPHPFPM checks each with php-fpm -tt.
var valueCases = []struct {
	value string
	want  string // the value, if accepted
	err   string // part of the error, if refused
}{
	{value: `pong ; a comment`, want: "pong"},
	{value: `"pong ; quoted"`, want: "pong ; quoted"},
	{value: `'a${FPMCONF_X}b'`, want: "a${FPMCONF_X}b"},
	{value: `"a${FPMCONF_X}b"`, want: "a1b"},
	{value: `a${FPMCONF_X}b`, want: "a1b"},
	{value: `${FPMCONF_UNSET}x`, want: "x"},
	{value: `${ FPMCONF_X }`, want: "1"},
	{value: `"a" "b"`, want: "ab"},
	{value: `'a' 'b'`, want: "a b"},
	{value: `a  b   `, want: "a  b"},
	{value: `a"b"c`, want: "abc"},
	{value: `1|2`, want: "3"},
	{value: `(1 | 4) & 5`, want: "5"},
	{value: `1 | 2 & 4`, want: "0"}, // one precedence, left to right
	{value: `~0`, want: "-1"},
	{value: `!1`, want: "0"},
	{value: `On`, want: "1"},
	{value: `"On"`, want: "On"},
	{value: `nobody`, want: "nobody"},
	{value: `no-body`, want: "no-body"},
	{value: `$pool-x`, want: "www-x"},
	{value: `'$pool'`, want: "www"},
	{value: `"a\"b"`, want: `a"b`},
	{value: `"a\\b\n"`, want: `a\b\n`},
	{value: `"C:\dir\"`, want: `C:\dir\`},
	{value: `"\${FPMCONF_X}"`, want: "${FPMCONF_X}"},
	{value: `a$\"b`, want: `a$\"b`},
	{value: `$$`, want: "$$"},
	{value: `a # b`, want: "a # b"},
	{value: `a'b c`, want: "a"}, // a quote that opens nothing ends the line
	{value: `a'b'c`, want: "abc"},
	{value: `http://example.com/a?b`, want: "http://example.com/a?b"},
	{value: `pong!`, err: `'!' is an operator`},
	{value: `a=b`, err: `'=' in a value`},
	{value: `"pong`, err: `unterminated "`},
	{value: `${}`, err: `${ without a name`},
	{value: `${FPMCONF_X`, err: `${ without a name`},
	{value: `yes please`, err: `yes/no`},
	{value: `''`, err: `''`},
	{value: `(1`, err: `( without )`},
	{value: `1)`, err: `')'`},
	{value: `null`, err: `ping.response is empty`},
}

func TestValues(t *testing.T) {
	for _, c := range valueCases {
		cfg, err := Parse(strings.NewReader(conf("ping.response = "+c.value)), "v.conf", Options{Getenv: getenv(fixtureEnv)})
		switch {
		case c.err != "" && err == nil:
			t.Errorf("%s: got %q, want an error with %q", c.value, cfg.Pools[0].PingResponse, c.err)
		case c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("%s: error %q, want %q in it", c.value, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.value, err)
		case c.err == "" && cfg.Pools[0].PingResponse != c.want:
			t.Errorf("%s: got %q, want %q", c.value, cfg.Pools[0].PingResponse, c.want)
		}
	}
}

func TestListenForms(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct {
		listen, extra string
		opts          Options
		want, addr    string
	}{
		{listen: "9000", want: "9000", addr: "tcp://127.0.0.1:9000"},
		{listen: "0.0.0.0:9000", want: "0.0.0.0:9000", addr: "tcp://127.0.0.1:9000"},
		{listen: "[::]:9001", want: "[::]:9001", addr: "tcp://[::1]:9001"},
		{listen: "127.0.0.1:9002", want: "127.0.0.1:9002", addr: "tcp://127.0.0.1:9002"},
		{listen: "[::1]:9003", want: "[::1]:9003", addr: "tcp://[::1]:9003"},
		{listen: "::1:9004", want: "::1:9004", addr: "tcp://[::1]:9004"}, // the port follows the last colon
		{listen: "localhost:9005", want: "localhost:9005", addr: "tcp://localhost:9005"},
		{listen: "${FPMCONF_TEST_API_PORT}", opts: Options{Getenv: getenv(fixtureEnv)}, want: "9100", addr: "tcp://127.0.0.1:9100"},
		{listen: "/run/php/$pool.sock", want: "/run/php/www.sock", addr: "unix:///run/php/www.sock"},
		{listen: "www.sock", want: "/usr/www.sock", addr: "unix:///usr/www.sock"}, // Debian's PHP_PREFIX
		{listen: "www.sock", opts: Options{Prefix: "/srv/fpm"}, want: "/srv/fpm/www.sock", addr: "unix:///srv/fpm/www.sock"},
		{listen: "/run/php/www.sock", opts: Options{Root: root}, want: "/run/php/www.sock", addr: "unix://" + root + "/run/php/www.sock"},
		{listen: "s.sock", extra: "prefix = /srv/app", want: "/srv/app/s.sock", addr: "unix:///srv/app/s.sock"},
		{listen: "s.sock", extra: "prefix = app", opts: Options{Prefix: "/srv"}, want: "/srv/app/s.sock", addr: "unix:///srv/app/s.sock"},
		{listen: "s.sock", extra: "prefix =", want: "/s.sock", addr: "unix:///s.sock"}, // an empty prefix is still a prefix
	} {
		text := "[www]\nuser = nobody\nlisten = " + c.listen + "\npm = static\npm.max_children = 1\n" + c.extra + "\n"
		cfg, err := Parse(strings.NewReader(text), "l.conf", c.opts)
		if err != nil {
			t.Errorf("%q: %v", c.listen, err)
			continue
		}
		if p := cfg.Pools[0]; p.Listen != c.want || p.ListenAddress != c.addr {
			t.Errorf("%q: Listen, ListenAddress = %q, %q; want %q, %q", c.listen, p.Listen, p.ListenAddress, c.want, c.addr)
		}
	}
}

// TestQuirks covers what php-fpm does with lines as a whole.
func TestQuirks(t *testing.T) {
	pool := "user = nobody\r\nlisten = /a.sock\r\npm = static\r\npm.max_children = 1\r\n"
	listen := func(c *Config) string { return c.Pools[0].Listen }
	for _, c := range []struct {
		name, text string
		get        func(*Config) string
		want       string
	}{
		{"CRLF", "[www]\r\n" + pool, listen, "/a.sock"},
		{"CR separates statements", "[www]\ruser = nobody\rlisten = /b.sock\rpm = static\rpm.max_children = 1\n", listen, "/b.sock"},
		{"NUL ends the line", "[www]\nuser = nobody\nlisten = /c.sock\x00 garbage\npm = static\npm.max_children = 1\n", listen, "/c.sock"},
		{"byte order mark", "\xef\xbb\xbf[www]\n" + pool, func(c *Config) string { return c.Pools[0].Name }, "www"},
		{"$ at the end keeps the newline", "[www]\n" + pool + "ping.path = /p\nping.response = ok$\n", func(c *Config) string { return c.Pools[0].PingResponse }, "ok$\n"},
		{"directive after a header", "[www] listen = /d.sock\nuser = nobody\npm = static\npm.max_children = 1\n", listen, "/d.sock"},
		{"reopened without case", "[www]\n" + pool + "[WWW]\nlisten = /e.sock\n", func(c *Config) string { return c.Pools[0].Name + " " + c.Pools[0].Listen }, "www /e.sock"},
		{"before any section is global", "pid = run/x.pid\n[www]\n" + pool, func(c *Config) string { return c.PIDFile }, "/var/run/x.pid"},
		{"error_log default", "[www]\n" + pool, func(c *Config) string { return c.ErrorLog }, "/var/log/php-fpm.log"},
		{"error_log syslog", "error_log = Syslog\n[www]\n" + pool, func(c *Config) string { return c.ErrorLog }, "Syslog"},
		{"status_listen sets the status path", "[www]\n" + pool + "pm.status_listen = /s.sock\n", func(c *Config) string { return c.Pools[0].StatusPath + " " + c.Pools[0].StatusListenAddress }, "/ unix:///s.sock"},
		{"status_listen ignores the pool prefix", "[www]\n" + pool + "prefix = /srv\npm.status_listen = s.sock\n", func(c *Config) string { return c.Pools[0].StatusListenAddress }, "unix:///usr/s.sock"},
		{"chroot $prefix", "[www]\n" + pool + "prefix = /srv\nchroot = $prefix/jail\n", func(c *Config) string { return c.Pools[0].Chroot }, "/srv//jail"},
		{"time read with atoi", "[www]\n" + pool + "request_terminate_timeout = 1.5m\n", func(c *Config) string { return c.Pools[0].RequestTerminateTimeout.String() }, "1m0s"},
		{"${VAR:-default} of PHP 8.3", "[www]\n" + pool + "ping.path = ${FPMCONF_UNSET:-/fallback}\n", func(c *Config) string { return c.Pools[0].PingPath }, "/fallback"},
		{"ping.response without ping.path", "[www]\n" + pool + "ping.response = hi\n", func(c *Config) string { return c.Pools[0].PingResponse }, ""},
	} {
		cfg, err := Parse(strings.NewReader(c.text), "q.conf", Options{Getenv: getenv(nil)})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := c.get(cfg); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestMinWorkers(t *testing.T) {
	for _, c := range []struct {
		p    Pool
		want int
	}{
		{Pool{PM: "static", MaxChildren: 8}, 8},
		{Pool{PM: "dynamic", MaxChildren: 8, MinSpareServers: 3}, 3},
		{Pool{PM: "dynamic", MaxChildren: 8}, 1},
		{Pool{PM: "ondemand", MaxChildren: 8}, 0},
	} {
		if got := c.p.MinWorkers(); got != c.want {
			t.Errorf("%s: MinWorkers = %d, want %d", c.p.PM, got, c.want)
		}
	}
}

// badFixtures are the configs in testdata/bad: the line of the error and
// text it must hold, and whether php-fpm -t passes the config anyway.
var badFixtures = []struct {
	file      string
	at        string // file:line the error names
	want      []string
	phpPasses bool // php-fpm -t does not bind sockets, so a bad address passes it
}{
	{file: "bad-number.conf", at: "bad-number.conf:9", want: []string{`pm.max_children "ten" is not a whole number`}},
	{file: "bad-pm.conf", at: "bad-pm.conf:8", want: []string{`pm "dyn" is not a process manager; use static, dynamic or ondemand`}},
	{file: "missing-listen.conf", at: "missing-listen.conf:4", want: []string{`pool "www" has no listen address`}},
	{file: "missing-pm.conf", at: "missing-pm.conf:4", want: []string{`pool "www" has no process manager`}},
	{file: "no-pools.conf", at: "no-pools.conf", want: []string{"no pool sections"}},
	{file: "global-pool-directive.conf", at: "global-pool-directive.conf:4", want: []string{"pm.max_children is a pool directive but is in [global]"}},
	{file: "global-unknown.conf", at: "global-unknown.conf:4", want: []string{`unknown directive "max_connections" in [global]`}},
	{file: "pool-unknown.conf", at: "pool-unknown.conf:10", want: []string{`unknown directive "pm.max_childs" in pool "www"`}},
	{file: "bad-time.conf", at: "bad-time.conf:10", want: []string{`request_terminate_timeout "10x" is not a time`}},
	{file: "bad-bool.conf", at: "bad-bool.conf:10", want: []string{`clear_env "maybe" is not a boolean`}},
	{file: "syntax-operator.conf", at: "syntax-operator.conf:11", want: []string{`"ping.response = pong!"`, `'!' is an operator`}},
	{file: "hash-comment.conf", at: "hash-comment.conf:7", want: []string{`"# listen on a unix socket"`, "only ; comments"}},
	{file: "unclosed-quote.conf", at: "unclosed-quote.conf:7", want: []string{`unterminated "`}},
	{file: "pool-in-global.conf", at: "pool-in-global.conf:4", want: []string{`pid "/run/php/$pool.pid" uses $pool outside a pool section`}},
	{file: "array-in-global.conf", at: "array-in-global.conf:4", want: []string{`"env[TZ]" is in [global]`}},
	{file: "spare-too-many.conf", at: "spare-too-many.conf:11", want: []string{"pm.max_spare_servers 8 must not exceed pm.max_children 4"}},
	{file: "start-out-of-range.conf", at: "start-out-of-range.conf:10", want: []string{"pm.start_servers 6 must be from pm.min_spare_servers 1 to pm.max_spare_servers 3"}},
	{file: "same-listen.conf", at: "same-listen.conf:13", want: []string{`pool "b" listens on "/run/php/www.sock", which pool "a" already uses`}},
	{file: "status-same-listen.conf", at: "status-same-listen.conf:8", want: []string{`pool "www_status" listens on "127.0.0.1:9000", which pool "www" already uses`}},
	{file: "status-path.conf", at: "status-path.conf:10", want: []string{`pm.status_path "status" must start with /`}},
	{file: "slowlog-missing.conf", at: "slowlog-missing.conf:10", want: []string{"request_slowlog_timeout needs a slowlog file"}},
	{file: "include-missing-dir.conf", at: "include-missing-dir.conf:4", want: []string{`include "/nonexistent-fpmconf-dir/*.conf"`, "no such file or directory"}},
	{file: "empty-quotes.conf", at: "empty-quotes.conf:11", want: []string{`'' is not an empty string`}},
	{file: "log-limit.conf", at: "log-limit.conf:4", want: []string{"log_limit 100 is too small"}},
	{file: "cycle/php-fpm.conf", at: "b.conf:2", want: []string{`include "a.conf"`, "include cycle", "a.conf -> ", "b.conf -> "}},
	{file: "bad-port.conf", at: "bad-port.conf:7", want: []string{`listen "127.0.0.1:90000": the port must be a number from 1 to 65535`}, phpPasses: true},
	{file: "bad-host.conf", at: "bad-host.conf:7", want: []string{`listen "*:9000": the host "*" is neither an IP address nor a host name`}, phpPasses: true},
}

func checkError(t *testing.T, err error, at string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one at %s", at)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error spans lines: %q", msg)
	}
	for _, w := range append([]string{at}, want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not hold %q", msg, w)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, c := range badFixtures {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata/bad", c.file)
			_, err := Load(path, Options{Prefix: abs(t, filepath.Dir(path))})
			checkError(t, err, c.at, c.want...)
		})
	}
	for _, c := range generatedBad(t) {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.main, Options{Prefix: c.dir})
			checkError(t, err, c.at, c.want...)
		})
	}
	t.Run("missing main file", func(t *testing.T) {
		_, err := Load("testdata/missing.conf", Options{})
		checkError(t, err, "reading php-fpm config testdata/missing.conf: open testdata/missing.conf: no such file or directory")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(%v, fs.ErrNotExist) is false", err)
		}
	})
	t.Run("missing main file in a root", func(t *testing.T) {
		_, err := Load("/etc/php-fpm.conf", Options{Root: t.TempDir()})
		checkError(t, err, "reading php-fpm config /etc/php-fpm.conf: open /etc/php-fpm.conf: no such file or directory")
	})
	t.Run("relative prefix", func(t *testing.T) {
		_, err := Load("testdata/syntax/php-fpm.conf", Options{Prefix: "testdata"})
		checkError(t, err, `php-fpm prefix "testdata" is not an absolute path`)
	})
	t.Run("newline in a file name", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "php-fpm.conf"), "include = pool.d/*.conf\n")
		writeFile(t, filepath.Join(dir, "pool.d", "a\nb.conf"), "[www]\nlisten = /x.sock\npm = static\npm.max_children = nine\n")
		_, err := Load(filepath.Join(dir, "php-fpm.conf"), Options{Prefix: dir})
		checkError(t, err, `a\nb.conf:4: pm.max_children "nine"`)
	})
}

// badCase is a broken config built at test time, for what testdata
// cannot hold: symbolic links, FIFOs, deep nesting.
type badCase struct {
	name, dir, main, at string
	want                []string
	phpRefuses          bool // php-fpm can be run on it and refuses it; false if it would hang
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

const testPool = "[www]\nuser = nobody\ngroup = nogroup\nlisten = /run/php/www.sock\npm = static\npm.max_children = 1\n"

// nested writes a chain of files, each including the next, depth files in
// all, the main one first.
func nested(t testing.TB, dir string, depth int) string {
	for i := range depth {
		text := fmt.Sprintf("include = d%d.conf\n", i+1)
		if i == 0 {
			text = "[global]\nerror_log = fpm.log\n" + text
		}
		if i == depth-1 {
			text = testPool
		}
		writeFile(t, filepath.Join(dir, fmt.Sprintf("d%d.conf", i)), text)
	}
	return filepath.Join(dir, "d0.conf")
}

func generatedBad(t *testing.T) []badCase {
	var cases []badCase

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), "[global]\nerror_log = fpm.log\ninclude = pool.d/*.conf\n"+testPool)
	writeFile(t, filepath.Join(dir, "pool.d", "a.conf"), "; nothing\n")
	if err := os.Symlink("missing.conf", filepath.Join(dir, "pool.d", "broken.conf")); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, badCase{name: "dangling symlink", dir: dir, main: filepath.Join(dir, "php-fpm.conf"), at: "php-fpm.conf:3",
		want: []string{`include "pool.d/*.conf"`, "broken.conf: no such file or directory"}, phpRefuses: true})

	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), "[global]\nerror_log = fpm.log\ninclude = pool.d/*.conf\n"+testPool)
	writeFile(t, filepath.Join(dir, "pool.d", "a.conf"), "; nothing\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "pool.d", "fifo.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, badCase{name: "FIFO", dir: dir, main: filepath.Join(dir, "php-fpm.conf"), at: "php-fpm.conf:3",
		want: []string{"fifo.conf is not a regular file"}})

	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), "[global]\nerror_log = fpm.log\ninclude = loop.conf\n"+testPool)
	if err := os.Symlink("loop.conf", filepath.Join(dir, "loop.conf")); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, badCase{name: "symlink loop", dir: dir, main: filepath.Join(dir, "php-fpm.conf"), at: "php-fpm.conf:3",
		want: []string{`include "loop.conf"`}, phpRefuses: true})

	dir = t.TempDir()
	cases = append(cases, badCase{name: "nested 6 deep", dir: dir, main: nested(t, dir, 6), at: "d4.conf:1",
		want: []string{`include "d5.conf"`, "more than 5 files deep"}, phpRefuses: true})
	return cases
}

func TestNestedFiveDeep(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(nested(t, dir, 5), Options{Prefix: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Files) != 5 || cfg.Pools[0].File != filepath.Join(dir, "d4.conf") {
		t.Errorf("Files = %q, pool in %q", cfg.Files, cfg.Pools[0].File)
	}
}

// TestRoot reads a config through a root the way the supervisor reads a
// master in another container: symbolic links resolve inside the root.
func TestRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/fpm/php-fpm.conf"), "[global]\npid = /run/php/fpm.pid\n; .. cannot climb out of the root\ninclude = /../../etc/fpm/pool.d/*.conf\n")
	writeFile(t, filepath.Join(root, "srv/conf/www.conf"), "[www]\nlisten = /var/run/php/www.sock\npm = static\npm.max_children = 2\n")
	// Outside a root this would be the host's /etc/passwd.
	writeFile(t, filepath.Join(root, "etc/passwd"), "[inside]\nlisten = 9000\npm = ondemand\npm.max_children = 2\n")
	if err := os.MkdirAll(filepath.Join(root, "run/php"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"etc/fpm/pool.d/www.conf":    "/srv/conf/www.conf",                    // absolute: inside the root
		"etc/fpm/pool.d/escape.conf": "../../../../../../../../../etc/passwd", // climbs, but stops at the root
		"var/run":                    "/run",                                  // as in Debian images
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Load("/../etc/fpm/php-fpm.conf", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"/../etc/fpm/php-fpm.conf", "/etc/fpm/pool.d/escape.conf", "/etc/fpm/pool.d/www.conf"}
	if !reflect.DeepEqual(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	comparePools(t, cfg.Pools, []Pool{{
		Name: "inside", Listen: "9000", ListenAddress: "tcp://127.0.0.1:9000", PM: "ondemand", MaxChildren: 2,
		Line: 1, File: "/etc/fpm/pool.d/escape.conf",
	}, {
		Name: "www", Listen: "/var/run/php/www.sock", ListenAddress: "unix://" + root + "/run/php/www.sock",
		PM: "static", MaxChildren: 2, Line: 1, File: "/etc/fpm/pool.d/www.conf",
	}})
	if cfg.PIDFile != "/run/php/fpm.pid" {
		t.Errorf("PIDFile = %q", cfg.PIDFile)
	}
}

// fpm runs php-fpm -t (or -tt) on a config and reports whether it passed.
func fpm(t *testing.T, prefix, conf string, env map[string]string, dump bool) (bool, string) {
	t.Helper()
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	flag := "-t"
	if dump {
		flag = "-tt"
	}
	args := []string{flag, "-y", conf}
	if prefix != "" {
		args = append(args, "-p", prefix)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("php-fpm %s -y %s: %v", flag, conf, ctx.Err())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("php-fpm %s -y %s: %v", flag, conf, err)
	}
	return err == nil, string(out)
}

// copyDir copies a testdata directory, since php-fpm -t writes its error
// log and opens slowlogs under the prefix.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "c")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestAgainstPHPFPM checks the fixtures with the real php-fpm: it passes
// what Load accepts and refuses what Load refuses.
func TestAgainstPHPFPM(t *testing.T) {
	if _, err := fpmtest.Binary(); err != nil {
		t.Fatal(err) // integration tests must not pass by skipping
	}
	for _, fx := range validFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", fx.dir))
			if ok, out := fpm(t, dir, filepath.Join(dir, "php-fpm.conf"), fixtureEnv, false); !ok {
				t.Errorf("php-fpm refuses %s:\n%s", fx.dir, out)
			}
		})
	}
	t.Run("syntax with CRLF", func(t *testing.T) {
		dir := copyDir(t, "testdata/syntax")
		main := filepath.Join(dir, "php-fpm.conf")
		text, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, main, strings.ReplaceAll(string(text), "\n", "\r\n"))
		cfg, err := Load(main, Options{Prefix: dir})
		if err != nil {
			t.Fatal(err)
		}
		comparePools(t, cfg.Pools, validFixtures[1].want(dir).Pools)
		if ok, out := fpm(t, dir, main, nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	t.Run("debian-8.2", func(t *testing.T) {
		// The Debian config names absolute paths; php-fpm has no root
		// option, so point them into a copy.
		dir := copyDir(t, "testdata/debian-8.2")
		main := filepath.Join(dir, "etc/php/8.2/fpm/php-fpm.conf")
		text, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(text), "include=/etc/", "include="+dir+"/etc/", 1)
		s = strings.Replace(s, "error_log = /var/log/", "error_log = "+dir+"/", 1)
		if s == string(text) {
			t.Fatal("the Debian config no longer has its include and error_log lines")
		}
		writeFile(t, main, s)
		if ok, out := fpm(t, "", main, nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	t.Run("nested 5 deep", func(t *testing.T) {
		dir := t.TempDir()
		if ok, out := fpm(t, dir, nested(t, dir, 5), nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	bad := copyDir(t, "testdata/bad")
	for _, c := range badFixtures {
		t.Run(c.file, func(t *testing.T) {
			main := filepath.Join(bad, c.file)
			ok, out := fpm(t, filepath.Dir(main), main, nil, false)
			if ok != c.phpPasses {
				t.Errorf("php-fpm -t passes: %v, want %v\n%s", ok, c.phpPasses, out)
			}
		})
	}
	for _, c := range generatedBad(t) {
		if !c.phpRefuses {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			if ok, out := fpm(t, c.dir, c.main, nil, false); ok {
				t.Errorf("php-fpm passes it:\n%s", out)
			}
		})
	}
	t.Run("values", func(t *testing.T) {
		dir := t.TempDir()
		main := filepath.Join(dir, "php-fpm.conf")
		for _, c := range valueCases {
			writeFile(t, main, conf("ping.response = "+c.value))
			ok, out := fpm(t, dir, main, fixtureEnv, true)
			switch {
			case ok != (c.err == ""):
				t.Errorf("%s: php-fpm passes: %v, want %v\n%s", c.value, ok, c.err == "", out)
			case ok && !strings.Contains(out, "\tping.response = "+c.want+"\n"):
				t.Errorf("%s: php-fpm does not make it %q:\n%s", c.value, c.want, out)
			}
		}
	})
}

// FuzzParse feeds Parse arbitrary configs: it must not panic or hang, and
// its errors must stay on one line.
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".conf") {
			return err
		}
		b, err := os.ReadFile(path)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range valueCases {
		f.Add([]byte(conf("ping.response = " + c.value)))
	}
	// Includes resolve inside a small root of their own.
	root := f.TempDir()
	writeFile(f, filepath.Join(root, "etc/pool.d/www.conf"), testPool)
	writeFile(f, filepath.Join(root, "prefix/self.conf"), "include = self.conf\n")
	opts := Options{Root: root, Prefix: "/prefix", Getenv: getenv(fixtureEnv)}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(bytes.NewReader(data), "fuzz.conf", opts)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if len(cfg.Pools) == 0 || cfg.Files[0] != "fuzz.conf" {
			t.Fatalf("accepted without pools: %+v", cfg)
		}
		for _, p := range cfg.Pools {
			if _, err := fastcgi.ParseAddress(p.ListenAddress); err != nil || p.Listen == "" {
				t.Fatalf("pool %q: Listen %q, ListenAddress %q: %v", p.Name, p.Listen, p.ListenAddress, err)
			}
			if p.MinWorkers() < 0 || p.MaxChildren < 1 {
				t.Fatalf("pool %q: MinWorkers %d, MaxChildren %d", p.Name, p.MinWorkers(), p.MaxChildren)
			}
		}
	})
}
