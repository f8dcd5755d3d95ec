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
// Configs may belong to a master fpmguard found, not one an operator named:
// Options.Files says what every file must be (owner, mode, readable by the
// master's user), and Options.Redact keeps what the files hold out of
// errors. Every file is read through package safefile: no FIFO, device or
// endless file, and inside a root no link leads out of it.
//
// It must import nothing of fpmguard's but fastcgi (for ListenAddress, via
// fastcgi.ParseAddress) and safefile: the supervisor imports it, never the
// reverse.
package fpmconf

// The API: Options, Config, Pool, Load and Parse.

import (
	"io"
	"time"

	"github.com/fpmguard/fpmguard/safefile"
)

// Options say how to read the config.
type Options struct {
	Root   string // file system root to read through, e.g. "/proc/1234/root" for a master in another container; "" means "/"
	Prefix string // php-fpm's -p prefix; "" means none
	// Getenv looks up ${VAR}: php-fpm expands it from its own environment,
	// so pass the master's, never one the config's author must not read.
	// nil: every variable is unset.
	Getenv func(string) (string, bool)
	// Files is what every file read must be besides a regular file of at
	// most 8 MiB: its owner, its mode, who may read it. Links are followed,
	// inside Root.
	Files safefile.Rules
	// Redact keeps what the files hold out of errors: they name the file,
	// the line and what is wrong, and quote nothing. For a config no
	// operator named, which may pull in a file the reader of the error must
	// not see.
	Redact bool
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

	Slowlog               string   // resolved path, "" if unset
	AccessLog             string   // resolved path, "" if unset: php-fpm then logs no request
	SuppressPaths         []string // access.suppress_path[]: request paths left out of the access log (PHP 8.2 and later)
	Chroot, Chdir, Prefix string   // resolved paths, "" if unset

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
