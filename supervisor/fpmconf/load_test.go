package fpmconf

// Tests of the loader: the fixtures, whole lines, errors and includes.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/safefile"
)

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
			AccessLog: p + "/one.access.log", SuppressPaths: []string{"/ping"},
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
		want: []string{"fifo.conf: not a regular file (a FIFO)"}})

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

// TestRedact: a config no operator named may include a file whose reader
// must not see what it holds. With Redact, errors name the file, the line
// and what is wrong, and quote nothing of it; without, they quote as
// ever.
func TestRedact(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shadow")
	writeFile(t, secret, "secretuser:$y$SECRET:20228:0:99999:7:::\n[pool ${HOME}]\n")
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), "[global]\ninclude = "+secret+"\n")
	for _, text := range []string{
		"secretuser:$y$SECRET",
		"[www]\nlisten = /run/secret.sock\npm = SECRET\n",
		"[www]\nlisten = SECRET_host:9000\npm = static\npm.max_children = 1\n",
		"[SECRET]\nlisten = /run/a.sock\npm = static\n",
	} {
		writeFile(t, secret, text)
		_, err := Load(filepath.Join(dir, "php-fpm.conf"), Options{Redact: true})
		if err == nil || !strings.Contains(err.Error(), "reading "+secret+":") || strings.Contains(strings.ToLower(err.Error()), "secret:") || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%q: %v; want an error naming %s and quoting nothing", text, err, secret)
		}
		if _, err := Load(filepath.Join(dir, "php-fpm.conf"), Options{}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "secret") {
			t.Errorf("%q without Redact: %v; want the usual quote", text, err)
		}
	}
}

// TestFileRules: every file of a config passes Options.Files: the main
// file, and what it includes.
func TestFileRules(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "php-fpm.conf")
	writeFile(t, main, "[global]\ninclude = "+dir+"/pool.d/*.conf\n")
	writeFile(t, filepath.Join(dir, "pool.d/www.conf"), testPool)
	root := Options{Files: safefile.Rules{Owners: []uint32{0}, NoOtherWrite: true}}
	if _, err := Load(main, root); err != nil {
		t.Fatalf("root's own files: %v", err)
	}
	if err := os.Chown(filepath.Join(dir, "pool.d/www.conf"), 33, 33); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(main, root); !errors.Is(err, safefile.ErrOwner) {
		t.Errorf("an include of the pool user's: %v, want ErrOwner", err)
	}
	if err := os.Chmod(main, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(main, root); !errors.Is(err, safefile.ErrWritable) {
		t.Errorf("a main file anyone may write: %v, want ErrWritable", err)
	}
}

// TestEnvUnsetByDefault: ${VAR} expands only from the environment given:
// with none, every variable is unset, never fpmguard's own.
func TestEnvUnsetByDefault(t *testing.T) {
	t.Setenv("FPMCONF_TEST_SECRET", "s3cr3t")
	cfg, err := Parse(strings.NewReader("[www${FPMCONF_TEST_SECRET}]\nlisten = /run/a.sock\npm = static\npm.max_children = 1\n"), "env.conf", Options{})
	if err != nil || cfg.Pools[0].Name != "www" {
		t.Fatalf("%+v, %v; want pool www", cfg, err)
	}
}
