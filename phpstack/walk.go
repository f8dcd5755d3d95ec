package phpstack

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Bounds of what one frame may make the reader read.
const (
	maxNameBytes = 1024 // a function or class name; longer ones are cut
	maxFileBytes = 4096 // a script's path (PATH_MAX)
	// maxStringLen is the largest zend_string length taken as a string at
	// all: a longer one means the pointer led somewhere else.
	maxStringLen = 1 << 20
)

// errChanged says the top of the stack moved while it was read.
var errChanged = errors.New("the stack changed while it was read")

// errPending says a frame has no caller yet: a call being set up.
var errPending = errors.New("a call that has not started (no caller, not called from C): the stack changed while it was read")

// walker reads the frames of one process, once.
type walker struct {
	mem  memory
	maps mappings
	l    *layout
	max  int
	strs map[uint64]string // strings already read, by address
	// The innermost frame's function and caller, as the walk read them.
	topFn, topPrev uint64
	lastFn         uint64 // the function of the frame read last
	buf            [256]byte
}

// kindPlaceholder marks a frame the walk passes through without showing.
const kindPlaceholder Kind = 0

// raw is what a frame's reading keeps beyond the Frame: the opline an
// include frame's caller was executing.
type raw struct {
	opcode   uint8
	extended uint32
	hasOp    bool
}

// top reads EG(current_execute_data).
func (w *walker) top(eg uint64) (uint64, error) {
	ex, err := w.word(eg + w.l.egCurrentExecuteData)
	if err != nil {
		return 0, fmt.Errorf("reading executor_globals.current_execute_data at %#x: %w", eg+w.l.egCurrentExecuteData, err)
	}
	return ex, nil
}

// frames walks from the frame at ex down to the script's main frame. It
// returns the frames read and, when they stop early, why.
func (w *walker) frames(ex uint64) ([]Frame, error) {
	var out []Frame
	var raws []raw
	seen := map[uint64]bool{}
	w.topFn, w.topPrev = 0, 0
	for ex != 0 {
		if len(out) == w.max || len(seen) == 2*w.max {
			return w.name(out, raws), fmt.Errorf("%w: stopped after %d frames", ErrTooDeep, len(out))
		}
		if seen[ex] {
			return w.name(out, raws), fmt.Errorf("frame %d at %#x was already read: the frames loop", len(out), ex)
		}
		seen[ex] = true
		f, r, prev, err := w.frame(ex)
		if err != nil {
			return w.name(out, raws), fmt.Errorf("frame %d at %#x: %w", len(out), ex, err)
		}
		if len(seen) == 1 {
			w.topFn, w.topPrev = w.lastFn, prev
		}
		ex = prev
		if f.Kind == kindPlaceholder {
			continue
		}
		out = append(out, f)
		raws = append(raws, r)
	}
	return w.name(out, raws), nil
}

// frame reads one zend_execute_data.
func (w *walker) frame(ex uint64) (Frame, raw, uint64, error) {
	l := w.l
	var f Frame
	var r raw
	exb, err := w.read(ex, l.exSize, "zend_execute_data")
	if err != nil {
		return f, r, 0, err
	}
	le := binary.LittleEndian
	opline := le.Uint64(exb[l.exOpline:])
	fn := le.Uint64(exb[l.exFunc:])
	info := le.Uint32(exb[l.exCallInfo:])
	prev := le.Uint64(exb[l.exPrev:])
	w.lastFn = fn
	if prev != 0 && !w.plausible(prev, l.exSize) {
		return f, r, 0, fmt.Errorf("prev_execute_data %#x is not a readable, aligned address", prev)
	}
	// Only a frame the engine's C code called (the main script, a
	// shutdown function) has no caller. A call the VM has set up but not
	// made yet (INIT_FCALL before DO_FCALL) links to the other pending
	// calls, ending in nil: when one is read where a running frame was a
	// moment before, its chain ends in a frame without ZEND_CALL_TOP.
	if prev == 0 && info&callTop == 0 {
		return f, r, 0, fmt.Errorf("%w (call info %#x)", errPending, info)
	}

	// An internal function is a smaller structure than a user one: read
	// the op_array's fields only where the mapping has them, and require
	// them for user code.
	n := l.opArrayRead
	if m, ok := w.maps.find(fn); ok && m.end-fn < n {
		n = max(m.end-fn, l.fnScope+8)
	}
	fb, err := w.read(fn, n, "zend_function")
	if err != nil {
		return f, r, 0, fmt.Errorf("func: %w", err)
	}
	typ := fb[l.fnType]
	nameAt := le.Uint64(fb[l.fnName:])
	scope := le.Uint64(fb[l.fnScope:])
	var filename, opcodes, last uint64
	if n == l.opArrayRead {
		filename = le.Uint64(fb[l.opFilename:])
		opcodes = le.Uint64(fb[l.opOpcodes:])
		last = uint64(le.Uint32(fb[l.opLast:]))
	}
	if nameAt != 0 {
		if f.Function, err = w.string(nameAt, maxNameBytes); err != nil {
			return f, r, 0, fmt.Errorf("function_name: %w", err)
		}
	}
	if scope != 0 {
		if f.Class, err = w.class(scope); err != nil {
			return f, r, 0, fmt.Errorf("scope: %w", err)
		}
	}
	code := info&callCode != 0
	switch typ {
	case internalFunction:
		if code {
			return f, r, 0, fmt.Errorf("an internal function called as a file's code (call info %#x)", info)
		}
		if nameAt == 0 {
			// A frame that stands for no function: the bottom of a
			// fiber's stack (zend_fiber_function in Zend/zend_fibers.c),
			// linked to the frame that started or resumed the fiber.
			// PHP's backtraces leave it out too.
			f.Kind = kindPlaceholder
			return f, r, prev, nil
		}
		f.Kind = KindInternal
		f.Method = methodCall(f.Class, info)
		return f, r, prev, nil
	case userFunction, evalCode:
	default:
		return f, r, 0, fmt.Errorf("function type %d is neither internal (1), user (2) nor eval (4)", typ)
	}

	switch {
	case typ == evalCode:
		f.Kind = KindEval
	case nameAt == 0 && code && info&callTop != 0:
		f.Kind = KindMain
	case nameAt == 0 && code:
		f.Kind = KindInclude
	case nameAt != 0 && !code && info&callClosure != 0:
		f.Kind = KindClosure
	case nameAt != 0 && !code:
		f.Kind = KindFunction
	default:
		return f, r, 0, fmt.Errorf("user code with function name %q and call info %#x", f.Function, info)
	}
	if f.Kind == KindFunction || f.Kind == KindClosure {
		f.Method = methodCall(f.Class, info)
	}
	if n != l.opArrayRead {
		return f, r, 0, fmt.Errorf("user function at %#x: its op_array runs past its mapping", fn)
	}
	if f.File, err = w.string(filename, maxFileBytes); err != nil {
		return f, r, 0, fmt.Errorf("filename: %w", err)
	}
	// The current opline must be one of the function's own: anything
	// else means the frame was read while it changed, or is not a frame.
	if opline < opcodes || (opline-opcodes)%l.zopSize != 0 || (opline-opcodes)/l.zopSize >= max(last, 1) {
		return f, r, 0, fmt.Errorf("opline %#x is not one of the function's %d oplines at %#x", opline, last, opcodes)
	}
	ob, err := w.read(opline, l.zopSize, "zend_op")
	if err != nil {
		return f, r, 0, fmt.Errorf("opline: %w", err)
	}
	f.Line = int(le.Uint32(ob[l.zopLineno:]))
	r = raw{opcode: ob[l.zopOpcode], extended: le.Uint32(ob[l.zopExtendedValue:]), hasOp: true}
	return f, r, prev, nil
}

// methodCall says how a method was called: with $this (->) or statically.
func methodCall(class string, info uint32) string {
	switch {
	case class == "":
		return ""
	case info&0xff == isObject:
		return "->"
	default:
		return "::"
	}
}

// name gives include frames the statement that included them, from the
// opline their caller was executing.
func (w *walker) name(frames []Frame, raws []raw) []Frame {
	for i := range frames {
		if frames[i].Kind != KindInclude {
			continue
		}
		frames[i].Function = "include"
		if i+1 >= len(frames) || !raws[i+1].hasOp || raws[i+1].opcode != includeOrEval {
			frames[i].Function = "include or require"
			continue
		}
		switch raws[i+1].extended {
		case incInclude:
			frames[i].Function = "include"
		case incIncludeOnce:
			frames[i].Function = "include_once"
		case incRequire:
			frames[i].Function = "require"
		case incRequireOnce:
			frames[i].Function = "require_once"
		default:
			frames[i].Function = "include or require"
		}
	}
	return frames
}

// class reads a zend_class_entry's name.
func (w *walker) class(ce uint64) (string, error) {
	b, err := w.read(ce, w.l.ceName+8, "zend_class_entry")
	if err != nil {
		return "", err
	}
	if t := b[w.l.ceType]; t != internalClass && t != userClass {
		return "", fmt.Errorf("class type %d is neither internal (1) nor user (2)", t)
	}
	return w.string(binary.LittleEndian.Uint64(b[w.l.ceName:]), maxNameBytes)
}

// string reads a zend_string, cut to limit bytes.
func (w *walker) string(addr uint64, limit int) (string, error) {
	if s, ok := w.strs[addr]; ok {
		return s, nil
	}
	l := w.l
	h, err := w.read(addr, l.strVal, "zend_string")
	if err != nil {
		return "", err
	}
	le := binary.LittleEndian
	if t := le.Uint32(h[l.strTypeInfo:]) & gcTypeMask; t != isString {
		return "", fmt.Errorf("zend_string at %#x has GC type %d, not a string's (%d)", addr, t, isString)
	}
	n := le.Uint64(h[l.strLen:])
	if n > maxStringLen {
		return "", fmt.Errorf("zend_string at %#x claims %d bytes", addr, n)
	}
	cut := n > uint64(limit)
	n = min(n, uint64(limit))
	if !w.maps.holds(addr+l.strVal, n) {
		return "", fmt.Errorf("zend_string at %#x: its %d bytes run past its mapping", addr, n)
	}
	val := make([]byte, n)
	if err := w.mem.ReadAt(val, addr+l.strVal); err != nil {
		return "", fmt.Errorf("zend_string at %#x: %w", addr, err)
	}
	s := string(val)
	if cut {
		s += "…"
	}
	w.strs[addr] = s
	return s, nil
}

// read reads n bytes of a structure at addr, after checking the pointer.
// The slice is valid until the next read.
func (w *walker) read(addr, n uint64, what string) ([]byte, error) {
	if !w.plausible(addr, n) {
		return nil, fmt.Errorf("%s pointer %#x is not a readable, aligned address", what, addr)
	}
	b := w.buf[:n]
	if err := w.mem.ReadAt(b, addr); err != nil {
		return nil, fmt.Errorf("reading %s at %#x: %w", what, addr, err)
	}
	return b, nil
}

// word reads a pointer-sized value.
func (w *walker) word(addr uint64) (uint64, error) {
	b, err := w.read(addr, 8, "pointer")
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// plausible: non-nil, 8-byte aligned as every structure the engine
// allocates, and n bytes of it inside one readable mapping.
func (w *walker) plausible(addr, n uint64) bool {
	return addr != 0 && addr%8 == 0 && n <= uint64(len(w.buf)) && w.maps.holds(addr, n)
}
