package fpmconf

// Pools: defaults, checks, and paths and addresses resolved as php-fpm does.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// PHP_PREFIX and PHP_LOCALSTATEDIR as Debian and Ubuntu build php-fpm
// (upstream: /usr/local and /usr/local/var). Relative paths resolve
// against them when there is no -p prefix.
const (
	defaultPrefix   = "/usr"
	defaultStateDir = "/var"
)

func (l *loader) finishPool(s *section) (Pool, error) {
	p := Pool{Name: s.name, Line: s.header.line, File: s.header.file}
	get := func(key string) string { v, _ := s.get(key); return v }
	p.User, p.Group = get("user"), get("group")
	p.ListenOwner, p.ListenGroup, p.ListenMode = get("listen.owner"), get("listen.group"), get("listen.mode")

	var poolPrefix *string
	if v, ok := s.get("prefix"); ok {
		if v != "" {
			v = l.fullPath(v, nil, "")
		}
		poolPrefix = &v
		p.Prefix = v
	}

	p.Listen = get("listen")
	if p.Listen == "" {
		return p, s.at("listen").errorf("pool %q has no listen address; set listen = /run/php/%s.sock or listen = 127.0.0.1:9000", s.name, s.name)
	}
	if !isInet(p.Listen) {
		p.Listen = l.fullPath(p.Listen, poolPrefix, "")
	}
	var err error
	if p.ListenAddress, err = l.clientAddress(p.Listen); err != nil {
		return p, s.at("listen").errorf("pool %q listen %q: %w", s.name, truncate(p.Listen, 80), err)
	}
	if err := checkPriority(s); err != nil {
		return p, err
	}

	p.PM = get("pm")
	if p.PM == "" {
		return p, s.header.errorf("pool %q has no process manager; set pm = static, dynamic or ondemand", s.name)
	}
	p.MaxChildren = s.num("pm.max_children", 0)
	if p.MaxChildren < 1 {
		return p, s.at("pm.max_children").errorf("pool %q pm.max_children %d must be at least 1", s.name, p.MaxChildren)
	}
	p.StartServers = s.num("pm.start_servers", 0)
	p.MinSpareServers = s.num("pm.min_spare_servers", 0)
	p.MaxSpareServers = s.num("pm.max_spare_servers", 0)
	switch p.PM {
	case "dynamic":
		if err := checkDynamic(s, &p); err != nil {
			return p, err
		}
	case "ondemand":
		if n := s.num("pm.process_idle_timeout", 10); n < 1 {
			return p, s.at("pm.process_idle_timeout").errorf("pool %q pm.process_idle_timeout %ds must be at least 1s", s.name, n)
		}
		p.StartServers, p.MinSpareServers, p.MaxSpareServers = 0, 0, 0
	}

	statusPath, hasStatusPath := s.get("pm.status_path")
	if v, ok := s.get("pm.status_listen"); ok {
		p.StatusListen = v
		if v == "" {
			return p, s.at("pm.status_listen").errorf("pool %q pm.status_listen is empty; give an address or remove it", s.name)
		}
		if p.StatusListenAddress, err = l.clientAddress(l.statusListen(s)); err != nil {
			return p, s.at("pm.status_listen").errorf("pool %q pm.status_listen %q: %w", s.name, truncate(v, 80), err)
		}
		// php-fpm serves the status page at / when only the status
		// listener is given, on the main listener too.
		if !hasStatusPath {
			statusPath = "/"
		}
	}
	if statusPath != "" {
		if err := checkURLPath(statusPath, p.StatusListen != ""); err != nil {
			return p, s.at("pm.status_path").errorf("pool %q pm.status_path %q %s", s.name, truncate(statusPath, 80), err)
		}
	}
	p.StatusPath = statusPath

	if p.PingPath = get("ping.path"); p.PingPath != "" {
		if err := checkURLPath(p.PingPath, false); err != nil {
			return p, s.at("ping.path").errorf("pool %q ping.path %q %s", s.name, truncate(p.PingPath, 80), err)
		}
		p.PingResponse = "pong"
		if v, ok := s.get("ping.response"); ok {
			if v == "" {
				return p, s.at("ping.response").errorf("pool %q ping.response is empty; remove it for the default pong", s.name)
			}
			p.PingResponse = v
		}
	}

	p.RequestTerminateTimeout = time.Duration(s.num("request_terminate_timeout", 0)) * time.Second
	p.RequestSlowlogTimeout = time.Duration(s.num("request_slowlog_timeout", 0)) * time.Second
	if p.Slowlog = get("slowlog"); p.Slowlog != "" {
		p.Slowlog = l.fullPath(p.Slowlog, poolPrefix, "")
	}
	if p.RequestSlowlogTimeout != 0 {
		if p.Slowlog == "" {
			return p, s.at("request_slowlog_timeout").errorf("pool %q request_slowlog_timeout needs a slowlog file; set slowlog = /var/log/php-fpm/%s.slow", s.name, s.name)
		}
		if p.RequestTerminateTimeout != 0 && p.RequestSlowlogTimeout > p.RequestTerminateTimeout {
			return p, s.at("request_slowlog_timeout").errorf("pool %q request_slowlog_timeout %v is longer than request_terminate_timeout %v", s.name, p.RequestSlowlogTimeout, p.RequestTerminateTimeout)
		}
	}
	if n := s.num("request_slowlog_trace_depth", 0); n != 0 {
		if p.Slowlog == "" {
			return p, s.at("request_slowlog_trace_depth").errorf("pool %q request_slowlog_trace_depth needs a slowlog file", s.name)
		}
		if n < 0 {
			return p, s.at("request_slowlog_trace_depth").errorf("pool %q request_slowlog_trace_depth %d must be positive", s.name, n)
		}
	}

	if p.AccessLog = get("access.log"); p.AccessLog != "" {
		p.AccessLog = l.fullPath(p.AccessLog, poolPrefix, "")
	}
	p.SuppressPaths = s.suppress

	if p.Chroot = get("chroot"); p.Chroot != "" {
		if p.Chroot, err = l.chrootPath(p.Chroot, poolPrefix); err != nil {
			return p, s.at("chroot").errorf("pool %q chroot %q %s", s.name, truncate(get("chroot"), 80), err)
		}
		if !strings.HasPrefix(p.Chroot, "/") {
			return p, s.at("chroot").errorf("pool %q chroot %q is not an absolute path", s.name, truncate(p.Chroot, 80))
		}
	}
	if p.Chdir = get("chdir"); p.Chdir != "" {
		if p.Chdir = l.fullPath(p.Chdir, poolPrefix, ""); !strings.HasPrefix(p.Chdir, "/") {
			return p, s.at("chdir").errorf("pool %q chdir %q is not an absolute path", s.name, truncate(p.Chdir, 80))
		}
	}
	return p, nil
}

func checkDynamic(s *section, p *Pool) error {
	at := s.at
	switch {
	case p.MinSpareServers <= 0:
		return at("pm.min_spare_servers").errorf("pool %q pm.min_spare_servers %d must be at least 1 for pm = dynamic", s.name, p.MinSpareServers)
	case p.MaxSpareServers <= 0:
		return at("pm.max_spare_servers").errorf("pool %q pm.max_spare_servers %d must be at least 1 for pm = dynamic", s.name, p.MaxSpareServers)
	case p.MinSpareServers > p.MaxChildren:
		return at("pm.min_spare_servers").errorf("pool %q pm.min_spare_servers %d must not exceed pm.max_children %d", s.name, p.MinSpareServers, p.MaxChildren)
	case p.MaxSpareServers > p.MaxChildren:
		return at("pm.max_spare_servers").errorf("pool %q pm.max_spare_servers %d must not exceed pm.max_children %d", s.name, p.MaxSpareServers, p.MaxChildren)
	case p.MaxSpareServers < p.MinSpareServers:
		return at("pm.max_spare_servers").errorf("pool %q pm.max_spare_servers %d is below pm.min_spare_servers %d", s.name, p.MaxSpareServers, p.MinSpareServers)
	}
	if p.StartServers <= 0 {
		// php-fpm's default, with a notice.
		p.StartServers = p.MinSpareServers + (p.MaxSpareServers-p.MinSpareServers)/2
	} else if p.StartServers < p.MinSpareServers || p.StartServers > p.MaxSpareServers {
		return at("pm.start_servers").errorf("pool %q pm.start_servers %d must be from pm.min_spare_servers %d to pm.max_spare_servers %d", s.name, p.StartServers, p.MinSpareServers, p.MaxSpareServers)
	}
	if n := s.num("pm.max_spawn_rate", 32); n < 1 {
		return at("pm.max_spawn_rate").errorf("pool %q pm.max_spawn_rate %d must be at least 1", s.name, n)
	}
	return nil
}

// checkURLPath applies php-fpm's rules for pm.status_path and ping.path.
func checkURLPath(v string, slashAllowed bool) error {
	if !strings.HasPrefix(v, "/") {
		return errors.New("must start with /")
	}
	if len(v) < 2 && !slashAllowed {
		return errors.New("is too short; use a path like /status")
	}
	for _, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-_.~", c) >= 0) {
			return errors.New("may hold only letters, digits and / - _ . ~")
		}
	}
	return nil
}

// statusListen is the address of a pool's hidden status pool. That pool
// does not inherit the pool's prefix, so a relative socket path resolves
// against the -p prefix only.
func (l *loader) statusListen(s *section) string {
	v, _ := s.get("pm.status_listen")
	if v == "" || isInet(v) {
		return v
	}
	return l.fullPath(v, nil, "")
}

// fullPath resolves a relative path as php-fpm's fpm_evaluate_full_path
// does: against the pool prefix if there is one, else the -p prefix, else
// def or PHP_PREFIX. It joins with "/" and does not clean, like php-fpm.
func (l *loader) fullPath(p string, poolPrefix *string, def string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	full := l.base(poolPrefix, def) + "/" + p
	if !strings.HasPrefix(full, "/") && poolPrefix != nil {
		return l.fullPath(full, nil, def)
	}
	return full
}

// base is the directory fullPath resolves against.
func (l *loader) base(poolPrefix *string, def string) string {
	switch {
	case poolPrefix != nil:
		return *poolPrefix
	case l.opts.Prefix != "":
		return l.opts.Prefix
	case def != "":
		return def
	}
	return defaultPrefix
}

// chrootPath resolves chroot, the one place php-fpm expands $prefix, and
// only at the start of a relative value.
func (l *loader) chrootPath(v string, poolPrefix *string) (string, error) {
	if strings.HasPrefix(v, "/") {
		return v, nil
	}
	i := strings.Index(v, "$prefix")
	if i < 0 {
		return l.fullPath(v, poolPrefix, ""), nil
	}
	if i > 0 {
		return "", errors.New("has $prefix after the start; php-fpm expands it only at the start")
	}
	base := l.base(poolPrefix, "")
	if rest := v[len("$prefix"):]; rest != "" {
		return base + "/" + rest, nil
	}
	return base, nil
}

// isInet reports whether php-fpm takes a listen value as TCP: it holds a
// colon or is all digits. Anything else is a unix socket path.
func isInet(v string) bool {
	return strings.Contains(v, ":") || strings.Trim(v, "0123456789") == ""
}

// clientAddress turns a resolved listen value into an address a client on
// this host can dial, in the form fastcgi.ParseAddress reads.
func (l *loader) clientAddress(listen string) (string, error) {
	if !isInet(listen) {
		if !strings.HasPrefix(listen, "/") {
			return "", errors.New("the socket path is not absolute")
		}
		a, err := fastcgi.ParseAddress("unix://" + l.hostPathLenient(listen))
		if err != nil {
			return "", err
		}
		return a.String(), nil
	}
	// Like php-fpm: the port follows the last colon; "[::1]" loses its
	// brackets; digits alone are a port on all addresses.
	host, port := "", listen
	if i := strings.LastIndexByte(listen, ':'); i >= 0 {
		host, port = listen[:i], listen[i+1:]
		if host == "" {
			return "", errors.New("the host before the colon is missing; write 127.0.0.1:9000 or just 9000")
		}
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", errors.New("the port must be a number from 1 to 65535")
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	a, err := fastcgi.ParseAddress("tcp://" + net.JoinHostPort(host, port))
	if err != nil {
		// The port is fine, so it is the host.
		return "", fmt.Errorf("the host %q is neither an IP address nor a host name", host)
	}
	return a.String(), nil
}
