package fpmlog

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is what a line of php-fpm's master log records.
type Kind string

// The lines read. php-fpm 7.4, 8.2 and 8.4 write them in the same words.
const (
	// KindExited: `[pool www] child 1234 exited on signal 9 (SIGKILL)
	// after 12.3 seconds from start`, or `exited with code 0 after ...`.
	KindExited Kind = "exited"
	// KindPMKilled: `[pool www] child 1234 has been killed by the process
	// management after ...`: an idle worker ended by pm.process_idle_timeout
	// or a dynamic pool's spare count. Written at log_level debug only.
	KindPMKilled Kind = "pm-killed"
	// KindTimedOut: `[pool www] child 1234, script '/x.php' (request: "GET
	// /x.php?a=b") execution timed out (30.001 sec), terminating`:
	// request_terminate_timeout, php-fpm's own SIGTERM.
	KindTimedOut Kind = "timed-out"
	// KindSlow: the same line ending `executing too slow (5.0 sec),
	// logging`: request_slowlog_timeout.
	KindSlow Kind = "slow"
	// KindStarted: `[pool www] child 1234 started`.
	KindStarted Kind = "started"
	// KindTracing: `child 1234 stopped for tracing` (the slowlog's ptrace).
	KindTracing Kind = "tracing"
	// KindMaxChildren: `[pool www] server reached pm.max_children setting
	// (5), consider raising it`.
	KindMaxChildren Kind = "max-children"
	// KindUnknownChild: `unknown child (1234) exited ...`: a process the
	// master did not know it had.
	KindUnknownChild Kind = "unknown-child"
)

// Line is one line of php-fpm's master log that fpmguard reads.
type Line struct {
	// Time is when php-fpm wrote it, in fpmguard's local time zone (php-fpm
	// writes its own, without a zone); zero when the line has no time, as
	// through syslog.
	Time  time.Time
	Level string // DEBUG, NOTICE, WARNING, ERROR or ALERT
	Kind  Kind
	Pool  string
	PID   int
	// ExitCode is the code of a worker that exited, -1 when it died on a
	// signal or the line says nothing of it.
	ExitCode int
	// Signal is the number of the signal a worker died on, SignalName its
	// name as php-fpm gives it (SIGKILL); 0 and "" otherwise.
	Signal     int
	SignalName string
	CoreDumped bool
	// Uptime is how long the worker lived.
	Uptime time.Duration
	// Script and Request are what a timed-out or slow worker ran: the
	// script, and the request's method and URI as the client sent them
	// (untrusted text), without the query string php-fpm writes after
	// them: it may hold tokens. Elapsed is its age.
	Script, Request string
	Elapsed         time.Duration
	// MaxChildren is the setting a KindMaxChildren line names.
	MaxChildren int
}

// The message patterns, anchored at both ends: a line a worker wrote
// through catch_workers_output reads `[pool www] child 12 said into
// stderr: "..."` and matches none of them, whatever the worker wrote.
var (
	reExited = regexp.MustCompile(`^\[pool ([^\]]+)\] child (\d+) exited (?:with code (\d+)|on signal (\d+) \(([A-Z0-9]*)( - core dumped)?\)) after (\d+\.\d+) seconds from start$`)
	rePM     = regexp.MustCompile(`^\[pool ([^\]]+)\] child (\d+) has been killed by the process management after (\d+\.\d+) seconds from start$`)
	// The script and the request come from the client and may hold
	// anything: only the pool and pid before them are trusted.
	reTimedOut    = regexp.MustCompile(`^\[pool ([^\]]+)\] child (\d+), script '(.*)' \(request: "(.*)"\) (execution timed out|executing too slow) \((\d+\.\d+) sec\), (terminating|logging)$`)
	reStarted     = regexp.MustCompile(`^\[pool ([^\]]+)\] child (\d+) started$`)
	reTracing     = regexp.MustCompile(`^child (\d+) stopped for tracing$`)
	reMaxChildren = regexp.MustCompile(`^\[pool ([^\]]+)\] server reached (?:pm\.)?max_children setting \((\d+)\), consider raising it$`)
	reUnknown     = regexp.MustCompile(`^(?:oops, )?unknown child \((\d+)\) exited (?:with code (\d+)|on signal (\d+) \(([A-Z0-9]*)( - core dumped)?\))`)
	// The prefix: `[05-Dec-2026 01:52:23] WARNING: `, with microseconds
	// and `pid N, func(), line N: ` at log_level debug; through syslog
	// `[WARNING] ` and `func(), line N: `.
	reFilePrefix   = regexp.MustCompile(`^\[(\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2})(\.\d{6})?\] (DEBUG|NOTICE|WARNING|ERROR|ALERT): (?:pid \d+, [A-Za-z0-9_]+\(\), line \d+: )?`)
	reSyslogPrefix = regexp.MustCompile(`^\[(DEBUG|NOTICE|WARNING|ERROR|ALERT)\] (?:[A-Za-z0-9_]+\(\), line \d+: )?`)
)

// maxLine bounds the lines parsed: php-fpm cuts its own at log_limit
// (1024 bytes by default, 2048 at most for the master's).
const maxLine = 8 << 10

// ParseLine reads one line of php-fpm's error log, with or without its
// newline, and reports whether it is one fpmguard reads.
func ParseLine(s string) (Line, bool) {
	l := Line{ExitCode: -1}
	s = strings.TrimRight(s, "\r\n")
	if len(s) > maxLine {
		return l, false
	}
	msg := s
	if m := reFilePrefix.FindStringSubmatch(s); m != nil {
		t, err := time.ParseInLocation("02-Jan-2006 15:04:05", m[1], time.Local)
		if err != nil {
			return l, false
		}
		if m[2] != "" {
			us, _ := strconv.Atoi(m[2][1:])
			t = t.Add(time.Duration(us) * time.Microsecond)
		}
		l.Time, l.Level, msg = t, m[3], s[len(m[0]):]
	} else if m := reSyslogPrefix.FindStringSubmatch(s); m != nil {
		l.Level, msg = m[1], s[len(m[0]):]
	} else {
		return l, false
	}
	switch {
	case strings.Contains(msg, " exited "):
		if m := reExited.FindStringSubmatch(msg); m != nil {
			l.Kind, l.Pool, l.PID = KindExited, m[1], atoi(m[2])
			exit(&l, m[3], m[4], m[5], m[6])
			l.Uptime = seconds(m[7])
			return l, l.PID > 0
		}
		if m := reUnknown.FindStringSubmatch(msg); m != nil {
			l.Kind, l.PID = KindUnknownChild, atoi(m[1])
			exit(&l, m[2], m[3], m[4], m[5])
			return l, l.PID > 0
		}
	case strings.HasSuffix(msg, " seconds from start"):
		if m := rePM.FindStringSubmatch(msg); m != nil {
			l.Kind, l.Pool, l.PID, l.Uptime = KindPMKilled, m[1], atoi(m[2]), seconds(m[3])
			return l, l.PID > 0
		}
	case strings.HasSuffix(msg, ", terminating") || strings.HasSuffix(msg, ", logging"):
		if m := reTimedOut.FindStringSubmatch(msg); m != nil {
			l.Kind = KindTimedOut
			if m[5] == "executing too slow" {
				l.Kind = KindSlow
			}
			if (l.Kind == KindTimedOut) != (m[7] == "terminating") {
				return l, false
			}
			req, _, _ := strings.Cut(m[4], "?")
			l.Pool, l.PID, l.Script, l.Request, l.Elapsed = m[1], atoi(m[2]), m[3], req, seconds(m[6])
			return l, l.PID > 0
		}
	case strings.HasSuffix(msg, " started"):
		if m := reStarted.FindStringSubmatch(msg); m != nil {
			l.Kind, l.Pool, l.PID = KindStarted, m[1], atoi(m[2])
			return l, l.PID > 0
		}
	case strings.HasSuffix(msg, " stopped for tracing"):
		if m := reTracing.FindStringSubmatch(msg); m != nil {
			l.Kind, l.PID = KindTracing, atoi(m[1])
			return l, l.PID > 0
		}
	case strings.HasSuffix(msg, "consider raising it"):
		if m := reMaxChildren.FindStringSubmatch(msg); m != nil {
			l.Kind, l.Pool, l.MaxChildren = KindMaxChildren, m[1], atoi(m[2])
			return l, true
		}
	}
	return l, false
}

// exit fills how a process ended: code, or signal, name and core dump.
func exit(l *Line, code, sig, name, core string) {
	if code != "" {
		l.ExitCode = atoi(code)
		return
	}
	l.Signal, l.SignalName, l.CoreDumped = atoi(sig), name, core != ""
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// seconds reads php-fpm's "12.345678".
func seconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
