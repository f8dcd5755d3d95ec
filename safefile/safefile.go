// Package safefile reads files that someone other than fpmguard may
// control: pid files, slowlogs, php-fpm configs, in this root or inside
// another process's root (/proc/PID/root). fpmguard runs as root, and the
// user of a pool may own the directory such a file lives in (Debian's
// /run/php is www-data's), so the file may have been replaced by a link to
// /etc/shadow, a FIFO that blocks every read, /dev/zero, or a file of any
// size.
//
// Every open here:
//   - never follows a symbolic link in the last component unless asked to,
//     and resolves every link inside the root, as the process that lives in
//     it sees them (openat2 RESOLVE_IN_ROOT, or the same walk done here);
//   - never blocks (O_NONBLOCK), and never follows /proc's magic links;
//   - checks the opened descriptor, never the name: a regular file with the
//     expected owner and mode, so a file swapped between a check and the
//     read cannot pass;
//   - reads within a bound given by the caller.
//
// Errors name the path and what was wrong with the file, never what it
// holds.
//
// It imports nothing of fpmguard's: fastcgi, supervisor and watch import it.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Rules say what a file must be for fpmguard to read it.
type Rules struct {
	// MaxBytes bounds the read: a larger file is refused. 0 means 64 KiB.
	MaxBytes int64
	// FollowLinks follows a symbolic link in the last component of the
	// path (inside the root). Links in its directories are always followed
	// inside the root; a link in the last component is refused otherwise.
	FollowLinks bool
	// Owners, when set, are the users one of whom must own the file.
	Owners []uint32
	// NoOtherWrite refuses a file its group or others may write.
	NoOtherWrite bool
	// ReadableBy, when set, refuses a file those credentials could not
	// read: what fpmguard reads on behalf of another process is only what
	// that process could read itself.
	ReadableBy *Cred
}

// DefaultMaxBytes is the bound of a read whose rules name none.
const DefaultMaxBytes = 64 << 10

func (r Rules) maxBytes() int64 {
	if r.MaxBytes > 0 {
		return r.MaxBytes
	}
	return DefaultMaxBytes
}

// Cred is a process's file-system credentials: its user and its groups.
type Cred struct {
	UID  uint32
	GIDs []uint32 // the primary group and the supplementary ones
}

// What a file may be refused for. Errors wrap one of them, or the
// system's error (fs.ErrNotExist, syscall.ELOOP for a link...).
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrOwner      = errors.New("not owned by a user fpmguard trusts for it")
	ErrWritable   = errors.New("writable by its group or by others")
	ErrUnreadable = errors.New("not readable by the process it is read for")
	ErrTooLarge   = errors.New("larger than fpmguard reads")
	ErrNotSocket  = errors.New("not a socket")
)

// ReadFile reads the file at path inside root ("" for this host's own
// root) under rules. It reads the descriptor directly: this runs for
// every pool on every probe (the pid file).
func ReadFile(root, path string, r Rules) ([]byte, error) {
	fd, st, err := openChecked(root, path, r)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// The size checked is only a hint: the file may grow. Read one byte
	// past the bound to know.
	limit := r.maxBytes()
	buf := make([]byte, min(st.Size, limit)+1)
	n := 0
	for {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n += m; m == 0 || n < len(buf) {
			// A short read of a regular file is its end.
			return buf[:n], nil
		}
		if int64(n) > limit {
			return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, limit)}
		}
		buf = append(buf, make([]byte, min(int64(len(buf)), limit+1-int64(len(buf))))...)
	}
}

// Open opens the file at path inside root ("" for this host's own root)
// for reading, and checks the descriptor under rules (MaxBytes against its
// size). The caller reads it, within its own bound, and closes it.
func Open(root, path string, r Rules) (*os.File, fs.FileInfo, error) {
	fd, _, err := openChecked(root, path, r)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return f, fi, nil
}

// openChecked opens path inside root and checks the descriptor under r.
func openChecked(root, path string, r Rules) (int, *unix.Stat_t, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if !r.FollowLinks {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openIn(root, path, flags)
	if err != nil {
		if !r.FollowLinks && errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("a symbolic link, which is not followed here, or a loop of links (%w)", err)
		}
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if testHookOpened != nil {
		testHookOpened(path)
	}
	st := new(unix.Stat_t)
	err = unix.Fstat(fd, st)
	if err == nil {
		err = r.check(st)
	}
	if err != nil {
		unix.Close(fd)
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, st, nil
}

// Check checks an open descriptor under rules, as every open here checks
// its own: for a file the caller had to open another way, such as a
// process's binary through /proc/PID/exe.
func Check(fd int, r Rules) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return r.check(&st)
}

// testHookOpened runs between the open and the checks, for tests that swap
// the file there.
var testHookOpened func(path string)

// check applies the rules to what fstat said of an open file.
func (r Rules) check(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%w (%s)", ErrNotRegular, kind(st.Mode))
	}
	if r.Owners != nil && !contains(r.Owners, st.Uid) {
		return fmt.Errorf("%w: owned by uid %d", ErrOwner, st.Uid)
	}
	if r.NoOtherWrite && st.Mode&0o022 != 0 {
		return fmt.Errorf("%w (mode %04o)", ErrWritable, st.Mode&0o7777)
	}
	if r.ReadableBy != nil && !r.ReadableBy.canRead(st) {
		return fmt.Errorf("%w (uid %d, mode %04o, owner %d:%d)", ErrUnreadable, r.ReadableBy.UID, st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Size > r.maxBytes() {
		return fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, st.Size, r.maxBytes())
	}
	return nil
}

// canRead reports whether c may read a file of st by its permission bits,
// as the kernel decides for a process without CAP_DAC_OVERRIDE (root has
// it, so root reads anything).
func (c *Cred) canRead(st *unix.Stat_t) bool {
	switch {
	case c.UID == 0:
		return true
	case st.Uid == c.UID:
		return st.Mode&0o400 != 0
	case contains(c.GIDs, st.Gid):
		return st.Mode&0o040 != 0
	}
	return st.Mode&0o004 != 0
}

func contains(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// kind names a file type for messages.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("mode %o", mode)
}

// OpenSocket opens the unix socket at path inside root ("" for this host's
// own root) as an O_PATH descriptor, resolving every link inside the root,
// and checks that it is a socket. Connect to FDPath(fd), then close fd: the
// connection then reaches the socket the root's own processes would, even
// when a link in the root changed since the last look.
func OpenSocket(root, path string) (int, error) {
	fd, err := openIn(root, path, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(fd)
		// What connect(2) answers for a file that is no socket.
		return -1, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%w)", ErrNotSocket, unix.ECONNREFUSED)}
	}
	return fd, nil
}

// FDPath names an open descriptor of this process by path, for connect(2)
// and execve(2), which take a path and follow this one to the very file
// the descriptor holds.
func FDPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
