package fpmconf

// Tests of values as the INI syntax reads them, from quotes and ${VAR} to operators.

import (
	"strings"
	"testing"
)

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
