package safefile

// Opening a path inside a root, as the processes living in it see it.

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks is how many symbolic links one path may pass through, as the
// kernel allows (ELOOP beyond).
const maxLinks = 40

// useOpenat2 is false where the kernel lacks openat2 (before Linux 5.6) or
// a seccomp profile refuses it: the walk below does the same in user
// space. Tests clear it to exercise the walk.
var useOpenat2 = true

// openIn opens path inside root with flags. Inside a root (root not "" nor
// "/"), every link resolves against the root, as its processes see it: an
// absolute target starts again at the root and ".." stops there, so
// nothing leads out of it, whatever is swapped in while fpmguard looks.
// The root itself may be a magic link such as /proc/PID/root: it is
// followed once, to the process's root. A magic link inside it (its own
// /proc/self/root, say) is refused by openat2, and read as a plain link
// inside the root by the walk.
func openIn(root, path string, flags int) (int, error) {
	if root == "" || root == "/" {
		if useOpenat2 {
			fd, err := openat2(unix.AT_FDCWD, path, flags, unix.RESOLVE_NO_MAGICLINKS)
			if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
				return fd, err
			}
		}
		return retryEINTR(func() (int, error) { return unix.Open(path, flags, 0) })
	}
	rootfd, err := retryEINTR(func() (int, error) {
		return unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	if useOpenat2 {
		// The kernel answers EAGAIN when a rename raced its ".." check:
		// try again, then walk.
		for try := 0; try < 3; try++ {
			fd, err := openat2(rootfd, path, flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
				return fd, err
			}
			break
		}
	}
	return walkIn(rootfd, path, flags, nil)
}

func openat2(dirfd int, path string, flags int, resolve uint64) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
	return retryEINTR(func() (int, error) { return unix.Openat2(dirfd, path, how) })
}

func retryEINTR(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// walkIn resolves path inside the directory rootfd one component at a
// time, as openat2's RESOLVE_IN_ROOT does: every step is relative to a
// descriptor fpmguard holds, ".." is taken from its own stack of
// directories (never past the root), and a link's target is read and
// walked here, an absolute one from the root again. visit, when set, is
// called with each directory walked into, and stops the walk with its
// error: the directories holding every name on the way, links included.
func walkIn(rootfd int, path string, flags int, visit func(name string, st *unix.Stat_t) error) (int, error) {
	dirs := []int{rootfd} // dirs[0] is the caller's
	defer func() {
		for _, d := range dirs[1:] {
			unix.Close(d)
		}
	}()
	comps := split(path)
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case ".":
			continue
		case "..":
			if len(dirs) > 1 {
				unix.Close(dirs[len(dirs)-1])
				dirs = dirs[:len(dirs)-1]
			}
			continue
		}
		dir := dirs[len(dirs)-1]
		fd, err := retryEINTR(func() (int, error) {
			return unix.Openat(dir, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		last := len(comps) == 0
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if last && flags&unix.O_NOFOLLOW != 0 {
				unix.Close(fd)
				return -1, unix.ELOOP
			}
			links++
			target, err := readlink(fd)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if links > maxLinks {
				return -1, unix.ELOOP
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range dirs[1:] {
					unix.Close(d)
				}
				dirs = dirs[:1]
			}
			comps = append(split(target), comps...)
		case unix.S_IFDIR:
			if last {
				unix.Close(fd)
				return retryEINTR(func() (int, error) { return unix.Openat(dir, c, flags|unix.O_NOFOLLOW, 0) })
			}
			if visit != nil {
				if err := visit(c, &st); err != nil {
					unix.Close(fd)
					return -1, err
				}
			}
			dirs = append(dirs, fd)
		default:
			unix.Close(fd)
			if !last {
				return -1, unix.ENOTDIR
			}
			// It was no link a moment ago; if it is one now, O_NOFOLLOW
			// refuses it. Whatever is opened, the caller checks the
			// descriptor.
			return retryEINTR(func() (int, error) { return unix.Openat(dir, c, flags|unix.O_NOFOLLOW, 0) })
		}
	}
	// The path named the root, or climbed back to a directory.
	return retryEINTR(func() (int, error) { return unix.Openat(dirs[len(dirs)-1], ".", flags, 0) })
}

// readlink reads the target of the link fd holds (an O_PATH descriptor of
// the link itself).
func readlink(fd int) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= unix.PathMax {
			return "", unix.ENAMETOOLONG
		}
		buf = make([]byte, len(buf)*4)
	}
}

// split cuts a path into its components, without empty ones.
func split(path string) []string {
	var out []string
	for _, c := range strings.Split(path, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
