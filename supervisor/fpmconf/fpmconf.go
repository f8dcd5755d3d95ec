// Package fpmconf reads php-fpm's own configuration (php-fpm.conf and its
// includes) to find each pool's sockets, endpoints and process-manager limits.
//
// The supervisor must agree with the master about where each pool listens,
// so this package follows php-fpm rather than a generic INI reader. php-fpm
// reads its config one line at a time and hands each line to PHP's INI
// parser, then applies rules of its own; both are mirrored here, odd parts
// included: values may hold ${ENV} and $pool, bare yes/on/true become "1",
// a "$" at the end of a value keeps the line's newline, and | & ^ ~ ! ( )
// are integer operators. Where php-fpm versions differ (7.4 to 8.4) the
// union is accepted. Checks that depend on the file system or the user
// database (does the chroot exist, is the master root) are left to php-fpm.
//
// It must import nothing of fpmguard's but fastcgi (for ListenAddress, via
// fastcgi.ParseAddress): the supervisor imports it, never the reverse.
package fpmconf

// The API: Options, Config, Pool, Load and Parse.

import (
	"io"
	"time"
)

// Options say how to read the config.
type Options struct {
	Root   string                      // file system root to read through, e.g. "/proc/1234/root" for a master in another container; "" means "/"
	Prefix string                      // php-fpm's -p prefix; "" means none
	Getenv func(string) (string, bool) // for ${VAR}; nil means os.LookupEnv
}

// Config is what php-fpm would run with.
type Config struct {
	Path     string   // the main file, as given (not prefixed with Root)
	Files    []string // every file read, main first, in order (as seen inside Root)
	PIDFile  string   // [global] pid, resolved to an absolute path ("" if unset)
	ErrorLog string   // [global] error_log, resolved; php-fpm's default log/php-fpm.log if unset; "syslog" as written
	Pools    []Pool   // in file order
}

// Pool is one pool section, with php-fpm's defaults and derived values
// filled in.
type Pool struct {
	Name          string
	Listen        string // the listen value after expansion, resolved (absolute unix path, or host:port / port as written)
	ListenAddress string // where a client on this host connects: "unix:///abs/path" or "tcp://127.0.0.1:9000"; a unix path gets Root prepended when Root != ""

	ListenOwner, ListenGroup, ListenMode string
	User, Group                          string

	PM string // static | dynamic | ondemand
	// The limits as php-fpm applies them: it computes an unset
	// pm.start_servers of a dynamic pool, and zeroes the spare servers of
	// an ondemand one.
	MaxChildren, StartServers, MinSpareServers, MaxSpareServers int

	StatusPath          string // pm.status_path, "" if unset; "/" if only pm.status_listen is set, as php-fpm does
	StatusListen        string // pm.status_listen raw value, "" if unset
	StatusListenAddress string // same conversion as ListenAddress, "" if unset
	PingPath            string // "" if unset
	PingResponse        string // default "pong"; "" when there is no PingPath, as php-fpm drops it

	RequestTerminateTimeout time.Duration
	RequestSlowlogTimeout   time.Duration

	Slowlog               string // resolved path, "" if unset
	Chroot, Chdir, Prefix string // resolved paths, "" if unset

	Line int    // line of the [name] section header, for messages
	File string // file holding the section
}

// MinWorkers is how many workers the pool's config promises at least when
// healthy: static -> MaxChildren, dynamic -> MinSpareServers (at least 1),
// ondemand -> 0.
func (p Pool) MinWorkers() int {
	switch p.PM {
	case "static":
		return p.MaxChildren
	case "dynamic":
		return max(p.MinSpareServers, 1)
	}
	return 0
}

// Load reads the config at path, as seen inside opts.Root, with every file
// it includes.
func Load(path string, opts Options) (*Config, error) {
	l, err := newLoader(path, opts)
	if err != nil {
		return nil, err
	}
	defer l.close()
	inRoot := path
	if l.root != "" {
		inRoot = cleanAbs(path)
	}
	data, err := l.readFile(inRoot)
	if err != nil {
		return nil, errorf("reading php-fpm config %s: %w", path, err)
	}
	return l.run(data)
}

// Parse reads a main config from r; name is used as its path in messages.
// Files it includes are still read from the file system, through opts.Root.
func Parse(r io.Reader, name string, opts Options) (*Config, error) {
	l, err := newLoader(name, opts)
	if err != nil {
		return nil, err
	}
	defer l.close()
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, errorf("reading php-fpm config %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, errorf("reading php-fpm config %s: larger than %d MiB; that is not a php-fpm config", name, maxFileSize>>20)
	}
	return l.run(data)
}
