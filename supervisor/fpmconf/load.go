package fpmconf

// The loader: files, lines, sections and includes, then whole-config checks.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

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
	file   string
	line   int
	redact bool // quote nothing of the file: Options.Redact
}

// errorf says what is wrong at w. Its string and error arguments hold
// what the files say; with redact they are left out.
func (w where) errorf(format string, args ...any) error {
	if w.redact {
		args = slices.Clone(args)
		for i, a := range args {
			switch a := a.(type) {
			case string:
				args[i] = redacted
			case error:
				args[i] = redactedError{a}
			}
		}
	}
	return errorf("reading %s:%d: "+format, append([]any{w.file, w.line}, args...)...)
}

// redacted stands for what a file said, in errors that must not quote it.
const redacted = "(not shown)"

// redactedError keeps an error for errors.Is and errors.As, but shows of
// it only what names no content: a system call and its errno.
type redactedError struct{ err error }

func (e redactedError) Error() string {
	var pe *fs.PathError
	if errors.As(e.err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return redacted
}

func (e redactedError) Unwrap() error { return e.err }

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
	// suppress lists the access.suppress_path[] values, in order.
	suppress []string
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
		l.getenv = func(string) (string, bool) { return "", false }
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
		at := where{file: name, line: n + 1, redact: l.opts.Redact}
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
	case "access.suppress_path":
		l.cur.suppress = append(l.cur.suppress, st.value)
	case "php_value", "php_admin_value":
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
