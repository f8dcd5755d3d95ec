package phpstack

import (
	"bufio"
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

// maxProcFile bounds what is read of maps and auxv: a php-fpm worker's
// maps is 20 to 60 KB, with opcache and its extensions.
const maxProcFile = 4 << 20

func (p *proc) readFile(name string) ([]byte, error) {
	f, err := p.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading /proc/%d/%s: %w", p.pid, name, err)
	}
	if len(data) > maxProcFile {
		return nil, fmt.Errorf("/proc/%d/%s is larger than %d MiB", p.pid, name, maxProcFile>>20)
	}
	return data, nil
}

// pfExiting is PF_EXITING in a task's flags (include/linux/sched.h): set
// when the task starts to exit, before its memory is released.
const pfExiting = 0x4

// exited reports whether the process has exited or is exiting, its memory
// gone or going: a failed read is then the worker's exit, not a bad
// pointer.
func (p *proc) exited() bool {
	stat, err := p.readFile("stat")
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
	auxv, err := p.readFile("auxv")
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
// reads through /proc/PID/mem fail there.
func parseMaps(data []byte) (mappings, error) {
	var ms mappings
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("maps line %q has fewer than 5 fields", sc.Text())
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps range %q", f[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err := errors.Join(err1, err2, err3); err != nil || end <= start {
			return nil, fmt.Errorf("maps line %q: %v", sc.Text(), err)
		}
		if f[1][0] != 'r' || (len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]" || f[5] == "[vvar_vclock]")) {
			continue
		}
		ms = append(ms, mapping{start: start, end: end, offset: off})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].start < ms[j].start })
	return ms, nil
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
