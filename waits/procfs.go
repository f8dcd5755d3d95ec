package waits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procFS reads /proc: the host's, or files captured from it in tests.
// Names are relative to /proc, e.g. "123/stat" or "locks".
type procFS interface {
	readFile(name string) ([]byte, error)
	readLink(name string) (string, error)
	readDir(name string) ([]string, error)
	// fileID is the device and inode of the file name leads to: for
	// /proc/PID/fd/N, the open file itself, whatever its path.
	fileID(name string) (fileID, error)
	// readMem reads len(b) bytes of pid's memory at addr.
	readMem(pid int, addr uint64, b []byte) error
	// sockProto reads the protocol of the socket name leads to, as the
	// kernel names it: TCP, TCPv6, UDP, UDPv6, UNIX-STREAM, ...
	sockProto(name string) (string, error)
}

// fileID names a file by device and inode, as /proc/locks does.
type fileID struct {
	major, minor uint32
	ino          uint64
}

// hostProc is this host's /proc.
type hostProc struct{ root string }

func (h hostProc) path(name string) string { return h.root + "/" + name }

// readFile reads a small /proc file with open, read, close: os.ReadFile
// also stats it and offers it to the netpoller, which refuses /proc files,
// and that doubles the system calls of a reading of 50 workers.
func (h hostProc) readFile(name string) ([]byte, error) {
	path := h.path(name)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

func (h hostProc) readLink(name string) (string, error) { return os.Readlink(h.path(name)) }

func (h hostProc) readDir(name string) ([]string, error) {
	f, err := os.Open(h.path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func (h hostProc) fileID(name string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(h.path(name), &st); err != nil {
		return fileID{}, &fs.PathError{Op: "stat", Path: h.path(name), Err: err}
	}
	return fileID{major: unix.Major(st.Dev), minor: unix.Minor(st.Dev), ino: st.Ino}, nil
}

func (h hostProc) readMem(pid int, addr uint64, b []byte) error {
	path := h.path(strconv.Itoa(pid) + "/mem")
	if addr > 1<<63-1 {
		return fmt.Errorf("reading %s: address %#x out of range", path, addr)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n, err := unix.Pread(fd, b, int64(addr))
	switch {
	case err != nil:
		return &fs.PathError{Op: "read", Path: path, Err: err}
	case n < len(b):
		return fmt.Errorf("reading %s at %#x: %d of %d bytes", path, addr, n, len(b))
	}
	return nil
}

func (h hostProc) sockProto(name string) (string, error) {
	b := make([]byte, 32)
	n, err := unix.Getxattr(h.path(name), "system.sockprotoname", b)
	if err != nil {
		return "", &fs.PathError{Op: "getxattr", Path: h.path(name), Err: err}
	}
	return string(bytes.TrimRight(b[:n], "\x00")), nil
}

// procStat is what /proc/PID/stat and schedstat say of a process.
type procStat struct {
	state byte
	ppid  int
	start uint64 // clock ticks since boot
	runs  uint64 // times it ran on a CPU (schedstat): unchanged, it did not run
}

// readStat reads a process's state, parent, start time and run count.
func readStat(p procFS, pid int) (procStat, error) {
	var s procStat
	b, err := p.readFile(strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, err
	}
	// The command name, between parentheses, may hold anything: read from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("reading /proc/%d/stat: no ')' in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return s, fmt.Errorf("reading /proc/%d/stat: %d fields", pid, len(f))
	}
	s.state = f[0][0]
	s.ppid, _ = strconv.Atoi(f[1])
	s.start, _ = strconv.ParseUint(f[19], 10, 64)
	if b, err := p.readFile(strconv.Itoa(pid) + "/schedstat"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			s.runs, _ = strconv.ParseUint(f[2], 10, 64)
		}
	}
	return s, nil
}

// sysCall is a line of /proc/PID/syscall.
type sysCall struct {
	running bool   // on a CPU: no call to read
	user    bool   // blocked, but not in a system call (-1)
	nr      uint64 // the call's number
	args    [6]uint64
	line    string // as read, to tell whether it changed
}

// parseSyscall reads "NR ARG1 ... ARG6 SP PC", "-1 SP PC" or "running".
func parseSyscall(b []byte) (sysCall, error) {
	line := strings.TrimSpace(string(b))
	sc := sysCall{line: line}
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "running":
		sc.running = true
		return sc, nil
	case len(f) == 3 && f[0] == "-1":
		sc.user = true
		return sc, nil
	case len(f) != 9:
		return sc, fmt.Errorf("unexpected /proc/PID/syscall line %q", line)
	}
	nr, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return sc, fmt.Errorf("unexpected /proc/PID/syscall line %q", line)
	}
	sc.nr = nr
	for i := range sc.args {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i+1], "0x"), 16, 64)
		if err != nil {
			return sc, fmt.Errorf("unexpected /proc/PID/syscall line %q", line)
		}
		sc.args[i] = v
	}
	return sc, nil
}

// fdTarget reads what fd points at: "socket:[123]", "pipe:[45]", a path,
// "anon_inode:[eventpoll]".
func fdTarget(p procFS, pid, fd int) (string, error) {
	return p.readLink(strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
}

// socketInode reads the inode of a socket's link target, false for any
// other file.
func socketInode(target string) (uint32, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
	return uint32(n), err == nil
}

// listFDs lists a process's open descriptors.
func listFDs(p procFS, pid int) ([]int, error) {
	names, err := p.readDir(strconv.Itoa(pid) + "/fd")
	if err != nil {
		return nil, err
	}
	fds := make([]int, 0, len(names))
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// epollTargets reads the descriptors an epoll instance watches and the
// events it watches each for, from /proc/PID/fdinfo/EPFD.
func epollTargets(b []byte) map[int]uint32 {
	out := map[int]uint32{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// tfd: 5 events: 19 data: ...
		if len(f) < 4 || f[0] != "tfd:" || f[2] != "events:" {
			continue
		}
		fd, err1 := strconv.Atoi(f[1])
		ev, err2 := strconv.ParseUint(f[3], 16, 32)
		if err1 == nil && err2 == nil {
			out[fd] = uint32(ev)
		}
	}
	return out
}

// gone reports whether err says the process is no more.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

// denied reports whether err is a refusal to read.
func denied(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

// inRoot makes a path the kernel shows from fpmguard's root into the path
// the worker sees from its own root, when the worker is chrooted below
// fpmguard's root. A worker in another mount namespace already shows its
// own paths.
func inRoot(root, p string) string {
	if root == "" || root == "/" || !filepath.IsAbs(p) {
		return p
	}
	if rest, ok := strings.CutPrefix(p, root); ok && (rest == "" || rest[0] == '/') {
		if rest == "" {
			return "/"
		}
		return rest
	}
	return p
}
