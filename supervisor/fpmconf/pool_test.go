package fpmconf

// Tests of how a pool's listen value resolves to an address.

import (
	"strings"
	"testing"
)

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
