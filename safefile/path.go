package safefile

// Whether only root can change what a path names.

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrNotRootOnly marks a file, link or directory someone other than root
// may change.
var ErrNotRootOnly = errors.New("someone other than root may change it")

// OnlyRootMayChange checks that only root can change what path names, for
// a file a program opens by name (a config php-fpm is run on): the file,
// every directory on the way to it, and every directory holding a link on
// the way, belong to root and no one else may write them. A sticky
// directory (/tmp) may be writable by all: there only an entry's owner may
// rename or remove it. The path is walked as the kernel walks it, from
// descriptors held (walkIn).
func OnlyRootMayChange(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	rootfd, err := retryEINTR(func() (int, error) { return unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(rootfd)
	var st unix.Stat_t
	if err := unix.Fstat(rootfd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: "/", Err: err}
	}
	if err := rootOnly("/", &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	fd, err := walkIn(rootfd, abs, unix.O_PATH|unix.O_CLOEXEC, rootOnly)
	if err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &fs.PathError{Op: "stat", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(st.Mode))}
	}
	if err := rootOnly(filepath.Base(abs), &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return nil
}

// rootOnly checks that only root may change the file or directory name,
// of stat st.
func rootOnly(name string, st *unix.Stat_t) error {
	sticky := st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mode&unix.S_ISVTX != 0
	switch {
	case st.Uid != 0:
		return fmt.Errorf("%s: %w (owned by uid %d)", name, ErrNotRootOnly, st.Uid)
	case st.Mode&0o022 != 0 && !sticky:
		return fmt.Errorf("%s: %w (mode %04o)", name, ErrNotRootOnly, st.Mode&0o7777)
	}
	return nil
}
