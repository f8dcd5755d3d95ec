package supervisor

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/supervisor/fpmconf"
)

// Target is one pool fpmguard watches, however it was found.
type Target struct {
	Name          string
	Address       fastcgi.Address // the main listen socket: the one nginx uses
	StatusAddress fastcgi.Address // pm.status_listen, or zero to use Address
	StatusPath    string          // "" when the pool has none
	PingPath      string          // "" when the pool has none
	PingResponse  string

	// The master, as far as it is known: a pid from discovery or a pid
	// file. With neither, the master is the parent of the status page's
	// workers.
	MasterPID     int
	MasterPIDFile string
	MasterConfig  string // the php-fpm.conf the master runs
	// ErrorLog is the master's error_log as its config names it (a path
	// of Root), "syslog", or "" when no config was read: fpmguard
	// follows it to tell why workers die.
	ErrorLog string
	Root     string // /proc/PID/root when the master lives in another mount namespace
	// RootName names Root in MasterName: stable across restarts, unlike
	// the pid in Root.
	RootName string
	Chroot   string // the pool's chroot: PHP sees paths below it

	PM          string // static, dynamic or ondemand; "" when unknown
	MaxChildren int
	MinWorkers  int // workers the config promises at least

	Slowlog                 string
	AccessLog               string   // access.log, "" when unset or not known
	SuppressPaths           []string // access.suppress_path[]
	RequestTerminateTimeout time.Duration
	RequestSlowlogTimeout   time.Duration
	Source                  string // "flag", "config" or "discovered"
}

// StatusVia is the address the status page is read from.
func (t Target) StatusVia() fastcgi.Address {
	if !t.StatusAddress.IsZero() {
		return t.StatusAddress
	}
	return t.Address
}

// ScrapeURI names the pool's status page as the established exporter does,
// ADDRESS;STATUS_PATH, with the address as php-fpm sees it: a socket in
// another root is reached through /proc/PID/root, whose pid changes at
// every restart of php-fpm, and a label must not.
func (t Target) ScrapeURI() string {
	return t.StatusVia().InRoot().String() + ";" + t.StatusPath
}

// Default endpoints for a pool given by address only: the values php-fpm's
// shipped www.conf suggests.
const (
	DefaultStatusPath   = "/status"
	DefaultPingPath     = "/ping"
	DefaultPingResponse = "pong"
)

// ParsePoolSpec reads a --pool value: an address, then optional
// comma-separated key=value options named after the php-fpm directives they
// mirror:
//
//	unix:///run/php/www.sock,name=www,pm.status_path=/status,pm.status_listen=/run/php/www-status.sock,ping.path=/ping,ping.response=pong,pid=/run/php/php-fpm.pid,pm=static,pm.max_children=5
func ParsePoolSpec(spec string) (Target, error) {
	fields := strings.Split(spec, ",")
	addr, err := fastcgi.ParseAddress(fields[0])
	if err != nil {
		return Target{}, &SourceError{Source: SourcePoolSpec, Value: spec, Err: err}
	}
	t := Target{
		Address:      addr,
		StatusPath:   DefaultStatusPath,
		PingPath:     DefaultPingPath,
		PingResponse: DefaultPingResponse,
		Source:       "flag",
	}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Target{}, &SourceError{Source: SourcePoolSpec, Value: spec, Err: fmt.Errorf("option %q is not key=value; write e.g. %s,name=www,pm.status_path=/status", f, fields[0])}
		}
		if err := t.setOption(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return Target{}, &SourceError{Source: SourcePoolSpec, Value: spec, Err: err}
		}
	}
	if t.Name == "" {
		t.Name = nameFromAddress(addr)
	}
	return t, nil
}

// PoolOptions lists the keys ParsePoolSpec and the config file accept.
var PoolOptions = []string{"name", "pm.status_path", "pm.status_listen", "ping.path", "ping.response", "pid", "pm", "pm.max_children", "pm.min_spare_servers"}

func (t *Target) setOption(k, v string) error {
	switch k {
	case "name":
		if v == "" {
			return fmt.Errorf("name is empty")
		}
		t.Name = v
	case "pm.status_path":
		if err := checkURIPath(k, v); err != nil {
			return err
		}
		t.StatusPath = v
	case "pm.status_listen":
		a, err := fastcgi.ParseAddress(v)
		if err != nil {
			return err
		}
		t.StatusAddress = a
	case "ping.path":
		if err := checkURIPath(k, v); err != nil {
			return err
		}
		t.PingPath = v
	case "ping.response":
		t.PingResponse = v
	case "pid":
		if !path.IsAbs(v) {
			return fmt.Errorf("pid %q must be an absolute path to the master's pid file", v)
		}
		t.MasterPIDFile = v
	case "pm":
		switch v {
		case "static", "dynamic", "ondemand":
			t.PM = v
		default:
			return fmt.Errorf("pm %q must be static, dynamic or ondemand", v)
		}
	case "pm.max_children", "pm.min_spare_servers":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s %q must be a whole number", k, v)
		}
		if k == "pm.max_children" {
			t.MaxChildren = n
		} else {
			t.MinWorkers = n
		}
	default:
		return fmt.Errorf("unknown option %q; use one of %s", k, strings.Join(PoolOptions, ", "))
	}
	t.fillMinWorkers()
	return nil
}

// fillMinWorkers derives the promised worker count for a static pool.
func (t *Target) fillMinWorkers() {
	if t.PM == "static" && t.MaxChildren > 0 {
		t.MinWorkers = t.MaxChildren
	}
}

func checkURIPath(k, v string) error {
	if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "?# ") {
		return fmt.Errorf("%s %q must be a path starting with / and without a query, e.g. /status", k, v)
	}
	return nil
}

// nameFromAddress names a pool given only by address: the socket file's
// base name without .sock, or host:port.
func nameFromAddress(a fastcgi.Address) string {
	if a.Network == "unix" {
		return strings.TrimSuffix(path.Base(a.Addr), ".sock")
	}
	return a.Addr
}

// TargetsFromConfig turns every pool of a parsed php-fpm config into
// targets. Pools without a status or ping path keep them empty; the probe
// then reports the lines to add instead of guessing. A config read through
// root (another container's) gets sockets resolved inside root at every
// connect.
func TargetsFromConfig(cfg *fpmconf.Config, root string, masterPID int, source string) ([]Target, error) {
	var out []Target
	inRoot := func(a fastcgi.Address) fastcgi.Address {
		if a.Network == "unix" {
			a.Root = root
		}
		return a
	}
	rn := rootName(root)
	for _, p := range cfg.Pools {
		addr, err := fastcgi.ParseAddress(p.ListenAddress)
		if err != nil {
			return nil, fmt.Errorf("pool %s in %s: listen: %w", p.Name, p.File, err)
		}
		addr = inRoot(addr)
		t := Target{
			Name:                    p.Name,
			Address:                 addr,
			StatusPath:              p.StatusPath,
			PingPath:                p.PingPath,
			PingResponse:            p.PingResponse,
			MasterPID:               masterPID,
			MasterPIDFile:           cfg.PIDFile,
			MasterConfig:            cfg.Path,
			ErrorLog:                cfg.ErrorLog,
			Root:                    root,
			RootName:                rn,
			Chroot:                  p.Chroot,
			PM:                      p.PM,
			MaxChildren:             p.MaxChildren,
			MinWorkers:              p.MinWorkers(),
			Slowlog:                 p.Slowlog,
			AccessLog:               p.AccessLog,
			SuppressPaths:           p.SuppressPaths,
			RequestTerminateTimeout: p.RequestTerminateTimeout,
			RequestSlowlogTimeout:   p.RequestSlowlogTimeout,
			Source:                  source,
		}
		if p.StatusListenAddress != "" {
			if t.StatusAddress, err = fastcgi.ParseAddress(p.StatusListenAddress); err != nil {
				return nil, fmt.Errorf("pool %s in %s: pm.status_listen: %w", p.Name, p.File, err)
			}
			t.StatusAddress = inRoot(t.StatusAddress)
		}
		out = append(out, t)
	}
	return out, nil
}
