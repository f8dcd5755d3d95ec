package waits

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/fpmguard/fpmguard/sockdiag"
)

// fakeProc is a /proc made of captured files, for the cases a real worker
// cannot be made to show on demand: a wait changing between two readings,
// a refusal to read, another network namespace, a disk wait.
type fakeProc struct {
	mu sync.Mutex
	// files are read in turn: each read takes the next content, the last
	// one stays.
	files  map[string][]string
	links  map[string]string
	ids    map[string]fileID
	protos map[string]string
	mem    map[uint64][]byte
	errs   map[string]error // a name's read fails with this
	reads  map[string]int
}

func newFakeProc() *fakeProc {
	return &fakeProc{files: map[string][]string{}, links: map[string]string{"self/ns/net": "net:[1]"},
		ids: map[string]fileID{}, protos: map[string]string{}, mem: map[uint64][]byte{}, errs: map[string]error{}, reads: map[string]int{}}
}

func (p *fakeProc) readFile(name string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads[name]++
	if err := p.errs[name]; err != nil {
		return nil, err
	}
	seq, ok := p.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	s := seq[0]
	if len(seq) > 1 {
		p.files[name] = seq[1:]
	}
	return []byte(s), nil
}

func (p *fakeProc) readLink(name string) (string, error) {
	if err := p.errs[name]; err != nil {
		return "", err
	}
	l, ok := p.links[name]
	if !ok {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrNotExist}
	}
	return l, nil
}

func (p *fakeProc) readDir(name string) ([]string, error) {
	if err := p.errs[name]; err != nil {
		return nil, err
	}
	var out []string
	for l := range p.links {
		if rest, ok := strings.CutPrefix(l, name+"/"); ok && !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
	}
	return out, nil
}

func (p *fakeProc) fileID(name string) (fileID, error) {
	id, ok := p.ids[name]
	if !ok {
		return fileID{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return id, nil
}

func (p *fakeProc) readMem(pid int, addr uint64, b []byte) error {
	if err := p.errs[strconv.Itoa(pid)+"/mem"]; err != nil {
		return err
	}
	m, ok := p.mem[addr]
	if !ok || len(m) < len(b) {
		return fmt.Errorf("read %d/mem at %#x: %w", pid, addr, fs.ErrInvalid)
	}
	copy(b, m)
	return nil
}

func (p *fakeProc) sockProto(name string) (string, error) {
	pr, ok := p.protos[name]
	if !ok {
		return "", &fs.PathError{Op: "getxattr", Path: name, Err: fs.ErrNotExist}
	}
	return pr, nil
}

// worker adds a sleeping worker: its stat (state S, parent 1, start 500),
// schedstat and system call line.
func (p *fakeProc) worker(pid int, state byte, syscall string) {
	p.files[strconv.Itoa(pid)+"/stat"] = []string{fmt.Sprintf("%d (php-fpm8.2) %c 1 %d %d 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0", pid, state, pid, pid)}
	p.files[strconv.Itoa(pid)+"/schedstat"] = []string{"1000 2000 42"}
	p.files[strconv.Itoa(pid)+"/syscall"] = []string{syscall}
	p.links[strconv.Itoa(pid)+"/root"] = "/"
	p.links[strconv.Itoa(pid)+"/ns/net"] = "net:[1]"
}

// socket gives pid a socket at fd.
func (p *fakeProc) socket(pid, fd int, ino uint32, proto string) {
	name := fmt.Sprintf("%d/fd/%d", pid, fd)
	p.links[name] = fmt.Sprintf("socket:[%d]", ino)
	p.protos[name] = proto
}

// file gives pid an open file at fd.
func (p *fakeProc) file(pid, fd int, path string, id fileID) {
	name := fmt.Sprintf("%d/fd/%d", pid, fd)
	p.links[name] = path
	p.ids[name] = id
}

// pollfds puts a pollfd array at addr.
func (p *fakeProc) pollfds(addr uint64, fds ...[2]int) {
	b := make([]byte, 8*len(fds))
	for i, f := range fds {
		binary.NativeEndian.PutUint32(b[8*i:], uint32(int32(f[0])))
		binary.NativeEndian.PutUint16(b[8*i+4:], uint16(f[1]))
	}
	p.mem[addr] = b
}

// fakeDiag is the kernel's socket tables.
type fakeDiag struct {
	inet  map[inetKey][]sockdiag.InetSocket
	unix  map[uint32]sockdiag.UnixSocket
	dumps int
}

func (d *fakeDiag) InetSockets(protocol uint8, v6 bool, states uint32) ([]sockdiag.InetSocket, error) {
	d.dumps++
	return d.inet[inetKey{protocol, v6}], nil
}

func (d *fakeDiag) UnixSocket(ino uint32) (sockdiag.UnixSocket, error) {
	s, ok := d.unix[ino]
	if !ok {
		return s, os.ErrNotExist
	}
	return s, nil
}

func (d *fakeDiag) Close() error { return nil }

func tcp(ino uint32, local, remote string, state uint8) sockdiag.InetSocket {
	return sockdiag.InetSocket{Inode: ino, Protocol: sockdiag.TCP, State: state, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
}

// fakeReader reads p and d; opened records the namespaces it opened.
func fakeReader(p *fakeProc, d *fakeDiag, opened *[]string) *Reader {
	return &Reader{proc: p, open: func(ns string) (diagConn, error) {
		if opened != nil {
			*opened = append(*opened, ns)
		}
		return d, nil
	}}
}
