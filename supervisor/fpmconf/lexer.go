package fpmconf

// The lexer: PHP's INI scanner, from a line to statements and value tokens.

import (
	"bytes"
	"fmt"
	"strings"
)

// The INI syntax.
//
// PHP's INI scanner (Zend/zend_ini_scanner.l, ZEND_INI_SCANNER_NORMAL) is
// a longest-match lexer with states; iniLine walks a line the same way,
// state by state, and builds the values as its parser would. The grammar
// (Zend/zend_ini_parser.y) is small: statements are [section],
// name = value and name[key] = value; a value is text, quoted strings and
// ${VAR}s run together, or integer operators over them, or a lone boolean
// word. PHP constants in values (E_ALL, PHP_OS) are not replaced, as
// nothing this package reads ever holds one.

type stmtKind int

const (
	stmtEntry stmtKind = iota
	stmtSection
	stmtArray
)

// stmt is one statement of a line.
type stmt struct {
	kind    stmtKind
	name    string // section name, or directive
	key     string // the key of name[key]
	value   string
	noValue bool // a name with no "= value"
}

type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

type iniLine struct {
	b       []byte
	i       int
	getenv  func(string) (string, bool)
	stopped bool // PHP's scanner met a byte it has no rule for: it ends the line there
}

func (p *iniLine) errorf(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...)}
}

func (p *iniLine) peek(off int) byte {
	if p.i+off < len(p.b) {
		return p.b[p.i+off]
	}
	return 0
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func (p *iniLine) skipBlanks() {
	for p.i < len(p.b) && isBlank(p.b[p.i]) {
		p.i++
	}
}

// isLabelChar is the scanner's LABEL class: directive and ${VAR} names.
func isLabelChar(c byte) bool {
	return strings.IndexByte("=\n\r\t;&|^$~(){}!\"[]\x00", c) < 0
}

// newline consumes "\r\n", "\r" or "\n" if one is next.
func (p *iniLine) newline() bool {
	switch p.peek(0) {
	case '\r':
		p.i++
		if p.peek(0) == '\n' {
			p.i++
		}
		return true
	case '\n':
		p.i++
		return true
	}
	return false
}

// comment consumes a ";" comment, which PHP ends only at a newline.
func (p *iniLine) comment() bool {
	j := p.i
	for j < len(p.b) && p.b[j] != '\n' && p.b[j] != '\r' {
		j++
	}
	if j == len(p.b) {
		return false
	}
	p.i = j
	return p.newline()
}

// each calls fn for each statement of the line, in order.
func (p *iniLine) each(fn func(stmt) error) error {
	for !p.stopped {
		p.skipBlanks()
		if p.i >= len(p.b) {
			return nil
		}
		switch c := p.b[p.i]; {
		case c == '\n' || c == '\r':
			p.newline()
			continue
		case c == ';':
			if !p.comment() {
				return nil
			}
			continue
		case c == '[':
			p.i++
			name, err := p.bracketed(false)
			if err != nil {
				return err
			}
			// "]" may be followed by blanks and a newline.
			p.skipBlanks()
			p.newline()
			if err := fn(stmt{kind: stmtSection, name: name}); err != nil {
				return err
			}
			continue
		case !isLabelChar(c):
			return p.errorf("unexpected %q", c)
		}
		start := p.i
		for p.i < len(p.b) && isLabelChar(p.b[p.i]) {
			p.i++
		}
		name := strings.TrimRight(string(p.b[start:p.i]), " ")
		st := stmt{kind: stmtEntry, name: name}
		if p.peek(0) == '[' {
			p.i++
			p.skipBlanks()
			key, err := p.bracketed(true)
			if err != nil {
				return err
			}
			st.kind, st.key = stmtArray, key
		}
		p.skipBlanks()
		if p.peek(0) != '=' {
			if st.kind == stmtArray {
				return p.errorf("%s[%s] has no \"= value\"", name, st.key)
			}
			// PHP passes a lone name to php-fpm without a value,
			// which php-fpm refuses.
			st.noValue = true
			return fn(st)
		}
		p.i++
		p.skipBlanks()
		v, err := p.value()
		if err != nil {
			return err
		}
		st.value = v
		if err := fn(st); err != nil {
			return err
		}
	}
	return nil
}

// bracketed reads a section name up to "]", or the key of name[key] (the
// scanner's ST_SECTION_VALUE and ST_OFFSET states). A key loses blanks
// before its "]", a section name keeps them.
func (p *iniLine) bracketed(isKey bool) (string, error) {
	var sb strings.Builder
	for {
		if p.i >= len(p.b) {
			return "", p.errorf("missing ]")
		}
		c := p.b[p.i]
		j := p.i
		for j < len(p.b) && isBlank(p.b[j]) {
			j++
		}
		switch {
		case c == ']' || isKey && j < len(p.b) && p.b[j] == ']':
			p.i = j + 1
			return sb.String(), nil
		case c == '"' || j > p.i && j < len(p.b) && p.b[j] == '"':
			p.i = j
			s, err := p.quoted()
			if err != nil {
				return "", err
			}
			sb.WriteString(s)
		case c == '\'':
			s, ok := p.raw()
			if !ok {
				return "", p.errorf("unterminated '")
			}
			sb.WriteString(s)
		case c == '$' && p.peek(1) == '{':
			v, err := p.variable()
			if err != nil {
				return "", err
			}
			sb.WriteString(v)
		default:
			n := p.textLen(`$`+"\n\r;\"']\\", true)
			if n == 0 {
				return "", p.errorf("unexpected %q", c)
			}
			sb.Write(p.b[p.i : p.i+n])
			p.i += n
		}
	}
}

// textLen measures a run of plain text starting at p.i: bytes not in stop,
// "$" with the byte after it unless that is "{", and "\" with the byte
// after it where escapes is set. This is the scanner's VALUE_CHARS and
// SECTION_VALUE_CHARS with their LITERAL_DOLLAR.
func (p *iniLine) textLen(stop string, escapes bool) int {
	j := p.i
	for j < len(p.b) {
		c := p.b[j]
		switch {
		case c == '$':
			switch {
			case j+1 >= len(p.b) || p.b[j+1] == '{':
				return j - p.i
			case p.b[j+1] == '\\' && j+2 < len(p.b):
				j += 3
			default:
				j += 2
			}
		case c == '\\' && escapes:
			if j+1 >= len(p.b) {
				return j - p.i
			}
			j += 2
		case strings.IndexByte(stop, c) >= 0:
			return j - p.i
		default:
			j++
		}
	}
	return j - p.i
}

// raw reads a single-quoted string, taken as is. PHP wants at least one
// byte between the quotes.
func (p *iniLine) raw() (string, bool) {
	end := bytes.IndexByte(p.b[p.i+1:], '\'')
	if end < 1 {
		return "", false
	}
	s := string(p.b[p.i+1 : p.i+1+end])
	p.i += end + 2
	return s, true
}

// quoted reads a double-quoted string at p.i, with ${VAR}s and the escapes
// \" \\ \$; any other backslash stays. Blanks after the closing quote go.
func (p *iniLine) quoted() (string, error) {
	p.i++
	var sb strings.Builder
	for {
		if p.i >= len(p.b) {
			return "", p.errorf("unterminated \"")
		}
		switch {
		case p.b[p.i] == '"':
			p.i++
			p.skipBlanks()
			return sb.String(), nil
		case p.b[p.i] == '$' && p.peek(1) == '{':
			v, err := p.variable()
			if err != nil {
				return "", err
			}
			sb.WriteString(v)
			continue
		}
		start := p.i
	chunk:
		for p.i < len(p.b) {
			switch c := p.b[p.i]; {
			case c == '"', c == '$' && p.peek(1) == '{':
				break chunk
			case c == '\\' && p.i+1 < len(p.b):
				// PHP's special case for Windows paths: \" at the end of
				// the line is a backslash and the closing quote.
				if p.b[p.i+1] == '"' && (p.i+2 >= len(p.b) || p.b[p.i+2] == '\n' || p.b[p.i+2] == '\r') {
					p.i++
					break chunk
				}
				p.i += 2
			default:
				p.i++
			}
		}
		sb.WriteString(unescape(p.b[start:p.i]))
	}
}

func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) && strings.IndexByte(`"\$`, b[i+1]) >= 0 {
			i++
		}
		sb.WriteByte(b[i])
	}
	return sb.String()
}

// variable reads ${NAME} at p.i: the environment variable, or "" if it is
// unset. PHP 8.3 added ${NAME:-default}; before it the whole text was the
// name, which no environment holds, so taking the default is safe.
func (p *iniLine) variable() (string, error) {
	p.i += 2
	start := p.i
	for p.i < len(p.b) && isLabelChar(p.b[p.i]) {
		p.i++
	}
	if p.peek(0) != '}' || p.i == start {
		return "", p.errorf("${ without a name and a closing }")
	}
	name := strings.Trim(string(p.b[start:p.i]), " ")
	p.i++
	name, def, hasDef := strings.Cut(name, ":-")
	if v, ok := p.getenv(name); ok {
		return v, nil
	}
	if hasDef {
		return def, nil
	}
	return "", nil
}

// Value tokens, from the scanner's ST_VALUE state.
type vkind int

const (
	vEnd    vkind = iota // no rule matches: the scanner ends the line
	vEOL                 // newline or comment: the value is over
	vText                // text, a quoted string, a ${VAR}, or blanks between them
	vBool                // a lone yes/no word, as "1" or ""
	vOp                  // | & ^ ~ ! ( )
	vEquals              // "=", which PHP refuses inside a value
)

type vtok struct {
	kind vkind
	text string
	op   byte
}

var boolWords = []struct {
	word, value string
}{
	{"false", ""}, {"none", ""}, {"null", ""}, {"true", "1"},
	{"yes", "1"}, {"off", ""}, {"on", "1"}, {"no", ""},
}

func (p *iniLine) token() (vtok, error) {
	if p.i >= len(p.b) {
		return vtok{kind: vEnd}, nil
	}
	c := p.b[p.i]
	if isBlank(c) {
		// Blanks before a newline, a comment or a quote disappear.
		j := p.i
		for j < len(p.b) && isBlank(p.b[j]) {
			j++
		}
		save := p.i
		p.i = j
		switch {
		case p.newline():
			return vtok{kind: vEOL}, nil
		case p.peek(0) == ';' && p.comment():
			return vtok{kind: vEOL}, nil
		case p.peek(0) == '"':
			s, err := p.quoted()
			return vtok{kind: vText, text: s}, err
		}
		return vtok{kind: vText, text: string(p.b[save:j])}, nil
	}
	switch c {
	case '\n', '\r':
		p.newline()
		return vtok{kind: vEOL}, nil
	case ';':
		if p.comment() {
			return vtok{kind: vEOL}, nil
		}
		return vtok{kind: vEnd}, nil
	case '"':
		s, err := p.quoted()
		return vtok{kind: vText, text: s}, err
	case '\'':
		if s, ok := p.raw(); ok {
			return vtok{kind: vText, text: s}, nil
		}
		// A quote that opens nothing ends the line, except that php-fpm
		// refuses '' outright.
		if p.peek(1) == '\'' {
			return vtok{}, p.errorf("'' is not an empty string here; use \"\"")
		}
		return vtok{kind: vEnd}, nil
	case '=':
		return vtok{kind: vEquals}, nil
	case '&', '|', '^', '~', '!', '(', ')':
		p.i++
		p.skipBlanks()
		return vtok{kind: vOp, op: c}, nil
	case '$':
		if p.peek(1) == '{' {
			v, err := p.variable()
			return vtok{kind: vText, text: v}, err
		}
	}
	n := p.textLen("$= \t\n\r;&|^~()!\"'", false)
	// A yes/no word wins over text of the same length or shorter; its
	// match includes the blanks after it.
	for _, w := range boolWords {
		if len(p.b)-p.i >= len(w.word) && strings.EqualFold(string(p.b[p.i:p.i+len(w.word)]), w.word) {
			j := p.i + len(w.word)
			for j < len(p.b) && isBlank(p.b[j]) {
				j++
			}
			if j-p.i >= n {
				p.i = j
				return vtok{kind: vBool, text: w.value}, nil
			}
			break
		}
	}
	if n == 0 {
		return vtok{kind: vEnd}, nil
	}
	t := vtok{kind: vText, text: string(p.b[p.i : p.i+n])}
	p.i += n
	return t, nil
}
