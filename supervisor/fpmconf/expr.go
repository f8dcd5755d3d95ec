package fpmconf

// The value parser: text, yes/no words and PHP's INI integer operators.

import (
	"strconv"
	"strings"
)

// value parses the value after "=", up to the end of its line.
func (p *iniLine) value() (string, error) {
	vp := &valueParser{p: p}
	if err := vp.next(); err != nil {
		return "", err
	}
	var v string
	switch vp.t.kind {
	case vEOL:
		return "", nil
	case vBool:
		v = vp.t.text
		if err := vp.next(); err != nil {
			return "", err
		}
		if vp.t.kind != vEOL && vp.t.kind != vEnd {
			vp.t.kind = vBool // it is the yes/no word that does not fit
		}
	default:
		var err error
		if v, err = vp.expr(); err != nil {
			return "", err
		}
	}
	switch vp.t.kind {
	case vEOL:
		return v, nil
	case vEnd:
		p.stopped = true
		return v, nil
	}
	return "", vp.unexpected()
}

type valueParser struct {
	p *iniLine
	t vtok
}

func (vp *valueParser) next() error {
	var err error
	vp.t, err = vp.p.token()
	return err
}

func (vp *valueParser) unexpected() error {
	const hint = `; put such a value in "double quotes"`
	switch vp.t.kind {
	case vOp:
		return vp.p.errorf("%q is an operator in a php-fpm value%s", vp.t.op, hint)
	case vEquals:
		return vp.p.errorf("'=' in a value%s", hint)
	case vBool:
		return vp.p.errorf("yes/no/on/off/true/false/none/null among other words%s", hint)
	}
	return vp.p.errorf("the value is incomplete (an unclosed quote or a dangling operator)")
}

// expr is "unary (op unary)*" with | & ^ of equal precedence, left to right.
func (vp *valueParser) expr() (string, error) {
	v, err := vp.unary()
	if err != nil {
		return "", err
	}
	for vp.t.kind == vOp && strings.IndexByte("|&^", vp.t.op) >= 0 {
		op := vp.t.op
		if err := vp.next(); err != nil {
			return "", err
		}
		r, err := vp.unary()
		if err != nil {
			return "", err
		}
		v = iniOp(op, v, r)
	}
	return v, nil
}

func (vp *valueParser) unary() (string, error) {
	switch {
	case vp.t.kind == vOp && (vp.t.op == '~' || vp.t.op == '!'):
		op := vp.t.op
		if err := vp.next(); err != nil {
			return "", err
		}
		v, err := vp.unary()
		return iniOp(op, v, ""), err
	case vp.t.kind == vOp && vp.t.op == '(':
		if err := vp.next(); err != nil {
			return "", err
		}
		v, err := vp.expr()
		if err != nil {
			return "", err
		}
		if vp.t.kind != vOp || vp.t.op != ')' {
			return "", vp.p.errorf("( without )")
		}
		return v, vp.next()
	case vp.t.kind == vText:
		var sb strings.Builder
		for vp.t.kind == vText {
			sb.WriteString(vp.t.text)
			if err := vp.next(); err != nil {
				return "", err
			}
		}
		return sb.String(), nil
	}
	return "", vp.unexpected()
}

// iniOp applies one of the INI integer operators, in C int, as PHP's
// zend_ini_do_op does.
func iniOp(op byte, a, b string) string {
	x, y := int32(strtol(a)), int32(strtol(b))
	var r int32
	switch op {
	case '|':
		r = x | y
	case '&':
		r = x & y
	case '^':
		r = x ^ y
	case '~':
		r = ^x
	case '!':
		if x == 0 {
			r = 1
		}
	}
	return strconv.Itoa(int(r))
}
