package phpstack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// proc is one process, held by a descriptor of its /proc directory: every
// file is opened relative to it, so a pid reused by another process after
// the worker exits yields ESRCH rather than the other process's files.
type proc struct {
	pid int
	dir *os.File
}

func openProc(pid int) (*proc, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d is not a process id", pid)
	}
	d, err := os.Open("/proc/" + strconv.Itoa(pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("worker %d: %w", pid, ErrExited)
		}
		return nil, fmt.Errorf("opening /proc/%d: %w", pid, err)
	}
	return &proc{pid: pid, dir: d}, nil
}

func (p *proc) Close() error { return p.dir.Close() }

// open opens one of the process's files, read only.
func (p *proc) open(name string) (*os.File, error) {
	fd, err := unix.Openat(int(p.dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: fmt.Sprintf("/proc/%d/%s", p.pid, name), Err: err}
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("/proc/%d/%s", p.pid, name)), nil
}

// readlink reads one of the process's links.
func (p *proc) readlink(name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(int(p.dir.Fd()), name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// maxProcFile bounds what is read of maps and auxv: a php-fpm worker's
// maps is 20 to 60 KB, with opcache and its extensions.
const maxProcFile = 4 << 20

// readFile reads one of the process's files; size is what it usually
// holds, to read it in one go.
func (p *proc) readFile(name string, size int) ([]byte, error) {
	f, err := p.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// /proc files have no size: read into a buffer of the usual size,
	// grown as needed.
	data := make([]byte, 0, size)
	for {
		if len(data) == cap(data) {
			if len(data) > maxProcFile {
				return nil, fmt.Errorf("/proc/%d/%s is larger than %d MiB", p.pid, name, maxProcFile>>20)
			}
			data = append(data, 0)[:len(data)]
		}
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading /proc/%d/%s: %w", p.pid, name, err)
		}
	}
}

// pfExiting is PF_EXITING in a task's flags (include/linux/sched.h): set
// when the task starts to exit, before its memory is released.
const pfExiting = 0x4

// exited reports whether the process has exited or is exiting, its memory
// gone or going: a failed read is then the worker's exit, not a bad
// pointer.
func (p *proc) exited() bool {
	stat, err := p.readFile("stat", 512)
	if err != nil {
		return errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 {
		return false
	}
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return f[0] == "Z" || f[0] == "X" || flags&pfExiting != 0
}

// entry returns the address the kernel started the executable at
// (AT_ENTRY of the auxiliary vector): with the ELF's entry point, it gives
// the load base whatever path or mount the executable is seen through.
func (p *proc) entry() (uint64, error) {
	auxv, err := p.readFile("auxv", 512)
	if err != nil {
		return 0, err
	}
	const atEntry = 9 // AT_ENTRY
	for i := 0; i+16 <= len(auxv); i += 16 {
		if binary.LittleEndian.Uint64(auxv[i:]) == atEntry {
			return binary.LittleEndian.Uint64(auxv[i+8:]), nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/auxv has no AT_ENTRY", p.pid)
}

// mapping is one readable range of the process's address space.
type mapping struct {
	start, end uint64
	offset     uint64 // in the mapped file
}

// mappings are a process's readable ranges, sorted by address.
type mappings []mapping

// parseMaps reads /proc/PID/maps: "start-end perms offset dev inode path".
// Only readable ranges are kept; [vvar] and [vsyscall] are left out, as
// reads through /proc/PID/mem fail there. It parses the bytes in place: a
// worker has hundreds of mappings, and a line's fields as strings were
// most of a stack read's allocations.
func parseMaps(data []byte) (mappings, error) {
	ms := make(mappings, 0, bytes.Count(data, []byte{'\n'})+1)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) == 0 {
			continue
		}
		m, readable, err := parseMapping(line)
		if err != nil {
			return nil, fmt.Errorf("maps line %q: %w", line, err)
		}
		if readable {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].start < ms[j].start })
	return ms, nil
}

// parseMapping reads one line of maps.
func parseMapping(line []byte) (m mapping, readable bool, err error) {
	field := func() []byte {
		line = bytes.TrimLeft(line, " ")
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			i = len(line)
		}
		f := line[:i]
		line = line[i:]
		return f
	}
	rng, perms, off := field(), field(), field()
	field() // dev
	if len(field()) == 0 {
		return m, false, errors.New("fewer than 5 fields")
	}
	name := bytes.TrimSpace(line)
	lo, hi, ok := bytes.Cut(rng, []byte{'-'})
	if !ok {
		return m, false, errors.New("no start-end range")
	}
	if m.start, err = parseHex(lo); err == nil {
		if m.end, err = parseHex(hi); err == nil {
			m.offset, err = parseHex(off)
		}
	}
	if err != nil || m.end <= m.start {
		return m, false, fmt.Errorf("not a range and offset: %v", err)
	}
	special := bytes.Equal(name, []byte("[vvar]")) || bytes.Equal(name, []byte("[vvar_vclock]")) || bytes.Equal(name, []byte("[vsyscall]"))
	return m, perms[0] == 'r' && !special, nil
}

// parseHex reads a hexadecimal number of maps.
func parseHex(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 16 {
		return 0, fmt.Errorf("%q is not a 64-bit hexadecimal number", b)
	}
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, fmt.Errorf("%q is not a hexadecimal number", b)
		}
	}
	return v, nil
}

// find returns the mapping holding addr.
func (ms mappings) find(addr uint64) (mapping, bool) {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].end > addr })
	if i < len(ms) && ms[i].start <= addr {
		return ms[i], true
	}
	return mapping{}, false
}

// holds reports whether n bytes from addr lie in one readable mapping.
func (ms mappings) holds(addr, n uint64) bool {
	m, ok := ms.find(addr)
	return ok && n <= m.end-addr
}

// memory reads another process's memory.
type memory interface {
	// ReadAt fills p from addr, or fails.
	ReadAt(p []byte, addr uint64) error
}

// procMem reads through /proc/PID/mem with pread: the kernel copies from
// the worker's pages without stopping it, as a debugger's peek would but
// without attaching.
type procMem struct{ f *os.File }

func (m procMem) ReadAt(p []byte, addr uint64) error {
	if addr > 1<<63-1-uint64(len(p)) {
		return fmt.Errorf("address %#x is outside user space", addr)
	}
	n, err := m.f.ReadAt(p, int64(addr))
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
