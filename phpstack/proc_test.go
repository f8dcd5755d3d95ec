package phpstack

import (
	"os"
	"strings"
	"testing"
)

// TestParseMaps reads a php-fpm 8.2 worker's maps, with opcache's shared
// memory and the JIT's buffer: only readable ranges are kept, in order,
// [vvar] and [vsyscall] left out.
func TestParseMaps(t *testing.T) {
	data, err := os.ReadFile("testdata/maps-php-fpm8.2-jit.txt")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseMaps(data)
	if err != nil {
		t.Fatal(err)
	}
	readable := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if f[1][0] == 'r' && !strings.HasPrefix(f[len(f)-1], "[vvar") && f[len(f)-1] != "[vsyscall]" {
			readable++
		}
	}
	if len(ms) != readable || readable < 100 {
		t.Fatalf("%d mappings, want the %d readable ones", len(ms), readable)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].start < ms[i-1].end {
			t.Fatalf("mappings %d and %d overlap or are out of order: %+v %+v", i-1, i, ms[i-1], ms[i])
		}
	}
	// The first lines: opcache's shared memory, its JIT buffer (r-x), the
	// executable.
	shm, jit, exe := uint64(0x5617f1800000), uint64(0x5617f9800000), uint64(0x5617fb8c7000)
	for _, c := range []struct {
		addr, n uint64
		holds   bool
	}{
		{shm, 8, true},
		{jit - 8, 8, true},
		{jit - 8, 16, false},       // across two mappings
		{jit + 0x1fffff8, 8, true}, // the last word of the 32 MB buffer
		{exe, 64, true},
		{exe - 8, 8, false}, // the gap before the executable
		{0, 8, false},
		{0xffffffffff600000, 8, false}, // [vsyscall]
		{^uint64(0) - 4, 8, false},
	} {
		if got := ms.holds(c.addr, c.n); got != c.holds {
			t.Errorf("holds(%#x, %d) = %v, want %v", c.addr, c.n, got, c.holds)
		}
	}
	if m, ok := ms.find(exe + 100); !ok || m.start != exe || m.offset != 0 {
		t.Errorf("find(executable+100) = %+v, %v", m, ok)
	}
}

// TestParseMapsRefusesGarbage: a line that is not a mapping is an error
// naming it, not a range.
func TestParseMapsRefusesGarbage(t *testing.T) {
	for _, line := range []string{
		"7f00-7e00 r--p 00000000 00:00 0",
		"zz-7e00 r--p 00000000 00:00 0",
		"7f00 r--p 00000000 00:00 0",
		"7f00-7f10 r--p",
	} {
		if _, err := parseMaps([]byte(line + "\n")); err == nil || !strings.Contains(err.Error(), line[:4]) {
			t.Errorf("%q: error %v", line, err)
		}
	}
}
