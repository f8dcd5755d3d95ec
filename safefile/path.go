package safefile

// Whether only root can change what a path names.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRootOnly marks a file, link or directory someone other than root
// may change.
var ErrNotRootOnly = errors.New("someone other than root may change it")

// OnlyRootMayChange checks that only root can change what path names, for
// a file a program opens by name (a config php-fpm is run on): the file,
// every directory on the way to it, and every directory holding a link on
// the way, belong to root and no one else may write them. A sticky
// directory (/tmp) may be writable by all: there only an entry's owner may
// rename or remove it.
func OnlyRootMayChange(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	dir := "/"
	if err := rootOnly(dir); err != nil {
		return err
	}
	comps := split(abs)
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case ".":
			continue
		case "..":
			dir = filepath.Dir(dir) // checked on the way in
			continue
		}
		next := filepath.Join(dir, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// The link's directory, dir, was checked: only root may
			// change the link. Its target is walked from here.
			if links++; links > maxLinks {
				return &fs.PathError{Op: "lstat", Path: path, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				dir = "/"
			}
			comps = append(split(target), comps...)
			continue
		}
		if err := rootOnly(next); err != nil {
			return err
		}
		if len(comps) == 0 {
			if !fi.Mode().IsRegular() {
				return &fs.PathError{Op: "stat", Path: next, Err: ErrNotRegular}
			}
			return nil
		}
		if !fi.IsDir() {
			return &fs.PathError{Op: "stat", Path: next, Err: syscall.ENOTDIR}
		}
		dir = next
	}
	return &fs.PathError{Op: "stat", Path: path, Err: ErrNotRegular}
}

// rootOnly checks that only root may change the file or directory at p.
func rootOnly(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &fs.PathError{Op: "stat", Path: p, Err: errors.New("no owner and mode in its stat")}
	}
	sticky := fi.IsDir() && fi.Mode()&fs.ModeSticky != 0
	switch {
	case st.Uid != 0:
		return &fs.PathError{Op: "stat", Path: p, Err: fmt.Errorf("%w: owned by uid %d", ErrNotRootOnly, st.Uid)}
	case st.Mode&0o022 != 0 && !sticky:
		return &fs.PathError{Op: "stat", Path: p, Err: fmt.Errorf("%w: mode %04o", ErrNotRootOnly, st.Mode&0o7777)}
	}
	return nil
}
