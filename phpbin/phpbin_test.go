package phpbin

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestReadEachVersion reads the php-fpm binary of every version of the
// matrix and finds the version `php-fpm -v` prints, without running it.
func TestReadEachVersion(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		f := fpmtest.New(t, fpmtest.Options{Version: v})
		data, err := os.ReadFile(f.Binary)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", f.Binary, err)
		}
		if b.Version.String() != f.PHPVersion || b.Version.Branch() != v || b.Flags != "NTS" || b.ZTS() || len(b.API) != 8 {
			t.Fatalf("%s: %+v, want PHP %s (php-fpm -v), NTS", f.Binary, b, f.PHPVersion)
		}
		t.Logf("%s: PHP %s, module API %s, %s", f.Binary, b.Version, b.API, b.Flags)
	})
}

// TestReadRefuses: what is not a PHP executable says why, in one line.
func TestReadRefuses(t *testing.T) {
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	good, err := Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		t.Helper()
		if len(old) != len(new) || bytes.Count(data, []byte(old)) != 1 {
			t.Fatalf("want one %q to replace with %q of the same length", old, new)
		}
		return bytes.Replace(data, []byte(old), []byte(new), 1)
	}
	powered := "X-Powered-By: PHP/" + good.Version.String() + "\x00"
	for _, c := range []struct {
		name string
		data []byte
		says string
	}{
		{"not-elf", []byte("#!/bin/sh\nexec php-fpm \"$@\"\n"), "not an ELF executable"},
		{"no-build-id", replace("API"+good.API+",NTS\x00", "XPI"+good.API+",NTS\x00"), "not a PHP binary"},
		{"no-version", replace(powered, strings.Replace(powered, "PHP/", "PHQ/", 1)), "no PHP version string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data), int64(len(c.data)))
			if err == nil || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line saying %q", err, c.says)
			}
		})
	}
	zts, err := Read(bytes.NewReader(replace("API"+good.API+",NTS\x00", "API"+good.API+",TS\x00\x00")), int64(len(data)))
	if err != nil || !zts.ZTS() || zts.Flags != "TS" {
		t.Errorf("a ZTS build: %+v, %v", zts, err)
	}
	if _, err := Read(bytes.NewReader(nil), MaxSize+1); err == nil || !strings.Contains(err.Error(), "more than any PHP executable") {
		t.Errorf("a file too large: %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    Version
		bad     bool
		from8_0 bool
		from8_2 bool
	}{
		{in: "7.4.33", want: Version{7, 4, 33}},
		{in: "8.0.0", want: Version{8, 0, 0}, from8_0: true},
		{in: "8.2", want: Version{8, 2, 0}, from8_0: true, from8_2: true},
		{in: "8.4.27", want: Version{8, 4, 27}, from8_0: true, from8_2: true},
		{in: "10.0.1", want: Version{10, 0, 1}, from8_0: true, from8_2: true},
		{in: "8", bad: true},
		{in: "8.2.x", bad: true},
		{in: "0.1.2", bad: true},
		{in: "8.2.3.4", bad: true},
		{in: "-8.2.3", bad: true},
	} {
		v, err := ParseVersion(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: %v, want an error", c.in, v)
			}
			continue
		}
		if err != nil || v != c.want || v.AtLeast(8, 0) != c.from8_0 || v.AtLeast(8, 2) != c.from8_2 || !v.Known() {
			t.Errorf("%q: %v, %v; 8.0 or later %v, 8.2 or later %v", c.in, v, err, v.AtLeast(8, 0), v.AtLeast(8, 2))
		}
	}
	var unknown Version
	if unknown.Known() || unknown.AtLeast(7, 0) || unknown.String() != "" {
		t.Errorf("the zero version: known %v, 7.0 or later %v, %q", unknown.Known(), unknown.AtLeast(7, 0), unknown.String())
	}
	type doc struct {
		V Version `json:"v,omitzero"`
	}
	for _, c := range []struct {
		v    Version
		json string
	}{{Version{8, 4, 27}, `{"v":"8.4.27"}`}, {Version{}, `{}`}} {
		b, err := json.Marshal(doc{c.v})
		if err != nil || string(b) != c.json {
			t.Errorf("%v as JSON: %s, %v; want %s", c.v, b, err, c.json)
		}
		var back doc
		if err := json.Unmarshal(b, &back); err != nil || back.V != c.v {
			t.Errorf("%s read back: %v, %v", b, back.V, err)
		}
	}
}
