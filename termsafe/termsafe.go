// Package termsafe makes text that fpmguard did not write safe to print on
// a terminal. Request URIs, script paths, pool names, PHP's and nginx's
// messages come from clients and files: a client can put ESC and BEL in a
// URI, and printed raw they would retitle the operator's window, recolour
// the screen or worse. String shows every such character escaped instead,
// as Go writes it (`\x1b`, `\x07`, `\u202e`). It imports nothing of
// fpmguard's; everything that prints text for people imports it.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s with everything a terminal would not show as text
// escaped: control characters (C0, DEL, C1: the start of every escape
// sequence), bytes that are not UTF-8, and invisible format characters
// such as the bidirectional overrides that reorder what is shown. A
// backslash is doubled, so what is shown reads back unambiguously. Text
// that needs none of it is returned as it is, without allocating.
func String(s string) string {
	if plain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(c))
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		case shown(r):
			b.WriteString(s[i : i+size])
		default:
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				b.WriteString(`\u`)
				b.WriteString(hex4(r))
			}
		}
		i += size
	}
	return b.String()
}

// plain reports text of printable ASCII only, without a backslash: the
// common case, returned untouched.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// shown reports a character a terminal draws as itself: a letter, mark,
// number, punctuation, symbol or space. Control, format (U+200B–U+200F,
// U+202A–U+202E, U+2066–U+2069, …), private-use, surrogate and unassigned
// characters, and the line and paragraph separators, are escaped.
func shown(r rune) bool { return unicode.IsGraphic(r) }

// Strings returns a copy of ss with String applied to each.
func Strings(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = String(s)
	}
	return out
}

const hexDigits = "0123456789abcdef"

func hex2(c byte) string { return string([]byte{hexDigits[c>>4], hexDigits[c&0xf]}) }

func hex4(r rune) string {
	return string([]byte{hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf]})
}

// JSON escapes the control characters that encoding/json leaves raw in
// its output: DEL and the C1 controls (U+0080–U+009F, which a terminal may
// take as the start of an escape sequence), as \u007f and \u0080–\u009f.
// Those characters can only be inside JSON strings, where the escape means
// the same character: the JSON still decodes to the exact same values.
// encoding/json already escapes every character below U+0020.
func JSON(b []byte) []byte {
	if !needsJSON(b) {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == 0x7f:
			out = append(out, `\u007f`...)
		case b[i] == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			out = append(out, `\u00`...)
			out = append(out, hex2(b[i+1])...)
			i++
		default:
			out = append(out, b[i])
		}
	}
	return out
}

func needsJSON(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] == 0x7f || (b[i] == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f) {
			return true
		}
	}
	return false
}

// JSONWriter applies JSON to each write: for writers that are handed whole
// JSON documents or lines at a time, as encoding/json's Encoder and
// log/slog's handlers do.
type JSONWriter struct{ W io.Writer }

// Write writes b made terminal-safe, and reports len(b) on success.
func (j JSONWriter) Write(b []byte) (int, error) {
	if _, err := j.W.Write(JSON(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
