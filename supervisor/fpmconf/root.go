package fpmconf

// Reading files through the root, with links and globs as the master sees them.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/fpmguard/fpmguard/safefile"
)

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

// readFile reads a config file through safefile: a regular file (a FIFO
// would block and a device could be endless) of at most maxFileSize, that
// passes Options.Files, reached through links resolved inside the root as
// the master resolves them.
func (l *loader) readFile(p string) ([]byte, error) {
	rules := l.opts.Files
	rules.MaxBytes = maxFileSize
	rules.FollowLinks = true
	return safefile.ReadFile(l.root, p, rules)
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
