package fpmconf

// The directive tables, and php-fpm's parsers for their values.

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Directive kinds, after php-fpm's value parsers.
type kind int

const (
	kString kind = iota + 1
	kInt
	kTime
	kBool
	kPM
	kLogLevel
	kRlimitCore
	kSyslogFacility
)

// globalDirectives and poolDirectives are php-fpm's directives from 7.4 to
// 8.4, platform-specific ones included. php-fpm refuses any other.
var globalDirectives = map[string]kind{
	"pid":                         kString,
	"error_log":                   kString,
	"syslog.ident":                kString,
	"syslog.facility":             kSyslogFacility,
	"log_buffering":               kBool,
	"log_level":                   kLogLevel,
	"log_limit":                   kInt,
	"emergency_restart_threshold": kInt,
	"emergency_restart_interval":  kTime,
	"process_control_timeout":     kTime,
	"process.max":                 kInt,
	"process.priority":            kInt,
	"daemonize":                   kBool,
	"rlimit_files":                kInt,
	"rlimit_core":                 kRlimitCore,
	"events.mechanism":            kString,
	"systemd_interval":            kTime,
}

var poolDirectives = map[string]kind{
	"prefix":                      kString,
	"user":                        kString,
	"group":                       kString,
	"listen":                      kString,
	"listen.backlog":              kInt,
	"listen.acl_users":            kString,
	"listen.acl_groups":           kString,
	"listen.owner":                kString,
	"listen.group":                kString,
	"listen.mode":                 kString,
	"listen.allowed_clients":      kString,
	"listen.setfib":               kInt,
	"process.priority":            kInt,
	"process.dumpable":            kBool,
	"pm":                          kPM,
	"pm.max_children":             kInt,
	"pm.start_servers":            kInt,
	"pm.min_spare_servers":        kInt,
	"pm.max_spare_servers":        kInt,
	"pm.max_spawn_rate":           kInt,
	"pm.process_idle_timeout":     kTime,
	"pm.max_requests":             kInt,
	"pm.status_path":              kString,
	"pm.status_listen":            kString,
	"ping.path":                   kString,
	"ping.response":               kString,
	"access.log":                  kString,
	"access.format":               kString,
	"slowlog":                     kString,
	"request_slowlog_timeout":     kTime,
	"request_slowlog_trace_depth": kInt,
	"request_terminate_timeout":   kTime,
	"request_terminate_timeout_track_finished": kBool,
	"rlimit_files":              kInt,
	"rlimit_core":               kRlimitCore,
	"chroot":                    kString,
	"chdir":                     kString,
	"catch_workers_output":      kBool,
	"decorate_workers_output":   kBool,
	"clear_env":                 kBool,
	"security.limit_extensions": kString,
	"apparmor_hat":              kString,
}

var syslogFacilities = []string{
	"auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// normalize checks a value as php-fpm's parser for its kind does and
// returns it in a canonical form. Errors complete "name "value" ...".
func normalize(k kind, v string) (string, error) {
	switch k {
	case kInt:
		n, err := parseInt(v)
		return strconv.Itoa(n), err
	case kTime:
		n, err := parseTime(v)
		return strconv.Itoa(n), err
	case kBool:
		// Bare yes/on/true reach php-fpm as "1" and no/off/false/none as
		// "". Since PHP 8.2.19 it also takes the words themselves, which
		// is what a quoted value or ${VAR} gives.
		switch v {
		case "1", "yes", "true", "on":
			return "1", nil
		case "", "0", "no", "none", "false", "off":
			return "", nil
		}
		return "", errors.New("is not a boolean; use yes or no")
	case kPM:
		if l := strings.ToLower(v); l == "static" || l == "dynamic" || l == "ondemand" {
			return l, nil
		}
		return "", errors.New("is not a process manager; use static, dynamic or ondemand")
	case kLogLevel:
		switch strings.ToLower(v) {
		case "debug", "notice", "warning", "warn", "error", "alert":
			return v, nil
		}
		return "", errors.New("is not a log level; use debug, notice, warning, error or alert")
	case kRlimitCore:
		if strings.EqualFold(v, "unlimited") {
			return "-1", nil
		}
		n, err := parseInt(v)
		if err == nil && n < 0 {
			err = errors.New("is negative; use a size of 0 or more, or unlimited")
		}
		return strconv.Itoa(n), err
	case kSyslogFacility:
		if slices.Contains(syslogFacilities, strings.ToLower(v)) {
			return v, nil
		}
		return "", errors.New("is not a syslog facility; use daemon, user or local0 to local7")
	}
	return v, nil
}

// parseInt takes what php-fpm's fpm_conf_set_integer takes: digits with an
// optional leading minus. An empty value is 0, as there.
func parseInt(v string) (int, error) {
	for i, c := range []byte(v) {
		if !(c >= '0' && c <= '9' || c == '-' && i == 0) {
			return 0, errors.New("is not a whole number")
		}
	}
	n, ok := atoi(v)
	if !ok {
		return 0, errors.New("is too large")
	}
	return int(n), nil
}

// parseTime reads a time in seconds as php-fpm's fpm_conf_set_time does: a
// number with an optional suffix s, m, h or d. Like php-fpm it reads the
// number with atoi, so "1.5m" is 60 seconds.
func parseTime(v string) (int, error) {
	if v == "" {
		return 0, errors.New("is empty; use seconds, or a number with s, m, h or d such as 30s or 5m")
	}
	mult, num := int64(1), v[:len(v)-1]
	switch c := v[len(v)-1]; c {
	case 's':
	case 'm':
		mult = 60
	case 'h':
		mult = 60 * 60
	case 'd':
		mult = 24 * 60 * 60
	default:
		if c < '0' || c > '9' {
			return 0, errors.New("is not a time; use seconds, or a number with s, m, h or d such as 30s or 5m")
		}
		num = v
	}
	n, ok := atoi(num)
	secs := int64(n) * mult
	if !ok || secs > 1<<31-1 || secs < -1<<31 {
		return 0, errors.New("is too large")
	}
	return int(secs), nil
}

// atoi reads a number as C's atoi does: leading white space, a sign, then
// digits up to the first other character. ok is false if it does not fit
// a C int.
func atoi(s string) (n int32, ok bool) {
	v := strtol(s)
	return int32(v), v >= -1<<31 && v <= 1<<31-1
}

// strtol is C's strtol in base 10 with its clamping on overflow.
func strtol(s string) int64 {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + uint64(s[i]-'0')
		if n > 1<<63 {
			n = 1 << 63 // stays clamped: keeps overflowing past it
		}
	}
	switch {
	case neg && n >= 1<<63:
		return -1 << 63
	case neg:
		return -int64(n)
	case n >= 1<<63:
		return 1<<63 - 1
	}
	return int64(n)
}
