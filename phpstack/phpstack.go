// Package phpstack reads the PHP stack of a running php-fpm worker: which
// functions it is in, with the file and line of each, as PHP's own
// backtraces and php-fpm's slowlog show them. It never stops the worker:
// it reads the worker's memory through /proc/PID/mem, as the sampling
// profiler phpspy does, where php-fpm's slowlog attaches with ptrace and
// stops the worker to trace it (and writes nothing where it lacks
// CAP_SYS_PTRACE).
//
// It follows the engine's own structures: executor_globals (a dynamic
// symbol of php-fpm's executable) holds current_execute_data, the
// innermost frame; each frame points to its function and to the frame
// that called it. Their offsets differ with the PHP version, so the
// reader identifies each executable first (its PHP version and module
// API, NTS or ZTS, the architecture) and refuses one it does not know
// (UnsupportedError) rather than guess. It knows PHP 7.4, 8.2 and 8.4,
// NTS builds on x86_64.
//
// Every pointer is checked before it is followed (non-nil, aligned, inside
// a readable mapping of the worker), every read is bounded, and the walk
// stops at MaxFrames frames. A frame that does not look right (a function
// of no known type, a string that is not a zend_string, an opline outside
// its function) ends the walk: the frames above it are kept and
// Stack.Incomplete says why the rest is unknown. A worker that is running
// changes its stack while it is read; the reader checks that the innermost
// frame is still the same once the walk is done, and reads again when it
// is not. Names and paths come from the worker's memory: they are PHP's
// users' text, to be escaped before they reach a terminal and never used
// as metric labels.
//
// Reading another user's /proc/PID/mem needs CAP_SYS_PTRACE, or the same
// uid, a dumpable worker and a permissive kernel.yama.ptrace_scope; when
// it is refused, PermissionError says which is missing and how to grant it.
//
// It imports nothing of fpmguard's: it is a leaf, like termsafe, that the
// watcher and the outputs may use.
package phpstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultMaxFrames is how many frames a Reader reads at most when its
// MaxFrames is 0: deeper stacks are recursion, and their innermost frames
// tell where the worker is.
const DefaultMaxFrames = 64

// Kind says what a frame is.
type Kind uint8

// The kinds of frame.
const (
	KindFunction Kind = iota + 1 // a user function or method
	KindClosure                  // a user closure
	KindInternal                 // a function of PHP or an extension, written in C
	KindInclude                  // a file's code run by include or require
	KindEval                     // code run by eval()
	KindMain                     // the script the request runs
)

var kindNames = map[Kind]string{
	KindFunction: "function", KindClosure: "closure", KindInternal: "internal",
	KindInclude: "include", KindEval: "eval", KindMain: "main",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText writes the kind as its name, for JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Frame is one frame of a PHP stack.
type Frame struct {
	Kind Kind
	// Function is the function's name: "{closure}" for a closure (with
	// its file and line in PHP 8.4: "{closure:/app/a.php:12}"), and the
	// statement for an include frame: "include", "require_once" ...
	// Empty for the main script and eval'd code.
	Function string
	Class    string // the class that declares the method, or ""
	Method   string // how the method was called: "->" with $this, "::" statically, "" for a function
	File     string // the file of user code, as PHP opened it
	// Line is the line of the opline the frame is executing: the call
	// for every frame but the innermost. For the innermost frame of a
	// worker running PHP code, it is the last line PHP saved, which may
	// lag in a loop that calls nothing. 0 for internal functions.
	Line int
}

// Name is the frame as backtraces name it: "Repo->find", "sleep",
// "require_once", "<main>", "<eval>".
func (f Frame) Name() string {
	switch f.Kind {
	case KindMain:
		return "<main>"
	case KindEval:
		return "<eval>"
	}
	return f.Class + f.Method + f.Function
}

// String is the frame with its place: "Repo->find (/app/Repo.php:12)".
func (f Frame) String() string {
	if f.File == "" {
		return f.Name()
	}
	return fmt.Sprintf("%s (%s:%d)", f.Name(), f.File, f.Line)
}

// Stack is what the reader read of one worker.
type Stack struct {
	PID     int
	Version string  // the worker's PHP version, e.g. "8.2.36"
	Frames  []Frame // innermost first; none when no PHP code runs
	// Incomplete is why the frames end before the main script: the
	// bound on the depth (ErrTooDeep), or a frame that could not be read
	// or did not look right. Nil when the stack is whole.
	Incomplete error
}

// String is the stack on one line, innermost first, as the issue tracker
// and fpmguard's outputs show it: "sleep <- wait_db <- Repo::find <- <main>".
func (s Stack) String() string {
	names := make([]string, 0, len(s.Frames)+1)
	for _, f := range s.Frames {
		names = append(names, f.Name())
	}
	if s.Incomplete != nil {
		names = append(names, "?")
	}
	return strings.Join(names, " <- ")
}

// Errors the reader returns, for errors.Is.
var (
	// ErrExited: the worker exited before or while its stack was read.
	ErrExited = errors.New("the worker has exited")
	// ErrTooDeep ends Stack.Incomplete when the stack is deeper than
	// the reader's bound.
	ErrTooDeep = errors.New("the stack is deeper than the reader's bound")
)

// UnsupportedError says the worker's executable is not one the reader
// knows the structures of: another PHP version, a ZTS or debug build,
// another architecture, or not PHP at all.
type UnsupportedError struct {
	Binary string // the executable, as the worker's /proc/PID/exe names it
	Reason string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("cannot read PHP stacks of %s: %s", e.Binary, e.Reason)
}

// Reader reads PHP stacks. It remembers the executables it has identified;
// one Reader may be used by many goroutines at once.
type Reader struct {
	// MaxFrames bounds the frames read from one stack; DefaultMaxFrames
	// when 0.
	MaxFrames int

	mu   sync.Mutex
	bins map[fileID]binaryResult
}

// fileID identifies an executable file without reading it again.
type fileID struct {
	dev, ino   uint64
	size       int64
	mtimeNanos int64
}

type binaryResult struct {
	b   *executable
	err error
}

// maxCached bounds the executables remembered: a host runs a few PHP
// versions, and a new one only makes the reader read an ELF file again.
const maxCached = 32

// retries bounds the walks of a stack that keeps changing while it is read.
const retries = 10

// Read reads the PHP stack of worker pid. An error means nothing could be
// read: the worker is gone (ErrExited), the reader may not read it
// (*PermissionError), does not know its executable (*UnsupportedError),
// or its state did not look right.
func (r *Reader) Read(pid int) (Stack, error) {
	p, err := openProc(pid)
	if err != nil {
		return Stack{}, err
	}
	defer p.Close()
	fail := func(err error) (Stack, error) {
		if p.exited() {
			return Stack{}, fmt.Errorf("worker %d: %w", pid, ErrExited)
		}
		var perm *os.PathError
		if errors.As(err, &perm) && (errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)) {
			return Stack{}, diagnose(p, err)
		}
		return Stack{}, err
	}

	b, err := r.executable(p)
	if err != nil {
		return fail(err)
	}
	entry, err := p.entry()
	if err != nil {
		return fail(err)
	}
	base := uint64(0)
	if b.pie {
		base = entry - b.entry
	}
	if base%4096 != 0 {
		return fail(fmt.Errorf("worker %d: the load base %#x (entry %#x) is not page-aligned", pid, base, entry))
	}
	mapsData, err := p.readFile("maps", 64<<10)
	if err != nil {
		return fail(err)
	}
	maps, err := parseMaps(mapsData)
	if err != nil {
		return fail(fmt.Errorf("worker %d: %w", pid, err))
	}
	if m, ok := maps.find(base); !ok || m.start != base || m.offset != 0 {
		return fail(fmt.Errorf("worker %d: no mapping of its executable at the load base %#x", pid, base))
	}
	memFile, err := p.open("mem")
	if err != nil {
		return fail(err)
	}
	defer memFile.Close()
	mem := procMem{memFile}
	if err := b.matchesMemory(mem, base); err != nil {
		return fail(fmt.Errorf("worker %d: %w", pid, err))
	}

	st := Stack{PID: pid, Version: b.version}
	w := &walker{mem: mem, maps: maps, l: b.layout, max: r.MaxFrames, strs: map[uint64]string{}}
	if w.max <= 0 {
		w.max = DefaultMaxFrames
	}
	eg := base + b.eg
	// A frame that does not look right may be one the worker was
	// changing as it was read, so such a walk is tried again; a stack
	// that is still broken after the last try is returned as far as it
	// reads.
	var last *Stack
	for range retries {
		clear(w.strs) // a string freed since the last try may have been replaced
		top, err := w.top(eg)
		if err != nil {
			return fail(fmt.Errorf("worker %d: %w", pid, err))
		}
		if top == 0 {
			return st, nil
		}
		frames, incomplete := w.frames(top)
		same, err := w.unchanged(eg, top)
		if err != nil {
			return fail(fmt.Errorf("worker %d: %w", pid, err))
		}
		if !same || errors.Is(incomplete, errPending) {
			continue
		}
		if incomplete != nil && !errors.Is(incomplete, ErrTooDeep) {
			if p.exited() {
				return Stack{}, fmt.Errorf("worker %d: %w", pid, ErrExited)
			}
			last = &Stack{PID: pid, Version: b.version, Frames: frames, Incomplete: incomplete}
			continue
		}
		st.Frames, st.Incomplete = frames, incomplete
		return st, nil
	}
	if last != nil {
		return *last, nil
	}
	return fail(fmt.Errorf("worker %d: %w %d times in a row", pid, errChanged, retries))
}

// executable identifies the worker's executable, once per file.
func (r *Reader) executable(p *proc) (*executable, error) {
	exe, err := p.open("exe")
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	fi, err := exe.Stat()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", p.pid, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("worker %d: its executable is not a regular file", p.pid)
	}
	id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtimeNanos: st.Mtim.Nano()}
	r.mu.Lock()
	res, ok := r.bins[id]
	r.mu.Unlock()
	if ok {
		return res.b, res.err
	}
	// The path names the executable in errors only: it is the worker's
	// to choose, and its bytes are escaped where errors are shown.
	name, _ := p.readlink("exe")
	if name == "" {
		name = fmt.Sprintf("/proc/%d/exe", p.pid)
	}
	b, err := identify(exe, st.Size, name)
	var unsupported *UnsupportedError
	if err != nil && !errors.As(err, &unsupported) {
		return nil, err // a failed read, not a verdict on the file
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bins == nil || len(r.bins) >= maxCached {
		r.bins = map[fileID]binaryResult{}
	}
	r.bins[id] = binaryResult{b, err}
	return b, err
}

// unchanged re-reads the innermost frame after a walk: when it is the same
// frame, calling the same function from the same caller, the frames under
// it have not moved either, as a caller's frame stays put while the
// functions it called run.
func (w *walker) unchanged(eg, top uint64) (bool, error) {
	now, err := w.top(eg)
	if err != nil {
		return false, err
	}
	if now != top {
		return false, nil
	}
	if w.topFn == 0 {
		return true, nil // the innermost frame itself did not read
	}
	b, err := w.read(top, w.l.exSize, "zend_execute_data")
	if err != nil {
		return false, nil
	}
	le := binary.LittleEndian
	return le.Uint64(b[w.l.exFunc:]) == w.topFn && le.Uint64(b[w.l.exPrev:]) == w.topPrev, nil
}
