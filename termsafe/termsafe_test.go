package termsafe

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/index.php", "/index.php"},
		{"", ""},
		{"/sleep.php/\x1b]0;owned\a\x1b[31mred", `/sleep.php/\x1b]0;owned\x07\x1b[31mred`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{`C:\path`, `C:\\path`},
		{"del\x7f", `del\x7f`},
		{"csi\u009b31m", `csi\u009b31m`},
		{"bad\xff\xc2", `bad\xff\xc2`},
		{"rtl\u202eevil", `rtl\u202eevil`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"café ünïcode 日本", "café ünïcode 日本"},
		{"nul\x00", `nul\x00`},
		{"private\U000F0000", `private\U000f0000`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzString: whatever the input, the output holds no control byte, no
// C1 control and is valid UTF-8.
func FuzzString(f *testing.F) {
	f.Add("/sleep.php/\x1b]0;x\a")
	f.Add("\u009b\xc2\x9b\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !utf8.ValidString(out) {
			t.Fatalf("not UTF-8: %q", out)
		}
		for _, r := range out {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
				t.Fatalf("control %U left in %q", r, out)
			}
		}
	})
}

func TestJSONStaysExact(t *testing.T) {
	in := map[string]string{"uri": "/a\x1b]0;x\a\x7f\u009b\u0085é\u00a0"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	safe := JSON(b)
	for _, c := range safe {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("raw control byte %#x in %q", c, safe)
		}
	}
	if bytes.Contains(safe, []byte("\u009b")) || bytes.Contains(safe, []byte("\u0085")) {
		t.Fatalf("raw C1 control in %q", safe)
	}
	var out map[string]string
	if err := json.Unmarshal(safe, &out); err != nil {
		t.Fatal(err)
	}
	if out["uri"] != in["uri"] {
		t.Errorf("decoded %q, want %q", out["uri"], in["uri"])
	}
	plain := []byte(`{"a":"b"}`)
	if got := JSON(plain); &got[0] != &plain[0] {
		t.Error("plain JSON was copied")
	}
}

func BenchmarkStringPlain(b *testing.B) {
	for b.Loop() {
		_ = String("/var/www/app/public/index.php")
	}
}
