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
package fpmconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
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

const (
	// php-fpm refuses to nest includes deeper than this many files, the
	// main file included ("failed to include more than 5 files recursively").
	maxDepth = 5
	// Guards against a config that globs its way into /dev or /proc, or
	// fans out include after include: php-fpm configs are a few KiB.
	maxFileSize  = 8 << 20
	maxTotalSize = 64 << 20
	maxFiles     = 1000
)

// PHP_PREFIX and PHP_LOCALSTATEDIR as Debian and Ubuntu build php-fpm
// (upstream: /usr/local and /usr/local/var). Relative paths resolve
// against them when there is no -p prefix.
const (
	defaultPrefix   = "/usr"
	defaultStateDir = "/var"
)

type loader struct {
	opts   Options
	root   string   // absolute, cleaned; "" when reading the host's own files
	fsys   *os.Root // opened root, when root != ""
	getenv func(string) (string, bool)
	cfg    *Config

	global *section
	pools  []*section
	cur    *section // where directives go now; php-fpm keeps it across includes
	stack  []string // files being read, outermost first, for include cycles
	total  int      // bytes read so far
}

// where is a place in the config, for messages.
type where struct {
	file string
	line int
}

func (w where) errorf(format string, args ...any) error {
	return errorf("reading %s:%d: "+format, append([]any{w.file, w.line}, args...)...)
}

// errorf is fmt.Errorf for messages that must stay on one line although
// they may name files, and a file name may hold a newline.
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
		return &oneLineError{msg: strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(msg), err: err}
	}
	return err
}

type oneLineError struct {
	msg string
	err error
}

func (e *oneLineError) Error() string { return e.msg }
func (e *oneLineError) Unwrap() error { return e.err }

// section is [global] or one pool, with each directive as last set.
type section struct {
	name   string
	header where              // the [name] line, first one if reopened
	set    map[string]setting // by lower-case directive name
}

type setting struct {
	value string // normalised: numbers and times in decimal, booleans "1" or ""
	at    where
}

func (s *section) get(key string) (string, bool) {
	v, ok := s.set[key]
	return v.value, ok
}

// at says where key was set, or the section header if it was not.
func (s *section) at(key string) where {
	if v, ok := s.set[key]; ok {
		return v.at
	}
	return s.header
}

// num reads a setting stored by normalize as a decimal number.
func (s *section) num(key string, def int) int {
	v, ok := s.set[key]
	if !ok {
		return def
	}
	n, _ := strconv.Atoi(v.value)
	return n
}

func newLoader(path string, opts Options) (*loader, error) {
	l := &loader{opts: opts, getenv: opts.Getenv}
	if l.getenv == nil {
		l.getenv = os.LookupEnv
	}
	if opts.Prefix != "" && !filepath.IsAbs(opts.Prefix) {
		return nil, errorf("php-fpm prefix %q is not an absolute path; pass the -p value of the running master", opts.Prefix)
	}
	if opts.Root != "" && filepath.Clean(opts.Root) != "/" {
		root, err := filepath.Abs(opts.Root)
		if err != nil {
			return nil, errorf("reading php-fpm config %s: root %q: %w", path, opts.Root, err)
		}
		l.fsys, err = os.OpenRoot(root)
		if err != nil {
			return nil, errorf("reading php-fpm config %s: opening root: %w", path, err)
		}
		l.root = root
	}
	l.cfg = &Config{Path: path, Files: []string{path}}
	l.global = &section{name: "global", set: map[string]setting{}}
	l.cur = l.global
	return l, nil
}

func (l *loader) close() {
	if l.fsys != nil {
		l.fsys.Close()
	}
}

func (l *loader) run(main []byte) (*Config, error) {
	// The main file's own name, for include cycles through it.
	self := l.cfg.Path
	if l.root != "" {
		self = cleanAbs(self)
	} else if abs, err := filepath.Abs(self); err == nil {
		self = abs
	}
	l.stack = []string{self}
	if err := l.parseFile(l.cfg.Path, main); err != nil {
		return nil, err
	}
	if err := l.finish(); err != nil {
		return nil, err
	}
	return l.cfg, nil
}

// parseFile applies a file's lines in order. Each line is parsed on its
// own, as php-fpm does, and an include runs after the rest of its line.
func (l *loader) parseFile(name string, data []byte) error {
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		at := where{file: name, line: n + 1}
		// php-fpm appends the newline it split on, then passes the line
		// as a C string, so a NUL byte ends it and hides that newline.
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i:i]
		} else {
			line = append(line[:len(line):len(line)], '\n')
		}
		// PHP's scanner skips a UTF-8 byte order mark at the start of
		// each string it is given: here, each line.
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		include, err := l.parseLine(at, line)
		if err != nil {
			return err
		}
		if include != nil {
			if err := l.include(at, *include); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *loader) parseLine(at where, line []byte) (*string, error) {
	var include *string
	p := &iniLine{b: line, getenv: l.getenv}
	err := p.each(func(st stmt) error {
		switch st.kind {
		case stmtSection:
			l.section(at, st.name)
			return nil
		case stmtArray:
			return l.array(at, st)
		}
		if st.noValue {
			if strings.HasPrefix(st.name, "#") {
				return at.errorf("%q: php-fpm takes only ; comments, not #", truncate(st.name, 60))
			}
			return at.errorf("%q has no value; php-fpm wants name = value", truncate(st.name, 60))
		}
		// php-fpm matches include case-sensitively, before anything else.
		if st.name == "include" {
			if include != nil {
				return at.errorf("two includes on one line; put each on a line of its own")
			}
			include = &st.value
			return nil
		}
		return l.entry(at, st.name, st.value)
	})
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return nil, at.errorf("syntax error in %q: %s", truncate(strings.TrimSpace(string(line)), 80), se.msg)
		}
		return nil, err
	}
	return include, nil
}

// section switches to [global] or to a pool, creating it on first sight.
// Names compare without case and a reopened pool keeps its first spelling.
func (l *loader) section(at where, name string) {
	if strings.EqualFold(name, "global") {
		l.cur = l.global
		return
	}
	for _, s := range l.pools {
		if strings.EqualFold(s.name, name) {
			l.cur = s
			return
		}
	}
	s := &section{name: name, header: at, set: map[string]setting{}}
	l.pools = append(l.pools, s)
	l.cur = s
}

func (l *loader) entry(at where, name, value string) error {
	key := strings.ToLower(name)
	inGlobal := l.cur == l.global
	table := poolDirectives
	if inGlobal {
		table = globalDirectives
	}
	k, ok := table[key]
	if !ok {
		switch {
		case inGlobal && poolDirectives[key] != 0:
			return at.errorf("%s is a pool directive but is in [global]; move it under a [pool] section", name)
		case !inGlobal && globalDirectives[key] != 0:
			return at.errorf("%s is a [global] directive but is in pool %q; move it under [global]", name, l.cur.name)
		}
		return at.errorf("unknown directive %q in %s; php-fpm refuses it", truncate(name, 60), l.sectionName())
	}
	if k == kString {
		if strings.Contains(value, "$pool") {
			if inGlobal {
				return at.errorf("%s %q uses $pool outside a pool section", name, truncate(value, 80))
			}
			value = strings.ReplaceAll(value, "$pool", l.cur.name)
		}
	}
	norm, err := normalize(k, value)
	if err != nil {
		return at.errorf("%s %q %s", name, truncate(value, 80), err)
	}
	l.cur.set[key] = setting{value: norm, at: at}
	return nil
}

func (l *loader) sectionName() string {
	if l.cur == l.global {
		return "[global]"
	}
	return fmt.Sprintf("pool %q", l.cur.name)
}

// array checks name[key] = value lines, in php-fpm's order. Their values
// (php_value and friends) are not modelled.
func (l *loader) array(at where, st stmt) error {
	full := fmt.Sprintf("%s[%s]", st.name, st.key)
	if st.name == "access.suppress_path" {
		if st.key != "" {
			return at.errorf("%q: access.suppress_path takes no key; write access.suppress_path[] = /path", truncate(full, 60))
		}
		if !strings.HasPrefix(st.value, "/") {
			return at.errorf("access.suppress_path[] %q must start with /", truncate(st.value, 80))
		}
	} else if st.key == "" {
		return at.errorf("%q needs a key, as in php_value[name] = value", truncate(full, 60))
	}
	if l.cur == l.global {
		return at.errorf("%q is in [global]; arrays belong in a pool section", truncate(full, 60))
	}
	switch st.name {
	case "env":
		if st.value == "" {
			return at.errorf("%q is empty; php-fpm needs a value", truncate(full, 60))
		}
	case "php_flag", "php_admin_flag":
		if _, err := normalize(kBool, st.value); err != nil {
			return at.errorf("%q %q %s", truncate(full, 60), truncate(st.value, 80), err)
		}
	case "php_value", "php_admin_value", "access.suppress_path":
	default:
		return at.errorf("unknown directive %q; php-fpm takes env[], php_value[], php_admin_value[], php_flag[], php_admin_flag[] and access.suppress_path[]", truncate(full, 60))
	}
	return nil
}

// include reads the files a pattern names. Like php-fpm it resolves a
// relative pattern against the -p prefix (not the including file's
// directory), skips directories and only warns when nothing matches.
func (l *loader) include(at where, pattern string) error {
	full := l.fullPath(pattern, nil, "")
	if full == "" {
		return nil
	}
	matches, err := l.glob(full)
	if err != nil {
		return at.errorf("include %q: %w", truncate(pattern, 80), err)
	}
	for _, m := range matches {
		if err := l.includeFile(at, pattern, m); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) includeFile(at where, pattern, name string) error {
	if fi, err := l.stat(name); err == nil && fi.IsDir() {
		return nil
	}
	if slices.Contains(l.stack, name) {
		return at.errorf("include %q: include cycle: %s -> %s", truncate(pattern, 80), strings.Join(l.stack, " -> "), name)
	}
	data, err := l.readFile(name)
	if err != nil {
		return at.errorf("include %q: %w", truncate(pattern, 80), err)
	}
	if len(l.stack) >= maxDepth {
		return at.errorf("include %q: %s is nested more than %d files deep; php-fpm refuses that", truncate(pattern, 80), name, maxDepth)
	}
	if l.total += len(data); len(l.cfg.Files) >= maxFiles || l.total > maxTotalSize {
		return at.errorf("include %q: more than %d files or %d MiB; that is not a php-fpm config", truncate(pattern, 80), maxFiles, maxTotalSize>>20)
	}
	l.cfg.Files = append(l.cfg.Files, name)
	l.stack = append(l.stack, name)
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()
	return l.parseFile(name, data)
}

// finish applies php-fpm's defaults and its checks of the whole config,
// in php-fpm's order.
func (l *loader) finish() error {
	g := l.global
	if v, ok := g.get("pid"); ok && v != "" {
		l.cfg.PIDFile = l.fullPath(v, nil, defaultStateDir)
	}
	if n := g.num("log_limit", 1024); n < 512 {
		return g.at("log_limit").errorf("log_limit %d is too small; php-fpm needs at least 512", n)
	}
	if n := g.num("process.max", 0); n < 0 {
		return g.at("process.max").errorf("process.max %d is negative; use 0 for no limit", n)
	}
	if err := checkPriority(g); err != nil {
		return err
	}
	errorLog, ok := g.get("error_log")
	if !ok {
		errorLog = "log/php-fpm.log"
	}
	if !strings.EqualFold(errorLog, "syslog") {
		errorLog = l.fullPath(errorLog, nil, defaultStateDir)
	}
	l.cfg.ErrorLog = errorLog

	if len(l.pools) == 0 {
		return errorf("reading php-fpm config %s: no pool sections; php-fpm needs at least one, such as [www] with a listen address", l.cfg.Path)
	}
	// listens holds every listen address with its pool, the hidden
	// <pool>_status pools of pm.status_listen included, in php-fpm's order.
	type listener struct {
		pool, addr string
		at         where
	}
	var listens, statusListens []listener
	for _, s := range l.pools {
		p, err := l.finishPool(s)
		if err != nil {
			return err
		}
		l.cfg.Pools = append(l.cfg.Pools, p)
		listens = append(listens, listener{p.Name, p.Listen, s.at("listen")})
		if _, ok := s.get("pm.status_listen"); ok {
			statusListens = append(statusListens, listener{p.Name + "_status", l.statusListen(s), s.at("pm.status_listen")})
		}
	}
	listens = append(listens, statusListens...)
	for i, a := range listens {
		for _, b := range listens[i+1:] {
			if a.addr == b.addr {
				return b.at.errorf("pool %q listens on %q, which pool %q already uses; give each pool its own address", b.pool, a.addr, a.pool)
			}
		}
	}
	return nil
}

func checkPriority(s *section) error {
	// 64 is php-fpm's "unset".
	if n := s.num("process.priority", 64); n != 64 && (n < -19 || n > 20) {
		return s.at("process.priority").errorf("process.priority %d is out of range; use -19 to 20", n)
	}
	return nil
}

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

// iniOp applies one of the INI integer operators, in C int, as PHP's
// zend_ini_do_op does.
func iniOp(op byte, a, b string) string {
	x, y := int32(strtol(a)), int32(strtol(b))
	var r int32
	switch op {
	case '|':
		r = x | y
	case '&':
		r = x & y
	case '^':
		r = x ^ y
	case '~':
		r = ^x
	case '!':
		if x == 0 {
			r = 1
		}
	}
	return strconv.Itoa(int(r))
}

// Reading files through the root.

// cleanAbs makes p an absolute, clean path inside the root: ".." cannot
// climb above "/".
func cleanAbs(p string) string {
	return path.Clean("/" + p)
}

// rel is an in-root path as the os.Root methods take it.
func rel(p string) string {
	if p = strings.TrimPrefix(cleanAbs(p), "/"); p == "" {
		return "."
	}
	return p
}

// resolve follows the symbolic links in an in-root path the way the master
// sees them: an absolute target starts again at the root, and ".." stops
// there. Through /proc/PID/root the kernel would instead resolve an
// absolute link against this host's root, which for /var/run -> /run finds
// the wrong socket, and for a hostile container finds the host's files.
// If a component is missing, the rest is returned unresolved.
func (l *loader) resolve(p string) (string, error) {
	p = cleanAbs(p)
	if l.root == "" {
		return p, nil
	}
	const maxLinks = 40
	links := 0
	done, rest := "/", p
	for rest != "/" {
		comp, tail, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
		next := path.Join(done, comp)
		fi, err := l.fsys.Lstat(rel(next))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return path.Join(next, tail), nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done, rest = next, "/"+tail
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := l.fsys.Readlink(rel(next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(done, target)
		}
		done, rest = "/", cleanAbs(target+"/"+tail)
	}
	return done, nil
}

// hostPathLenient is where an in-root path is on this host, for a socket
// that may not exist yet: on any trouble it falls back to plain joining.
func (l *loader) hostPathLenient(p string) string {
	if l.root == "" {
		return p
	}
	if r, err := l.resolve(p); err == nil {
		p = r
	}
	return filepath.Join(l.root, cleanAbs(p))
}

func (l *loader) stat(p string) (fs.FileInfo, error) {
	if l.root == "" {
		return os.Stat(p)
	}
	r, err := l.resolve(p)
	if err != nil {
		return nil, err
	}
	return l.fsys.Stat(rel(r))
}

// exists reports whether a path names anything, a dangling symbolic link
// included, as glob(3) checks names without wildcards.
func (l *loader) exists(p string) bool {
	if l.root == "" {
		_, err := os.Lstat(p)
		return err == nil
	}
	p = cleanAbs(p)
	dir, err := l.resolve(path.Dir(p))
	if err != nil {
		return false
	}
	_, err = l.fsys.Lstat(rel(path.Join(dir, path.Base(p))))
	return err == nil
}

// readFile reads a config file, which must be a regular file: a FIFO would
// block and a device could be endless. O_NONBLOCK keeps the open itself
// from blocking on a FIFO.
func (l *loader) readFile(p string) ([]byte, error) {
	var f *os.File
	var err error
	if l.root == "" {
		f, err = os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	} else {
		var r string
		if r, err = l.resolve(p); err == nil {
			f, err = l.fsys.OpenFile(rel(r), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		}
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			// Name the file as php-fpm would, not by the root's name.
			err = &fs.PathError{Op: "open", Path: p, Err: pe.Err}
		}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB; that is not a php-fpm config", p, maxFileSize>>20)
	}
	return data, nil
}

func (l *loader) readDirNames(dir string) ([]string, error) {
	var f *os.File
	var err error
	// O_DIRECTORY fails at once on anything else, such as a FIFO.
	const flags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_DIRECTORY
	if l.root == "" {
		f, err = os.OpenFile(dir, flags, 0)
	} else {
		var r string
		if r, err = l.resolve(dir); err == nil {
			f, err = l.fsys.OpenFile(rel(r), flags, 0)
		}
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = &fs.PathError{Op: "open", Path: dir, Err: pe.Err}
		}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// glob lists the paths a pattern matches, as glibc's glob(3) does with
// php-fpm's GLOB_ERR: a directory that a wildcard must be matched in has
// to be readable, even when missing (unless it is a file), while a path
// without wildcards that does not exist simply matches nothing. Names
// starting with a dot need a dot in the pattern, and the result is sorted
// by bytes.
func (l *loader) glob(pattern string) ([]string, error) {
	pattern = cleanAbs(pattern)
	if !hasMeta(pattern) {
		if !l.exists(pattern) {
			return nil, nil
		}
		return []string{pattern}, nil
	}
	matches := []string{"/"}
	seenMeta := false
	for _, comp := range strings.Split(strings.TrimPrefix(pattern, "/"), "/") {
		var next []string
		for _, dir := range matches {
			if !hasMeta(comp) {
				p := path.Join(dir, comp)
				if !seenMeta || l.exists(p) {
					next = append(next, p)
				}
				continue
			}
			names, err := l.readDirNames(dir)
			if errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(comp, ".") {
					continue
				}
				// fnmatch's [!a] is Go's [^a]. A pattern Go cannot parse
				// matches nothing, as glibc takes its odd [ literally.
				if ok, _ := path.Match(strings.ReplaceAll(comp, "[!", "[^"), name); ok {
					next = append(next, path.Join(dir, name))
				}
			}
		}
		seenMeta = seenMeta || hasMeta(comp)
		matches = next
	}
	slices.Sort(matches)
	return matches, nil
}

func hasMeta(p string) bool {
	return strings.ContainsAny(p, `*?[\`)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// The INI syntax.
//
// PHP's INI scanner (Zend/zend_ini_scanner.l, ZEND_INI_SCANNER_NORMAL) is
// a longest-match lexer with states; iniLine walks a line the same way,
// state by state, and builds the values as its parser would. The grammar
// (Zend/zend_ini_parser.y) is small: statements are [section],
// name = value and name[key] = value; a value is text, quoted strings and
// ${VAR}s run together, or integer operators over them, or a lone boolean
// word. PHP constants in values (E_ALL, PHP_OS) are not replaced, as
// nothing this package reads ever holds one.

type stmtKind int

const (
	stmtEntry stmtKind = iota
	stmtSection
	stmtArray
)

// stmt is one statement of a line.
type stmt struct {
	kind    stmtKind
	name    string // section name, or directive
	key     string // the key of name[key]
	value   string
	noValue bool // a name with no "= value"
}

type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

type iniLine struct {
	b       []byte
	i       int
	getenv  func(string) (string, bool)
	stopped bool // PHP's scanner met a byte it has no rule for: it ends the line there
}

func (p *iniLine) errorf(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...)}
}

func (p *iniLine) peek(off int) byte {
	if p.i+off < len(p.b) {
		return p.b[p.i+off]
	}
	return 0
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func (p *iniLine) skipBlanks() {
	for p.i < len(p.b) && isBlank(p.b[p.i]) {
		p.i++
	}
}

// isLabelChar is the scanner's LABEL class: directive and ${VAR} names.
func isLabelChar(c byte) bool {
	return strings.IndexByte("=\n\r\t;&|^$~(){}!\"[]\x00", c) < 0
}

// newline consumes "\r\n", "\r" or "\n" if one is next.
func (p *iniLine) newline() bool {
	switch p.peek(0) {
	case '\r':
		p.i++
		if p.peek(0) == '\n' {
			p.i++
		}
		return true
	case '\n':
		p.i++
		return true
	}
	return false
}

// comment consumes a ";" comment, which PHP ends only at a newline.
func (p *iniLine) comment() bool {
	j := p.i
	for j < len(p.b) && p.b[j] != '\n' && p.b[j] != '\r' {
		j++
	}
	if j == len(p.b) {
		return false
	}
	p.i = j
	return p.newline()
}

// each calls fn for each statement of the line, in order.
func (p *iniLine) each(fn func(stmt) error) error {
	for !p.stopped {
		p.skipBlanks()
		if p.i >= len(p.b) {
			return nil
		}
		switch c := p.b[p.i]; {
		case c == '\n' || c == '\r':
			p.newline()
			continue
		case c == ';':
			if !p.comment() {
				return nil
			}
			continue
		case c == '[':
			p.i++
			name, err := p.bracketed(false)
			if err != nil {
				return err
			}
			// "]" may be followed by blanks and a newline.
			p.skipBlanks()
			p.newline()
			if err := fn(stmt{kind: stmtSection, name: name}); err != nil {
				return err
			}
			continue
		case !isLabelChar(c):
			return p.errorf("unexpected %q", c)
		}
		start := p.i
		for p.i < len(p.b) && isLabelChar(p.b[p.i]) {
			p.i++
		}
		name := strings.TrimRight(string(p.b[start:p.i]), " ")
		st := stmt{kind: stmtEntry, name: name}
		if p.peek(0) == '[' {
			p.i++
			p.skipBlanks()
			key, err := p.bracketed(true)
			if err != nil {
				return err
			}
			st.kind, st.key = stmtArray, key
		}
		p.skipBlanks()
		if p.peek(0) != '=' {
			if st.kind == stmtArray {
				return p.errorf("%s[%s] has no \"= value\"", name, st.key)
			}
			// PHP passes a lone name to php-fpm without a value,
			// which php-fpm refuses.
			st.noValue = true
			return fn(st)
		}
		p.i++
		p.skipBlanks()
		v, err := p.value()
		if err != nil {
			return err
		}
		st.value = v
		if err := fn(st); err != nil {
			return err
		}
	}
	return nil
}

// bracketed reads a section name up to "]", or the key of name[key] (the
// scanner's ST_SECTION_VALUE and ST_OFFSET states). A key loses blanks
// before its "]", a section name keeps them.
func (p *iniLine) bracketed(isKey bool) (string, error) {
	var sb strings.Builder
	for {
		if p.i >= len(p.b) {
			return "", p.errorf("missing ]")
		}
		c := p.b[p.i]
		j := p.i
		for j < len(p.b) && isBlank(p.b[j]) {
			j++
		}
		switch {
		case c == ']' || isKey && j < len(p.b) && p.b[j] == ']':
			p.i = j + 1
			return sb.String(), nil
		case c == '"' || j > p.i && j < len(p.b) && p.b[j] == '"':
			p.i = j
			s, err := p.quoted()
			if err != nil {
				return "", err
			}
			sb.WriteString(s)
		case c == '\'':
			s, ok := p.raw()
			if !ok {
				return "", p.errorf("unterminated '")
			}
			sb.WriteString(s)
		case c == '$' && p.peek(1) == '{':
			v, err := p.variable()
			if err != nil {
				return "", err
			}
			sb.WriteString(v)
		default:
			n := p.textLen(`$`+"\n\r;\"']\\", true)
			if n == 0 {
				return "", p.errorf("unexpected %q", c)
			}
			sb.Write(p.b[p.i : p.i+n])
			p.i += n
		}
	}
}

// textLen measures a run of plain text starting at p.i: bytes not in stop,
// "$" with the byte after it unless that is "{", and "\" with the byte
// after it where escapes is set. This is the scanner's VALUE_CHARS and
// SECTION_VALUE_CHARS with their LITERAL_DOLLAR.
func (p *iniLine) textLen(stop string, escapes bool) int {
	j := p.i
	for j < len(p.b) {
		c := p.b[j]
		switch {
		case c == '$':
			switch {
			case j+1 >= len(p.b) || p.b[j+1] == '{':
				return j - p.i
			case p.b[j+1] == '\\' && j+2 < len(p.b):
				j += 3
			default:
				j += 2
			}
		case c == '\\' && escapes:
			if j+1 >= len(p.b) {
				return j - p.i
			}
			j += 2
		case strings.IndexByte(stop, c) >= 0:
			return j - p.i
		default:
			j++
		}
	}
	return j - p.i
}

// raw reads a single-quoted string, taken as is. PHP wants at least one
// byte between the quotes.
func (p *iniLine) raw() (string, bool) {
	end := bytes.IndexByte(p.b[p.i+1:], '\'')
	if end < 1 {
		return "", false
	}
	s := string(p.b[p.i+1 : p.i+1+end])
	p.i += end + 2
	return s, true
}

// quoted reads a double-quoted string at p.i, with ${VAR}s and the escapes
// \" \\ \$; any other backslash stays. Blanks after the closing quote go.
func (p *iniLine) quoted() (string, error) {
	p.i++
	var sb strings.Builder
	for {
		if p.i >= len(p.b) {
			return "", p.errorf("unterminated \"")
		}
		switch {
		case p.b[p.i] == '"':
			p.i++
			p.skipBlanks()
			return sb.String(), nil
		case p.b[p.i] == '$' && p.peek(1) == '{':
			v, err := p.variable()
			if err != nil {
				return "", err
			}
			sb.WriteString(v)
			continue
		}
		start := p.i
	chunk:
		for p.i < len(p.b) {
			switch c := p.b[p.i]; {
			case c == '"', c == '$' && p.peek(1) == '{':
				break chunk
			case c == '\\' && p.i+1 < len(p.b):
				// PHP's special case for Windows paths: \" at the end of
				// the line is a backslash and the closing quote.
				if p.b[p.i+1] == '"' && (p.i+2 >= len(p.b) || p.b[p.i+2] == '\n' || p.b[p.i+2] == '\r') {
					p.i++
					break chunk
				}
				p.i += 2
			default:
				p.i++
			}
		}
		sb.WriteString(unescape(p.b[start:p.i]))
	}
}

func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) && strings.IndexByte(`"\$`, b[i+1]) >= 0 {
			i++
		}
		sb.WriteByte(b[i])
	}
	return sb.String()
}

// variable reads ${NAME} at p.i: the environment variable, or "" if it is
// unset. PHP 8.3 added ${NAME:-default}; before it the whole text was the
// name, which no environment holds, so taking the default is safe.
func (p *iniLine) variable() (string, error) {
	p.i += 2
	start := p.i
	for p.i < len(p.b) && isLabelChar(p.b[p.i]) {
		p.i++
	}
	if p.peek(0) != '}' || p.i == start {
		return "", p.errorf("${ without a name and a closing }")
	}
	name := strings.Trim(string(p.b[start:p.i]), " ")
	p.i++
	name, def, hasDef := strings.Cut(name, ":-")
	if v, ok := p.getenv(name); ok {
		return v, nil
	}
	if hasDef {
		return def, nil
	}
	return "", nil
}

// Value tokens, from the scanner's ST_VALUE state.
type vkind int

const (
	vEnd    vkind = iota // no rule matches: the scanner ends the line
	vEOL                 // newline or comment: the value is over
	vText                // text, a quoted string, a ${VAR}, or blanks between them
	vBool                // a lone yes/no word, as "1" or ""
	vOp                  // | & ^ ~ ! ( )
	vEquals              // "=", which PHP refuses inside a value
)

type vtok struct {
	kind vkind
	text string
	op   byte
}

var boolWords = []struct {
	word, value string
}{
	{"false", ""}, {"none", ""}, {"null", ""}, {"true", "1"},
	{"yes", "1"}, {"off", ""}, {"on", "1"}, {"no", ""},
}

func (p *iniLine) token() (vtok, error) {
	if p.i >= len(p.b) {
		return vtok{kind: vEnd}, nil
	}
	c := p.b[p.i]
	if isBlank(c) {
		// Blanks before a newline, a comment or a quote disappear.
		j := p.i
		for j < len(p.b) && isBlank(p.b[j]) {
			j++
		}
		save := p.i
		p.i = j
		switch {
		case p.newline():
			return vtok{kind: vEOL}, nil
		case p.peek(0) == ';' && p.comment():
			return vtok{kind: vEOL}, nil
		case p.peek(0) == '"':
			s, err := p.quoted()
			return vtok{kind: vText, text: s}, err
		}
		return vtok{kind: vText, text: string(p.b[save:j])}, nil
	}
	switch c {
	case '\n', '\r':
		p.newline()
		return vtok{kind: vEOL}, nil
	case ';':
		if p.comment() {
			return vtok{kind: vEOL}, nil
		}
		return vtok{kind: vEnd}, nil
	case '"':
		s, err := p.quoted()
		return vtok{kind: vText, text: s}, err
	case '\'':
		if s, ok := p.raw(); ok {
			return vtok{kind: vText, text: s}, nil
		}
		// A quote that opens nothing ends the line, except that php-fpm
		// refuses '' outright.
		if p.peek(1) == '\'' {
			return vtok{}, p.errorf("'' is not an empty string here; use \"\"")
		}
		return vtok{kind: vEnd}, nil
	case '=':
		return vtok{kind: vEquals}, nil
	case '&', '|', '^', '~', '!', '(', ')':
		p.i++
		p.skipBlanks()
		return vtok{kind: vOp, op: c}, nil
	case '$':
		if p.peek(1) == '{' {
			v, err := p.variable()
			return vtok{kind: vText, text: v}, err
		}
	}
	n := p.textLen("$= \t\n\r;&|^~()!\"'", false)
	// A yes/no word wins over text of the same length or shorter; its
	// match includes the blanks after it.
	for _, w := range boolWords {
		if len(p.b)-p.i >= len(w.word) && strings.EqualFold(string(p.b[p.i:p.i+len(w.word)]), w.word) {
			j := p.i + len(w.word)
			for j < len(p.b) && isBlank(p.b[j]) {
				j++
			}
			if j-p.i >= n {
				p.i = j
				return vtok{kind: vBool, text: w.value}, nil
			}
			break
		}
	}
	if n == 0 {
		return vtok{kind: vEnd}, nil
	}
	t := vtok{kind: vText, text: string(p.b[p.i : p.i+n])}
	p.i += n
	return t, nil
}

// value parses the value after "=", up to the end of its line.
func (p *iniLine) value() (string, error) {
	vp := &valueParser{p: p}
	if err := vp.next(); err != nil {
		return "", err
	}
	var v string
	switch vp.t.kind {
	case vEOL:
		return "", nil
	case vBool:
		v = vp.t.text
		if err := vp.next(); err != nil {
			return "", err
		}
		if vp.t.kind != vEOL && vp.t.kind != vEnd {
			vp.t.kind = vBool // it is the yes/no word that does not fit
		}
	default:
		var err error
		if v, err = vp.expr(); err != nil {
			return "", err
		}
	}
	switch vp.t.kind {
	case vEOL:
		return v, nil
	case vEnd:
		p.stopped = true
		return v, nil
	}
	return "", vp.unexpected()
}

type valueParser struct {
	p *iniLine
	t vtok
}

func (vp *valueParser) next() error {
	var err error
	vp.t, err = vp.p.token()
	return err
}

func (vp *valueParser) unexpected() error {
	const hint = `; put such a value in "double quotes"`
	switch vp.t.kind {
	case vOp:
		return vp.p.errorf("%q is an operator in a php-fpm value%s", vp.t.op, hint)
	case vEquals:
		return vp.p.errorf("'=' in a value%s", hint)
	case vBool:
		return vp.p.errorf("yes/no/on/off/true/false/none/null among other words%s", hint)
	}
	return vp.p.errorf("the value is incomplete (an unclosed quote or a dangling operator)")
}

// expr is "unary (op unary)*" with | & ^ of equal precedence, left to right.
func (vp *valueParser) expr() (string, error) {
	v, err := vp.unary()
	if err != nil {
		return "", err
	}
	for vp.t.kind == vOp && strings.IndexByte("|&^", vp.t.op) >= 0 {
		op := vp.t.op
		if err := vp.next(); err != nil {
			return "", err
		}
		r, err := vp.unary()
		if err != nil {
			return "", err
		}
		v = iniOp(op, v, r)
	}
	return v, nil
}

func (vp *valueParser) unary() (string, error) {
	switch {
	case vp.t.kind == vOp && (vp.t.op == '~' || vp.t.op == '!'):
		op := vp.t.op
		if err := vp.next(); err != nil {
			return "", err
		}
		v, err := vp.unary()
		return iniOp(op, v, ""), err
	case vp.t.kind == vOp && vp.t.op == '(':
		if err := vp.next(); err != nil {
			return "", err
		}
		v, err := vp.expr()
		if err != nil {
			return "", err
		}
		if vp.t.kind != vOp || vp.t.op != ')' {
			return "", vp.p.errorf("( without )")
		}
		return v, vp.next()
	case vp.t.kind == vText:
		var sb strings.Builder
		for vp.t.kind == vText {
			sb.WriteString(vp.t.text)
			if err := vp.next(); err != nil {
				return "", err
			}
		}
		return sb.String(), nil
	}
	return "", vp.unexpected()
}
