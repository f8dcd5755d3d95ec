package phpstack

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// hostBinary reads the host's php-fpm executable.
func hostBinary(t testing.TB) (string, []byte) {
	t.Helper()
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return bin, data
}

// patch replaces the one occurrence of old in data with new, of the same
// length.
func patch(t *testing.T, data []byte, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) || bytes.Count(data, []byte(old)) != 1 {
		t.Fatalf("want one %q to patch with %q of the same length", old, new)
	}
	return bytes.Replace(data, []byte(old), []byte(new), 1)
}

// versionBinary reads the php-fpm executable of matrix version v.
func versionBinary(t testing.TB, v string) (string, []byte) {
	t.Helper()
	f := fpmtest.New(t, fpmtest.Options{Version: v})
	data, err := os.ReadFile(f.Binary)
	if err != nil {
		t.Fatal(err)
	}
	return f.Binary, data
}

// TestIdentify identifies the php-fpm of every version and copies of it
// patched into builds the reader must refuse: each refusal says why in one
// line.
func TestIdentify(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) { identifyVersion(t, v) })
}

func identifyVersion(t *testing.T, v string) {
	path, data := versionBinary(t, v)
	good, err := identify(bytes.NewReader(data), int64(len(data)), path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	l := good.layout
	ver := good.version
	if l.minor != v {
		t.Fatalf("%s: layout of PHP %s, want %s", path, l.minor, v)
	}
	build := "API" + l.api + ",NTS\x00"
	powered := "X-Powered-By: PHP/" + ver + "\x00"

	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.DynamicSymbols()
	for _, s := range syms {
		if s.Name == "executor_globals" && good.eg != s.Value {
			t.Errorf("executor_globals at %#x, the symbol table says %#x", good.eg, s.Value)
		}
	}
	if good.entry != f.Entry || !good.pie || len(good.header) != 64 || len(good.buildID) == 0 {
		t.Errorf("entry %#x (want %#x), PIE %v, header %d bytes, build ID %x", good.entry, f.Entry, good.pie, len(good.header), good.buildID)
	}

	aarch64 := bytes.Clone(data)
	binary.LittleEndian.PutUint16(aarch64[18:], uint16(elf.EM_AARCH64))
	other := "8.3"
	if l.minor == "8.3" {
		other = "8.1"
	}
	for _, c := range []struct {
		name string
		data []byte
		says string
	}{
		{"zts", patch(t, data, build, "API"+l.api+",TS\x00\x00"), "ZTS (thread-safe) build"},
		{"other-flags", patch(t, data, build, "API"+l.api+",dbg\x00"), `is built as "dbg"`},
		{"unknown-api", patch(t, patch(t, data, build, "API20230831,NTS\x00"), powered, "X-Powered-By: PHP/"+other+ver[len(l.minor):]+"\x00"),
			"(module API 20230831) is a version the reader does not know; it knows 7.4, 8.2, 8.4"},
		{"version-and-api-disagree", patch(t, data, powered, "X-Powered-By: PHP/"+other+ver[len(l.minor):]+"\x00"), "carries module API " + l.api},
		{"no-version", patch(t, data, powered, "X-Powered-By: PHQ/"+ver+"\x00"), "no PHP version string"},
		{"no-build-id", patch(t, data, build, "XPI"+l.api+",NTS\x00"), "not a PHP binary"},
		{"no-executor_globals", patch(t, data, "\x00executor_globals\x00", "\x00executor_globalz\x00"), "no dynamic symbol executor_globals"},
		{"aarch64", aarch64, "x86_64 only"},
		{"not-elf", []byte("#!/bin/sh\nexec php-fpm \"$@\"\n"), "not an ELF executable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := identify(bytes.NewReader(c.data), int64(len(c.data)), "/x/php-fpm")
			var unsupported *UnsupportedError
			if !errors.As(err, &unsupported) || !strings.Contains(err.Error(), c.says) || unsupported.Binary != "/x/php-fpm" {
				t.Fatalf("error %v, want an UnsupportedError for /x/php-fpm saying %q", err, c.says)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
		})
	}
}

// TestMatchesMemory: the memory at the load base must hold the file's ELF
// header and build ID, for the php-fpm of every version.
func TestMatchesMemory(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) { matchesMemory(t, v) })
}

func matchesMemory(t *testing.T, v string) {
	path, data := versionBinary(t, v)
	b, err := identify(bytes.NewReader(data), int64(len(data)), path)
	if err != nil {
		t.Fatal(err)
	}
	const base = 0x400000
	image := func(mutate func([]byte)) *fakeMemory {
		img := bytes.Clone(data[:b.buildIDv+uint64(len(b.buildID))])
		if mutate != nil {
			mutate(img)
		}
		return &fakeMemory{base: base, mem: img}
	}
	if err := b.matchesMemory(image(nil), base); err != nil {
		t.Fatalf("the file itself: %v", err)
	}
	if err := b.matchesMemory(image(func(m []byte) { m[24] ^= 1 }), base); err == nil || !strings.Contains(err.Error(), "not the executable's ELF header") {
		t.Errorf("another header: %v", err)
	}
	if err := b.matchesMemory(image(func(m []byte) { m[b.buildIDv] ^= 1 }), base); err == nil || !strings.Contains(err.Error(), "another build") {
		t.Errorf("another build ID: %v", err)
	}
	if err := b.matchesMemory(image(nil), base+4096); err == nil {
		t.Error("a base with nothing mapped: no error")
	}
}
