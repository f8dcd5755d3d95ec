package phpstack

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// fakeMemory is a process's memory for the walker's tests: one mapping
// at base.
type fakeMemory struct {
	base uint64
	mem  []byte
	fail map[uint64]bool // addresses whose reads fail with EIO
}

func (m *fakeMemory) ReadAt(p []byte, addr uint64) error {
	if m.fail[addr] {
		return syscall.EIO
	}
	if addr < m.base || addr+uint64(len(p)) > m.base+uint64(len(m.mem)) {
		return syscall.EIO
	}
	copy(p, m.mem[addr-m.base:])
	return nil
}

func (m *fakeMemory) maps() mappings {
	return mappings{{start: m.base, end: m.base + uint64(len(m.mem))}}
}

// fakePHP lays out the engine's structures in a fakeMemory as a PHP
// version's layout says, to build stacks good and bad.
type fakePHP struct {
	*fakeMemory
	l    *layout
	next uint64
}

func newFakePHP(l *layout) *fakePHP {
	return &fakePHP{fakeMemory: &fakeMemory{base: 0x7f0000000000, mem: make([]byte, 1<<20), fail: map[uint64]bool{}}, l: l, next: 0x7f0000000000 + 4096}
}

func (p *fakePHP) alloc(n uint64) uint64 {
	a := p.next
	p.next += (n + 7) &^ 7
	return a
}

func (p *fakePHP) put64(addr, v uint64) { binary.LittleEndian.PutUint64(p.mem[addr-p.base:], v) }
func (p *fakePHP) put32(addr uint64, v uint32) {
	binary.LittleEndian.PutUint32(p.mem[addr-p.base:], v)
}
func (p *fakePHP) put8(addr uint64, v uint8) { p.mem[addr-p.base] = v }

// str is a zend_string.
func (p *fakePHP) str(s string) uint64 {
	a := p.alloc(p.l.strVal + uint64(len(s)) + 1)
	p.put32(a+p.l.strTypeInfo, isString|1<<6) // IS_STRING with GC_IMMUTABLE, as interned strings are
	p.put64(a+p.l.strLen, uint64(len(s)))
	copy(p.mem[a+p.l.strVal-p.base:], s)
	return a
}

// class is a zend_class_entry.
func (p *fakePHP) class(name string) uint64 {
	a := p.alloc(p.l.ceName + 8)
	p.put8(a+p.l.ceType, userClass)
	p.put64(a+p.l.ceName, p.str(name))
	return a
}

// internal is an internal function.
func (p *fakePHP) internal(name string) uint64 {
	a := p.alloc(p.l.opArrayRead)
	p.put8(a+p.l.fnType, internalFunction)
	p.put64(a+p.l.fnName, p.str(name))
	return a
}

// user is a user function (name "" for a file's code) of file whose
// oplines are at lines; an opline's opcode and extended value are set by
// op.
func (p *fakePHP) user(name string, class uint64, file string, lines ...int) (fn uint64, oplines []uint64) {
	fn = p.alloc(p.l.opArrayRead)
	p.put8(fn+p.l.fnType, userFunction)
	if name != "" {
		p.put64(fn+p.l.fnName, p.str(name))
	}
	p.put64(fn+p.l.fnScope, class)
	p.put64(fn+p.l.opFilename, p.str(file))
	ops := p.alloc(p.l.zopSize * uint64(len(lines)))
	p.put64(fn+p.l.opOpcodes, ops)
	p.put32(fn+p.l.opLast, uint32(len(lines)))
	for i, line := range lines {
		op := ops + uint64(i)*p.l.zopSize
		p.put32(op+p.l.zopLineno, uint32(line))
		oplines = append(oplines, op)
	}
	return fn, oplines
}

// frame is a zend_execute_data.
func (p *fakePHP) frame(fn, opline, prev uint64, info uint32) uint64 {
	a := p.alloc(p.l.exSize)
	p.put64(a+p.l.exFunc, fn)
	p.put64(a+p.l.exOpline, opline)
	p.put64(a+p.l.exPrev, prev)
	p.put32(a+p.l.exCallInfo, info)
	return a
}

func (p *fakePHP) walker(max int) *walker {
	return &walker{mem: p.fakeMemory, maps: p.maps(), l: p.l, max: max, strs: map[uint64]string{}}
}

// sample builds the stack usleep <- Repo->{closure} <- Repo::find <-
// require_once <- <main>, and returns its frames innermost first with
// the functions and oplines for the cases to spoil.
type sample struct {
	frames  []uint64 // innermost first
	fns     []uint64
	oplines []uint64 // each frame's current opline (0 for usleep)
}

func buildSample(p *fakePHP) sample {
	repo := p.class("Repo")
	main, mainOps := p.user("", 0, "/app/index.php", 3, 4)
	p.put8(mainOps[1]+p.l.zopOpcode, includeOrEval)
	p.put32(mainOps[1]+p.l.zopExtendedValue, incRequireOnce)
	inc, incOps := p.user("", 0, "/app/lib.php", 9, 10)
	find, findOps := p.user("find", repo, "/app/lib.php", 5, 6)
	closure, closureOps := p.user("{closure}", repo, "/app/lib.php", 2)
	usleep := p.internal("usleep")
	fMain := p.frame(main, mainOps[1], 0, callCode|callTop)
	fInc := p.frame(inc, incOps[1], fMain, callCode)
	fFind := p.frame(find, findOps[1], fInc, 0)
	fClosure := p.frame(closure, closureOps[0], fFind, callClosure|isObject)
	fUsleep := p.frame(usleep, 0, fClosure, 0)
	return sample{
		frames:  []uint64{fUsleep, fClosure, fFind, fInc, fMain},
		fns:     []uint64{usleep, closure, find, inc, main},
		oplines: []uint64{0, closureOps[0], findOps[1], incOps[1], mainOps[1]},
	}
}

var sampleWant = []Frame{
	{Kind: KindInternal, Function: "usleep"},
	{Kind: KindClosure, Function: "{closure}", Class: "Repo", Method: "->", File: "/app/lib.php", Line: 2},
	{Kind: KindFunction, Function: "find", Class: "Repo", Method: "::", File: "/app/lib.php", Line: 6},
	{Kind: KindInclude, Function: "require_once", File: "/app/lib.php", Line: 10},
	{Kind: KindMain, File: "/app/index.php", Line: 4},
}

// TestWalk walks a whole stack, then stacks spoiled one way each: every
// spoiled one keeps the frames above the spoiled frame and says why the
// rest is unknown; none yields a frame that is not in the stack.
func TestWalk(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.minor, func(t *testing.T) {
			p := newFakePHP(l)
			s := buildSample(p)
			frames, incomplete := p.walker(DefaultMaxFrames).frames(s.frames[0])
			if incomplete != nil || fmt.Sprint(frames) != fmt.Sprint(sampleWant) {
				t.Fatalf("got %v (incomplete: %v)\nwant %v", frames, incomplete, sampleWant)
			}
			if got := (Stack{Frames: frames}).String(); got != "usleep <- Repo->{closure} <- Repo::find <- require_once <- <main>" {
				t.Errorf("String() = %q", got)
			}
			if got := frames[1].String(); got != "Repo->{closure} (/app/lib.php:2)" {
				t.Errorf("Frame.String() = %q", got)
			}
			if b, err := json.Marshal(frames[3]); err != nil || string(b) != `{"Kind":"include","Function":"require_once","Class":"","Method":"","File":"/app/lib.php","Line":10}` {
				t.Errorf("JSON: %s, %v", b, err)
			}
		})
	}

	l := layouts["20220829"]
	cases := []struct {
		name  string
		spoil func(p *fakePHP, s sample)
		keep  int    // frames kept
		says  string // in Incomplete
	}{
		{"null-func", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exFunc, 0) }, 2, "func: zend_function pointer 0x0"},
		{"unaligned-func", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exFunc, s.fns[2]+4) }, 2, "not a readable, aligned address"},
		{"func-outside-every-mapping", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exFunc, 0x1000) }, 2, "not a readable, aligned address"},
		{"prev-outside-every-mapping", func(p *fakePHP, s sample) { p.put64(s.frames[1]+l.exPrev, 0x10) }, 1, "prev_execute_data 0x10"},
		{"unknown-function-type", func(p *fakePHP, s sample) { p.put8(s.fns[1]+l.fnType, 3) }, 1, "function type 3"},
		{"name-not-a-string", func(p *fakePHP, s sample) {
			name := binary.LittleEndian.Uint64(p.mem[s.fns[2]+l.fnName-p.base:])
			p.put32(name+l.strTypeInfo, 7) // IS_ARRAY
		}, 2, "GC type 7"},
		{"name-too-long", func(p *fakePHP, s sample) {
			name := binary.LittleEndian.Uint64(p.mem[s.fns[2]+l.fnName-p.base:])
			p.put64(name+l.strLen, 1<<40)
		}, 2, "claims 1099511627776 bytes"},
		{"name-past-its-mapping", func(p *fakePHP, s sample) {
			end := p.base + uint64(len(p.mem))
			name := end - l.strVal - 16
			p.put32(name+l.strTypeInfo, isString)
			p.put64(name+l.strLen, 100)
			p.put64(s.fns[2]+l.fnName, name)
		}, 2, "run past its mapping"},
		{"opline-outside-its-function", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exOpline, s.oplines[1]) }, 2, "is not one of the function's 2 oplines"},
		{"opline-between-oplines", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exOpline, s.oplines[2]+8) }, 2, "is not one of the function's"},
		{"class-of-no-type", func(p *fakePHP, s sample) {
			ce := binary.LittleEndian.Uint64(p.mem[s.fns[2]+l.fnScope-p.base:])
			p.put8(ce+l.ceType, 9)
		}, 1, "class type 9"},
		{"named-code", func(p *fakePHP, s sample) { p.put32(s.frames[2]+l.exCallInfo, callCode) }, 2, `user code with function name "find" and call info 0x10000`},
		{"unnamed-function", func(p *fakePHP, s sample) { p.put32(s.frames[3]+l.exCallInfo, 0) }, 3, `user code with function name "" and call info 0x0`},
		{"internal-as-code", func(p *fakePHP, s sample) { p.put32(s.frames[0]+l.exCallInfo, callCode) }, 0, "an internal function called as a file's code"},
		{"loop", func(p *fakePHP, s sample) { p.put64(s.frames[2]+l.exPrev, s.frames[1]) }, 3, "already read: the frames loop"},
		{"read-fails", func(p *fakePHP, s sample) { p.fail[s.frames[3]] = true }, 3, "reading zend_execute_data"},
		{"pending-call", func(p *fakePHP, s sample) { p.put64(s.frames[0]+l.exPrev, 0) }, 0, "has not started"},
		{"pending-calls", func(p *fakePHP, s sample) {
			pending := p.frame(s.fns[2], s.oplines[2], 0, 0)
			p.put64(s.frames[0]+l.exPrev, pending)
		}, 1, "frame 1 at"},
		{"main-of-no-type", func(p *fakePHP, s sample) { p.put8(s.fns[4]+l.fnType, 0) }, 4, "frame 4 at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newFakePHP(l)
			s := buildSample(p)
			c.spoil(p, s)
			frames, incomplete := p.walker(DefaultMaxFrames).frames(s.frames[0])
			if incomplete == nil || !strings.Contains(incomplete.Error(), c.says) {
				t.Fatalf("incomplete: %v, want it to say %q", incomplete, c.says)
			}
			// The frames kept are the ones above the spoiled frame, as
			// they are; the include frame above a spoiled caller cannot
			// name its statement.
			want := append([]Frame(nil), sampleWant[:c.keep]...)
			if c.keep == 4 {
				want[3].Function = "include or require"
			}
			if fmt.Sprint(frames) != fmt.Sprint(want) {
				t.Fatalf("kept %v\nwant %v", frames, want)
			}
		})
	}
}

// TestWalkDepth: a recursion deeper than the bound gives the bound's
// frames, innermost first, and ErrTooDeep.
func TestWalkDepth(t *testing.T) {
	l := layouts["20240924"]
	p := newFakePHP(l)
	main, mainOps := p.user("", 0, "/app/index.php", 2)
	down, downOps := p.user("down", 0, "/app/index.php", 5, 7)
	ex := p.frame(main, mainOps[0], 0, callCode|callTop)
	for range 100 {
		ex = p.frame(down, downOps[1], ex, 0)
	}
	frames, incomplete := p.walker(10).frames(ex)
	if !errors.Is(incomplete, ErrTooDeep) || len(frames) != 10 {
		t.Fatalf("%d frames, incomplete %v; want 10 and ErrTooDeep", len(frames), incomplete)
	}
	for _, f := range frames {
		if f != (Frame{Kind: KindFunction, Function: "down", File: "/app/index.php", Line: 7}) {
			t.Fatalf("frame %v", f)
		}
	}
	if got := (Stack{Frames: frames[:2], Incomplete: incomplete}).String(); got != "down <- down <- ?" {
		t.Errorf("String() = %q", got)
	}
}

// TestWalkCutsLongNames: a name longer than the bound is cut and marked.
func TestWalkCutsLongNames(t *testing.T) {
	l := layouts["20190902"]
	p := newFakePHP(l)
	long := strings.Repeat("a", maxNameBytes+10)
	main, mainOps := p.user("", 0, "/app/index.php", 2)
	fn, ops := p.user(long, 0, "/app/index.php", 3)
	ex := p.frame(fn, ops[0], p.frame(main, mainOps[0], 0, callCode|callTop), 0)
	frames, incomplete := p.walker(DefaultMaxFrames).frames(ex)
	if incomplete != nil || len(frames) != 2 || frames[0].Function != long[:maxNameBytes]+"…" {
		t.Fatalf("frames %v, incomplete %v", frames, incomplete)
	}
}

// TestWalkIncludes: each include statement is named from its caller's
// opline; eval'd code is an eval frame.
func TestWalkIncludes(t *testing.T) {
	l := layouts["20220829"]
	for ext, name := range map[uint32]string{incInclude: "include", incIncludeOnce: "include_once", incRequire: "require", incRequireOnce: "require_once", 99: "include or require"} {
		p := newFakePHP(l)
		main, mainOps := p.user("", 0, "/app/index.php", 2)
		p.put8(mainOps[0]+l.zopOpcode, includeOrEval)
		p.put32(mainOps[0]+l.zopExtendedValue, ext)
		inc, incOps := p.user("", 0, "/app/inc.php", 3)
		ex := p.frame(inc, incOps[0], p.frame(main, mainOps[0], 0, callCode|callTop), callCode)
		frames, incomplete := p.walker(DefaultMaxFrames).frames(ex)
		if incomplete != nil || len(frames) != 2 || frames[0].Function != name || frames[0].Kind != KindInclude {
			t.Errorf("extended value %d: frames %v, incomplete %v; want %s", ext, frames, incomplete, name)
		}
	}
	p := newFakePHP(l)
	main, mainOps := p.user("", 0, "/app/index.php", 2)
	code, codeOps := p.user("", 0, "/app/index.php(2) : eval()'d code", 1)
	p.put8(code+l.fnType, evalCode)
	ex := p.frame(code, codeOps[0], p.frame(main, mainOps[0], 0, callCode|callTop), callCode)
	frames, _ := p.walker(DefaultMaxFrames).frames(ex)
	if len(frames) != 2 || frames[0].Kind != KindEval || frames[0].Name() != "<eval>" || frames[0].Line != 1 {
		t.Errorf("eval: %v", frames)
	}
}

// TestWalkPassesFiberBottoms: a frame of a nameless internal function
// (the bottom of a fiber's stack) is passed through, as PHP's own
// backtraces do, to the frame that started the fiber.
func TestWalkPassesFiberBottoms(t *testing.T) {
	l := layouts["20240924"]
	p := newFakePHP(l)
	main, mainOps := p.user("", 0, "/app/index.php", 2)
	fiber := p.class("Fiber")
	start := p.alloc(l.opArrayRead)
	p.put8(start+l.fnType, internalFunction)
	p.put64(start+l.fnName, p.str("start"))
	p.put64(start+l.fnScope, fiber)
	bottom := p.alloc(l.opArrayRead)
	p.put8(bottom+l.fnType, internalFunction)
	closure, closureOps := p.user("{closure}", 0, "/app/index.php", 3)
	ex := p.frame(main, mainOps[0], 0, callCode|callTop)
	ex = p.frame(start, 0, ex, isObject)
	ex = p.frame(bottom, 0, ex, 0)
	ex = p.frame(closure, closureOps[0], ex, callClosure|callTop)
	frames, incomplete := p.walker(DefaultMaxFrames).frames(ex)
	if got := (Stack{Frames: frames, Incomplete: incomplete}).String(); got != "{closure} <- Fiber->start <- <main>" {
		t.Errorf("got %s (%v)", got, incomplete)
	}
}
