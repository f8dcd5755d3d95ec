package fpmlog

import (
	"strings"
	"testing"
)

func FuzzParseLine(f *testing.F) {
	for _, name := range []string{"php-fpm-8.2.log", "php-fpm-8.2-debug.log"} {
		for _, line := range readLog(f, name) {
			f.Add(line)
		}
	}
	f.Add("[WARNING] [pool www] child 9 exited with code 70 after 0.010000 seconds from start")
	f.Add("[05-Dec-2026 01:55:57] WARNING: [pool www] child 9, script '' (request: \"\") execution timed out (0.0 sec), terminating")
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := ParseLine(s)
		if !ok {
			return
		}
		if l.PID <= 0 && l.Kind != KindMaxChildren {
			t.Fatalf("%q: pid %d", s, l.PID)
		}
		if l.Kind == KindExited && (l.ExitCode >= 0) == (l.Signal > 0) {
			t.Fatalf("%q: exit code %d and signal %d", s, l.ExitCode, l.Signal)
		}
		if strings.Contains(l.Pool, "]") || l.Uptime < 0 || l.Elapsed < 0 {
			t.Fatalf("%q: %+v", s, l)
		}
	})
}
