package phpstack

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fpmguard/fpmguard/phpbin"
)

// executable is what the reader knows of one php-fpm executable.
type executable struct {
	version  string  // "8.2.36", from the X-Powered-By header compiled in (phpbin)
	layout   *layout // the structure offsets of its version
	eg       uint64  // executor_globals' address before relocation
	entry    uint64  // the ELF entry point before relocation, to find the load base
	pie      bool    // ET_DYN: loaded at a base chosen at exec time
	header   []byte  // the ELF file header, to check the mapping is this file
	buildID  []byte  // the GNU build ID, when the file has one
	buildIDv uint64  // the build ID note's descriptor address before relocation
}

// identify reads an executable and tells whether the reader knows its
// build. path only names it in errors.
func identify(r io.ReaderAt, size int64, path string) (*executable, error) {
	unsupported := func(format string, a ...any) error {
		return &UnsupportedError{Binary: path, Reason: fmt.Sprintf(format, a...)}
	}
	if size > phpbin.MaxSize {
		return nil, unsupported("%d bytes, more than any php-fpm (%d MiB at most)", size, phpbin.MaxSize>>20)
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, unsupported("not an ELF executable: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, unsupported("built for %v; the structure offsets are known for x86_64 only", f.Machine)
	}
	if f.Type != elf.ET_DYN && f.Type != elf.ET_EXEC {
		return nil, unsupported("ELF type %v is not an executable", f.Type)
	}
	build, err := phpbin.FromELF(f)
	if err != nil {
		return nil, unsupported("%v", err)
	}
	version, api := build.Version.String(), build.API
	if build.Flags != "NTS" {
		what := fmt.Sprintf("built as %q", build.Flags)
		if build.ZTS() {
			what = "a ZTS (thread-safe) build"
		}
		return nil, unsupported("PHP %s is %s: the reader knows NTS builds without debug only", version, what)
	}
	l := layouts[api]
	if l == nil {
		return nil, unsupported("PHP %s (module API %s) is a version the reader does not know; it knows %s", version, api, knownVersions())
	}
	if build.Version.Branch() != l.minor {
		return nil, unsupported("the binary says PHP %s but carries module API %s, which is PHP %s's: not a build the reader trusts", version, api, l.minor)
	}
	eg, err := executorGlobals(f)
	if err != nil {
		return nil, unsupported("PHP %s: %v", version, err)
	}
	b := &executable{version: version, layout: l, eg: eg, entry: f.Entry, pie: f.Type == elf.ET_DYN}
	b.header = make([]byte, 64)
	if _, err := r.ReadAt(b.header, 0); err != nil {
		return nil, unsupported("reading the ELF header: %v", err)
	}
	b.buildID, b.buildIDv = buildID(f)
	return b, nil
}

// executorGlobals finds the dynamic symbol executor_globals: an NTS build
// exports the structure itself, a ZTS build only its TSRM offset.
func executorGlobals(f *elf.File) (uint64, error) {
	syms, err := f.DynamicSymbols()
	if err != nil {
		return 0, fmt.Errorf("reading its dynamic symbols: %w", err)
	}
	for _, s := range syms {
		if s.Name == "executor_globals" && elf.ST_TYPE(s.Info) == elf.STT_OBJECT && s.Value != 0 {
			return s.Value, nil
		}
	}
	return 0, errors.New("no dynamic symbol executor_globals")
}

// buildID returns the GNU build ID and where its bytes are loaded.
func buildID(f *elf.File) ([]byte, uint64) {
	s := f.Section(".note.gnu.build-id")
	if s == nil || s.Size > 1024 || s.Addr == 0 {
		return nil, 0
	}
	data, err := s.Data()
	// A note: namesz, descsz, type (3: NT_GNU_BUILD_ID), "GNU\0", desc.
	if err != nil || len(data) < 16 {
		return nil, 0
	}
	namesz := f.ByteOrder.Uint32(data[0:])
	descsz := f.ByteOrder.Uint32(data[4:])
	typ := f.ByteOrder.Uint32(data[8:])
	off := 12 + (uint64(namesz)+3)&^3
	if typ != 3 || namesz != 4 || descsz == 0 || descsz > 64 || off+uint64(descsz) > uint64(len(data)) {
		return nil, 0
	}
	return data[off : off+uint64(descsz)], s.Addr + off
}

// knownVersions lists the PHP versions with a layout, for messages.
func knownVersions() string {
	var v []string
	for _, l := range layouts {
		v = append(v, l.minor)
	}
	sort.Strings(v)
	return strings.Join(v, ", ")
}

// matchesMemory reports whether the bytes loaded at base are this file's.
func (b *executable) matchesMemory(m memory, base uint64) error {
	got := make([]byte, len(b.header))
	if err := m.ReadAt(got, base); err != nil {
		return fmt.Errorf("reading the ELF header at the load base %#x: %w", base, err)
	}
	if !bytes.Equal(got, b.header) {
		return fmt.Errorf("the memory at the load base %#x is not the executable's ELF header", base)
	}
	if b.buildID == nil {
		return nil
	}
	got = make([]byte, len(b.buildID))
	if err := m.ReadAt(got, base+b.buildIDv); err != nil {
		return fmt.Errorf("reading the build ID: %w", err)
	}
	if !bytes.Equal(got, b.buildID) {
		return fmt.Errorf("the process runs another build than its executable file (build ID %x in memory, %x in the file)", got, b.buildID)
	}
	return nil
}
