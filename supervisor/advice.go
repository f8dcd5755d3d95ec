package supervisor

// The advice of a pool's report: the config lines and steps that would let
// fpmguard see the pool fully. Each is valid for the PHP version the
// pool's master runs, as `php-fpm -t` of that version checks it
// (TestAdvicePassesConfigTest), and names paths as php-fpm sees them:
// inside the master's root, not through /proc/PID/root.

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/phpbin"
)

// What each version of php-fpm has (docs/versions.md gives the sources).
const (
	// pm.status_listen: PHP 8.0.0 ChangeLog, FPM: "Add pm.status_listen
	// option."
	statusListenMajor, statusListenMinor = 8, 0
	// access.suppress_path[]: NEWS 8.2.0, "Added access.suppress_path pool
	// option to filter access log entries."
	suppressPathMajor, suppressPathMinor = 8, 2
)

// advice lists the lines for pool t of report r, for the PHP version of
// r's master (unknown when fpmguard could not read it: then what depends
// on the version says so).
func advice(t Target, r PoolReport) []string {
	var v phpbin.Version
	if r.Master != nil {
		v = r.Master.PHPVersion
	}
	where := "to pool [" + t.Name + "]"
	var out []string
	add := func(line string) {
		if line != "" && !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	if r.Status.Skipped {
		add(fmt.Sprintf("add `pm.status_path = %s` %s so fpmguard can see its workers", DefaultStatusPath, where))
	}
	if t.StatusAddress.IsZero() {
		// With pm.status_path, when it is advised too: one paste.
		add(statusListenAdvice(t, v, where))
	}
	pingPath := t.PingPath
	if r.Heartbeat.Skipped {
		add(fmt.Sprintf("add `ping.path = %s` %s so fpmguard can send a heartbeat through a worker", DefaultPingPath, where))
		pingPath = DefaultPingPath
	}
	if v.AtLeast(suppressPathMajor, suppressPathMinor) && t.AccessLog != "" && pingPath != "" && !slices.Contains(t.SuppressPaths, pingPath) {
		// The status page needs no such line: fpmguard reads it with a
		// query string, which php-fpm never leaves out of its access log,
		// or through pm.status_listen, whose pool logs nothing.
		add(fmt.Sprintf("add `access.suppress_path[] = %s` %s so fpmguard's heartbeat stays out of its access log", pingPath, where))
	}
	add(failureAdvice(t, r, r.Status.Failure, where))
	add(failureAdvice(t, r, r.Heartbeat.Failure, where))
	return out
}

// statusListenAdvice is the way to a status page that answers while every
// worker is busy, on PHP version v.
func statusListenAdvice(t Target, v phpbin.Version, where string) string {
	line := fmt.Sprintf("add `pm.status_listen = %s` %s so its status still answers when every worker is busy", suggestStatusListen(t), where)
	switch {
	case !v.Known():
		return "if its master runs PHP 8.0 or later, " + line + " (PHP 7 refuses the directive)"
	case v.AtLeast(statusListenMajor, statusListenMinor):
		return line
	}
	reload := "let `--reload-unhealthy` recover the pool when every worker hangs"
	if t.Root != "" {
		// fpmguard never reloads a master in another root (watch/reload.go).
		reload = "let fpmguard in php-fpm's own container recover the pool with `--reload-unhealthy` when every worker hangs"
	}
	return fmt.Sprintf("PHP %s has no pm.status_listen (PHP 8.0 brought it): the status page of pool [%s] is served by its own workers, so it does not answer while all of them are busy; "+
		"keep pm.max_children above the busiest peak (`fpmguard advise` sizes it) and %s", v.Branch(), t.Name, reload)
}

// failureAdvice is what to do about a failed read, "" for nothing. The
// hints fastcgi gives are for any caller; two are said again here for the
// report they are in: a missing status page (its hint names
// pm.status_listen, which not every version has) and a timeout (its hint
// points to `fpmguard status`, which this report may be).
func failureAdvice(t Target, r PoolReport, f *Failure, where string) string {
	if f == nil || f.Hint == "" {
		return ""
	}
	switch {
	case f == r.Status.Failure && f.Class == fastcgi.ClassNotFound:
		return fmt.Sprintf("php-fpm has no status page at %s: add `pm.status_path = %s` %s, or give fpmguard the pool's real status path", t.StatusPath, t.StatusPath, where)
	case f.Class == fastcgi.ClassTimeout && len(r.Processes) > 0:
		return "every worker may be busy or hung, so nginx answers 504 at its fastcgi_read_timeout: the workers of this report show which requests hold them"
	case f.Class == fastcgi.ClassTimeout:
		return "no answer in time: every worker may be busy or hung (nginx answers 504), and no status page answered to show which requests hold them"
	}
	return f.Hint
}

// suggestStatusListen is a status listener beside the pool's own, as
// php-fpm names it: a unix socket path inside the master's root.
func suggestStatusListen(t Target) string {
	a := t.Address
	if a.Network == "unix" {
		p := a.Addr
		if a.Root != "" {
			p = strings.TrimPrefix(p, strings.TrimSuffix(a.Root, "/"))
		}
		return strings.TrimSuffix(p, ".sock") + "-status.sock"
	}
	host, port, err := net.SplitHostPort(a.Addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return "127.0.0.1:9001"
	}
	// The next port, or the one before at the top: never the pool's own.
	if n < 65535 {
		n++
	} else {
		n--
	}
	return net.JoinHostPort(host, strconv.Itoa(n))
}
