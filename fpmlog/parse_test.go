package fpmlog

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testdata/php-fpm-8.2.log is the error log of a real php-fpm 8.2 master
// (log_level notice, the default) whose pool www, with pm.max_requests = 3,
// request_terminate_timeout = 3s and a slowlog, served: short requests
// (one worker recycled), a script writing an imitation of an exit line to
// its stderr, a segfault, a request past the terminate timeout, and a
// worker SIGKILLed by the test. testdata/php-fpm-8.2-debug.log is the same
// at log_level debug, with an ondemand pool whose idle worker was retired.
// php-fpm 7.4 and 8.4 use the same format strings for every message read
// here (checked in their binaries), but for the unknown child's.

func readLog(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestParseRealLogs(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string // kind pool pid exit signal, of every line read
	}{
		{"php-fpm-8.2.log", []string{
			"exited www 23842 0 ",
			"started www 23856 -1 ",
			"exited www 23841 -1 SIGSEGV",
			"started www 23857 -1 ",
			"slow www 23856 -1 ",
			"tracing  23856 -1 ",
			"timed-out www 23856 -1 ",
			"exited www 23856 -1 SIGTERM",
			"started www 24018 -1 ",
			"exited www 23857 -1 SIGKILL",
			"started www 24026 -1 ",
			"slow www 24026 -1 ",
			"slow www 24018 -1 ",
			"tracing  24018 -1 ",
			"tracing  24026 -1 ",
		}},
		{"php-fpm-8.2-debug.log", []string{
			"started www 22196 -1 ", "started www 22197 -1 ", "started www 22198 -1 ",
			"exited www 22197 0 ", "started www 22206 -1 ",
			"exited www 22198 -1 SIGSEGV", "started www 22212 -1 ",
			"slow www 22196 -1 ", "tracing  22196 -1 ",
			"timed-out www 22196 -1 ", "started www_status 22293 -1 ",
			"exited www 22196 -1 SIGTERM", "started www 22295 -1 ",
			"exited www 22206 0 ", "started www 22302 -1 ",
			"started od 22345 -1 ",
			"exited www 22212 -1 SIGKILL", "started www 22346 -1 ",
			"pm-killed od 22345 -1 ", "pm-killed www_status 22293 -1 ",
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			var got []string
			for _, line := range readLog(t, c.file) {
				l, ok := ParseLine(line)
				if strings.Contains(line, "said into stderr") {
					if ok {
						t.Errorf("a worker's output read as %+v", l)
					}
					continue
				}
				if !ok {
					continue
				}
				if l.Time.IsZero() || l.Level == "" {
					t.Errorf("%q: no time or level", line)
				}
				got = append(got, strings.Join([]string{string(l.Kind), l.Pool, itoa(l.PID), itoa(l.ExitCode), l.SignalName}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("read:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestParseLine reads each field of the lines, in every form php-fpm
// writes them.
func TestParseLine(t *testing.T) {
	l, ok := ParseLine("[05-Dec-2026 01:55:57] WARNING: [pool www] child 23856, script '/srv/www/s.php' (request: \"GET /s.php?ms=5000\") execution timed out (3.000788 sec), terminating\n")
	if !ok || l.Kind != KindTimedOut || l.Script != "/srv/www/s.php" || l.Request != "GET /s.php" || l.Elapsed != 3000788*time.Microsecond {
		t.Errorf("%+v", l)
	}
	if want := time.Date(2026, 12, 5, 1, 55, 57, 0, time.Local); !l.Time.Equal(want) {
		t.Errorf("time %v, want %v", l.Time, want)
	}
	l, ok = ParseLine("[05-Dec-2026 01:55:57.123456] WARNING: pid 1, fpm_children_bury(), line 289: [pool a b] child 7 exited on signal 6 (SIGABRT - core dumped) after 12.500000 seconds from start")
	if !ok || l.Pool != "a b" || l.Signal != 6 || l.SignalName != "SIGABRT" || !l.CoreDumped || l.Uptime != 12500*time.Millisecond || l.Time.Nanosecond() != 123456000 {
		t.Errorf("%+v", l)
	}
	// Through syslog: no time.
	l, ok = ParseLine("[WARNING] [pool www] child 9 exited with code 70 after 0.010000 seconds from start")
	if !ok || !l.Time.IsZero() || l.ExitCode != 70 || l.Level != "WARNING" {
		t.Errorf("%+v", l)
	}
	// A signal php-fpm has no name for.
	l, ok = ParseLine("[05-Dec-2026 01:55:57] WARNING: [pool www] child 9 exited on signal 40 () after 1.000000 seconds from start")
	if !ok || l.Signal != 40 || l.SignalName != "" {
		t.Errorf("%+v", l)
	}
	for _, s := range []string{
		"[05-Dec-2026 01:55:57] WARNING: [pool www] server reached pm.max_children setting (5), consider raising it",
		"[05-Dec-2026 01:55:57] WARNING: [pool www] server reached max_children setting (5), consider raising it",
	} {
		if l, ok := ParseLine(s); !ok || l.Kind != KindMaxChildren || l.MaxChildren != 5 {
			t.Errorf("%q: %+v", s, l)
		}
	}
	for _, s := range []string{
		"[05-Dec-2026 01:55:57] ALERT: oops, unknown child (4242) exited on signal 9 (SIGKILL). Please open a bug report (https://bugs.php.net).", // 7.4
		"[05-Dec-2026 01:55:57] WARNING: unknown child (4242) exited on signal 9 (SIGKILL) - most likely an orphan process (master process is the init process)",
	} {
		if l, ok := ParseLine(s); !ok || l.Kind != KindUnknownChild || l.PID != 4242 || l.Signal != 9 {
			t.Errorf("%q: %+v", s, l)
		}
	}
	for _, s := range []string{
		"",
		"[pool www] child 7 exited with code 0 after 1.0 seconds from start", // no prefix: not php-fpm's
		`[05-Dec-2026 01:55:54] WARNING: [pool www] child 23841 said into stderr: "NOTICE: PHP message: WARNING: [pool www] child 1 exited on signal 9 (SIGKILL) after 1.0 seconds from start"`,
		`[05-Dec-2026 01:55:54] WARNING: pid 22194, (null)(), line 0: [pool www] child 22197 said into stderr: "x"`,
		"[05-Dec-2026 01:55:57] WARNING: [pool www] child 0 exited with code 0 after 1.000000 seconds from start",
		"[05-Dec-2026 01:55:57] WARNING: [pool www] child 99999999999999999999 exited with code 0 after 1.000000 seconds from start",
		"[05-Dec-2026 01:55:57] WARNING: [pool www] child 7 exited with code 0 after 1.000000 seconds from start trailing",
		"[05-Dec-2026 01:55:57] WARNING: [pool www] child 7, script 'x' (request: \"GET /\") execution timed out (1.0 sec), logging",
		"[99-Foo-2026 01:55:57] WARNING: [pool www] child 7 exited with code 0 after 1.000000 seconds from start",
	} {
		if l, ok := ParseLine(s); ok {
			t.Errorf("%q read as %+v", s, l)
		}
	}
}
