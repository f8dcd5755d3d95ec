// Package phpbin identifies a PHP executable (php-fpm, php) from its ELF
// file: the PHP version it was built from, its module API and its build
// flags (NTS or ZTS, debug). It reads the file and never runs it: fpmguard
// looks at binaries it must not run, such as a master's in another
// container (docs/security.md), and reading is enough.
//
// Every PHP executable carries, in .rodata, the module build ID extensions
// are checked against ("API20220829,NTS"; ZEND_MODULE_BUILD_ID in
// Zend/zend_modules.h) and the X-Powered-By header main/SAPI.c sends, with
// the full version ("X-Powered-By: PHP/8.2.36").
//
// It imports nothing of fpmguard's: phpstack and supervisor import it.
package phpbin

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Build is what an executable says of the PHP it was built from.
type Build struct {
	Version Version
	API     string // the module API, e.g. "20220829"
	Flags   string // the build ID's flags, e.g. "NTS", "TS", "NTS,debug"
}

// MaxSize bounds the executable Read parses: php-fpm is 5 to 7 MB, with
// its debug symbols in another file.
const MaxSize = 256 << 20

// maxRodata bounds the section searched for the version strings (450 KB
// in Debian's php-fpm 8.4).
const maxRodata = 32 << 20

var (
	buildIDPattern   = regexp.MustCompile(`API([0-9]{8}),([A-Za-z_,]*)\x00`)
	poweredByPattern = regexp.MustCompile(`X-Powered-By: PHP/([0-9]+\.[0-9]+\.[0-9]+)[A-Za-z0-9.+~-]*\x00`)
)

// Read identifies the executable of size bytes that r reads.
func Read(r io.ReaderAt, size int64) (Build, error) {
	if size > MaxSize {
		return Build{}, fmt.Errorf("%d bytes, more than any PHP executable (%d MiB at most)", size, MaxSize>>20)
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return Build{}, fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	return FromELF(f)
}

// FromELF identifies an executable already opened as ELF.
func FromELF(f *elf.File) (Build, error) {
	ro := f.Section(".rodata")
	if ro == nil || ro.Type != elf.SHT_PROGBITS || ro.Size > maxRodata {
		return Build{}, fmt.Errorf("no .rodata section of at most %d MiB, so no PHP version to read", maxRodata>>20)
	}
	data, err := ro.Data()
	if err != nil {
		return Build{}, fmt.Errorf("reading .rodata: %w", err)
	}
	return fromRodata(data)
}

func fromRodata(data []byte) (Build, error) {
	m := buildIDPattern.FindSubmatch(data)
	if m == nil {
		return Build{}, errors.New("no PHP module build ID (API<number>,NTS) in it: not a PHP binary")
	}
	b := Build{API: string(m[1]), Flags: string(m[2])}
	v := poweredByPattern.FindSubmatch(data)
	if v == nil {
		return Build{}, fmt.Errorf("module API %s but no PHP version string (X-Powered-By: PHP/x.y.z) in it", b.API)
	}
	var err error
	if b.Version, err = ParseVersion(string(v[1])); err != nil {
		return Build{}, err
	}
	return b, nil
}

// ZTS reports a thread-safe build.
func (b Build) ZTS() bool { return b.Flags == "TS" || strings.HasPrefix(b.Flags, "TS,") }

// Version is a PHP release, e.g. 8.2.36. Its zero value is an unknown
// version.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion reads "8.2.36", or "8.2" with patch 0.
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("PHP version %q is not MAJOR.MINOR.PATCH", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 1000 {
			return Version{}, fmt.Errorf("PHP version %q is not MAJOR.MINOR.PATCH", s)
		}
		n[i] = v
	}
	if n[0] == 0 {
		return Version{}, fmt.Errorf("PHP version %q has major version 0", s)
	}
	return Version{n[0], n[1], n[2]}, nil
}

// Known reports a version that was read: not the zero value.
func (v Version) Known() bool { return v.Major > 0 }

// AtLeast reports whether v is major.minor or later. An unknown version is
// not.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Branch is "8.2" of 8.2.36.
func (v Version) Branch() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func (v Version) String() string {
	if !v.Known() {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// MarshalText writes the version as "8.2.36", for JSON.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText reads what MarshalText wrote; "" is the unknown version.
func (v *Version) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*v = Version{}
		return nil
	}
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}
