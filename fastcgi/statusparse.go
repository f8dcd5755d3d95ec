package fastcgi

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// php-fpm writes its JSON status with printf. php-fpm's NEWS says the query
// string is escaped only since 8.2.7 (bug #64539), and user and script only
// since 8.2.36, so deployed versions still write pages where a quote,
// backslash or newline in a URI breaks the document. So this is a small hand-written reader instead of
// encoding/json. A string value ends only at a quote followed by the end of
// the object or by a field name php-fpm writes, which finds the right end
// in broken documents too. It is also several times faster than
// encoding/json, which matters on every watch tick.

// nextKey is the field php-fpm writes after each string field. A string
// value ends only before its successor, so a URI holding `","pid":` is still
// read whole. Versions that write another order fall back to statusKeys.
var nextKey = map[string]string{
	"pool":            "process manager",
	"process manager": "start time",
	"state":           "start time",
	"request method":  "request uri",
	"request uri":     "content length",
	"user":            "script",
	"script":          "last request cpu",
}

// statusKeys are the field names php-fpm 7.4 to 8.4 write, pool level and
// process level.
var statusKeys = map[string]bool{
	"pool": true, "process manager": true, "start time": true, "start since": true,
	"accepted conn": true, "listen queue": true, "max listen queue": true,
	"listen queue len": true, "idle processes": true, "active processes": true,
	"total processes": true, "max active processes": true, "max children reached": true,
	"slow requests": true, "memory peak": true, "processes": true,
	"pid": true, "state": true, "requests": true, "request duration": true,
	"request method": true, "request uri": true, "content length": true, "user": true,
	"script": true, "last request cpu": true, "last request memory": true,
}

var errSyntax = errors.New("not a php-fpm JSON status page")

type jsonReader struct {
	b []byte
	i int
	// orderUnknown relaxes nextKey for a layout this reader does not know.
	orderUnknown bool
}

func (r *jsonReader) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errSyntax, what, r.i)
}

func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\r', '\n':
			r.i++
		default:
			return
		}
	}
}

// expect consumes c after optional space.
func (r *jsonReader) expect(c byte) bool {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// key reads an object key; php-fpm's keys never hold quotes or escapes.
func (r *jsonReader) key() (string, error) {
	if !r.expect('"') {
		return "", r.fail("expected a key")
	}
	end := bytes.IndexByte(r.b[r.i:], '"')
	if end < 0 {
		return "", r.fail("unterminated key")
	}
	k := string(r.b[r.i : r.i+end])
	r.i += end + 1
	if !r.expect(':') {
		return "", r.fail("expected ':'")
	}
	return k, nil
}

// stringEnds reports whether the quote at j closes the value of key: it is
// followed by ',' and the key that follows key. php-fpm never ends an object
// with a string, so '}' ends one only in a layout this reader does not know.
func (r *jsonReader) stringEnds(key string, j int) bool {
	k := j + 1
	for k < len(r.b) && r.b[k] == ' ' {
		k++
	}
	if k >= len(r.b) {
		return false
	}
	if r.b[k] == '}' {
		return r.orderUnknown
	}
	if r.b[k] != ',' {
		return false
	}
	k++
	for k < len(r.b) && r.b[k] == ' ' {
		k++
	}
	if k >= len(r.b) || r.b[k] != '"' {
		return false
	}
	end := bytes.IndexByte(r.b[k+1:], '"')
	if end < 0 {
		return false
	}
	name := r.b[k+1 : k+1+end]
	after := k + 1 + end + 1
	if after >= len(r.b) || r.b[after] != ':' {
		return false
	}
	if next, ok := nextKey[key]; ok && string(name) != next {
		return r.orderUnknown && statusKeys[string(name)]
	}
	return statusKeys[string(name)]
}

// str reads the string value of key, decoding the escapes that are valid
// JSON and keeping anything else as it was written.
func (r *jsonReader) str(key string) (string, error) {
	start := r.i
	plain := true
	for j := start; j < len(r.b); j++ {
		switch r.b[j] {
		case '\\':
			plain = false
			j++
		case '"':
			if !r.stringEnds(key, j) {
				plain = false
				continue
			}
			r.i = j + 1
			if plain {
				return string(r.b[start:j]), nil
			}
			return unescape(r.b[start:j]), nil
		}
	}
	return "", r.fail("unterminated string")
}

func unescape(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 >= len(b) {
			sb.WriteByte(c)
			continue
		}
		switch n := b[i+1]; n {
		case '"', '\\', '/':
			sb.WriteByte(n)
		case 'n':
			sb.WriteByte('\n')
		case 't':
			sb.WriteByte('\t')
		case 'r':
			sb.WriteByte('\r')
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'u':
			if i+5 < len(b) {
				if v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16); err == nil {
					sb.WriteRune(rune(v))
					i += 5
					continue
				}
			}
			sb.WriteByte(c)
			continue
		default:
			// Not an escape: an unescaped backslash from an old php-fpm.
			sb.WriteByte(c)
			continue
		}
		i++
	}
	if !utf8.ValidString(sb.String()) {
		return strings.ToValidUTF8(sb.String(), "\uFFFD")
	}
	return sb.String()
}

// scalar reads a number token.
func (r *jsonReader) scalar() ([]byte, error) {
	r.space()
	start := r.i
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ',', '}', ']', ' ', '\n', '\r', '\t':
			if r.i == start {
				return nil, r.fail("expected a value")
			}
			return r.b[start:r.i], nil
		}
		r.i++
	}
	return nil, r.fail("unexpected end")
}

// value reads the value of key, of either kind.
func (r *jsonReader) value(key string) (string, error) {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '"' {
		r.i++
		return r.str(key)
	}
	v, err := r.scalar()
	return string(v), err
}

// object reads the members of an object whose '{' was consumed, calling
// set for each, and nested for an array member.
func (r *jsonReader) object(set func(key, val string) error, nested func(key string) error) error {
	if r.expect('}') {
		return nil
	}
	for {
		k, err := r.key()
		if err != nil {
			return err
		}
		r.space()
		if r.i < len(r.b) && r.b[r.i] == '[' && nested != nil {
			r.i++
			if err := nested(k); err != nil {
				return err
			}
		} else {
			v, err := r.value(k)
			if err != nil {
				return err
			}
			if err := set(k, v); err != nil {
				return err
			}
		}
		if r.expect(',') {
			continue
		}
		if r.expect('}') {
			return nil
		}
		return r.fail("expected ',' or '}'")
	}
}

func parseStatusJSON(b []byte) (*Status, error) {
	st, err := readStatusJSON(&jsonReader{b: b})
	if err != nil {
		// Perhaps a php-fpm writes its fields in another order.
		return readStatusJSON(&jsonReader{b: b, orderUnknown: true})
	}
	return st, nil
}

func readStatusJSON(r *jsonReader) (*Status, error) {
	if !r.expect('{') {
		return nil, r.fail("expected '{'")
	}
	st := &Status{MemoryPeak: -1}
	procs := func(key string) error {
		if key != "processes" {
			return r.fail("unexpected array " + strconv.Quote(key))
		}
		if r.expect(']') {
			return nil
		}
		for {
			if !r.expect('{') {
				return r.fail("expected a process object")
			}
			var p Process
			if err := r.object(p.set, nil); err != nil {
				return err
			}
			// fpmguard acts on workers by pid; php-fpm writes one for each,
			// 0 for a child it has not forked yet.
			switch {
			case p.unforked:
			case p.PID == 0:
				return r.fail("a process without a pid")
			default:
				st.Processes = append(st.Processes, p)
			}
			if r.expect(',') {
				continue
			}
			if r.expect(']') {
				return nil
			}
			return r.fail("expected ',' or ']'")
		}
	}
	if err := r.object(st.set, procs); err != nil {
		return nil, err
	}
	if st.Pool == "" {
		return nil, r.fail("no pool name")
	}
	return st, nil
}

// parseStatusText reads the plain-text format: "key: value" lines, and for
// the full page one block per process after a line of asterisks. A line that
// is not "known key: value" continues the previous value (a newline in a URI).
func parseStatusText(b []byte) (*Status, error) {
	st := &Status{MemoryPeak: -1}
	var cur *Process
	// A value's continuation lines are gathered in more and added once the
	// value ends: adding them one by one is quadratic, and a body of many
	// short lines stalled the watcher for hours.
	var more strings.Builder
	var moreTo func(string)
	flush := func() {
		if moreTo != nil && more.Len() > 0 {
			moreTo(more.String())
		}
		more.Reset()
		moreTo = nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "*****") {
			flush() // before the append moves the process it points to
			st.Processes = append(st.Processes, Process{})
			cur = &st.Processes[len(st.Processes)-1]
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		k = strings.ToLower(k)
		if !ok || !statusKeys[k] {
			if moreTo != nil {
				more.WriteString("\n")
				more.WriteString(line)
			}
			continue
		}
		flush()
		v = strings.TrimSpace(v)
		if cur == nil {
			if err := st.set(k, v); err != nil {
				return nil, err
			}
			continue
		}
		p := cur
		if err := p.set(k, v); err != nil {
			return nil, err
		}
		if k == "request uri" || k == "script" || k == "user" {
			key := k
			moreTo = func(s string) { p.appendTo(key, s) }
		}
	}
	flush()
	if st.Pool == "" {
		return nil, errors.New("not a php-fpm status page: no pool line")
	}
	procs := st.Processes[:0]
	for i, p := range st.Processes {
		switch {
		case p.unforked: // a child php-fpm has not forked yet
		case p.PID == 0:
			return nil, fmt.Errorf("not a php-fpm status page: process %d has no pid", i+1)
		default:
			procs = append(procs, p)
		}
	}
	st.Processes = procs
	return st, nil
}

func (st *Status) set(k, v string) error {
	var err error
	switch k {
	case "pool":
		st.Pool = v
	case "process manager":
		st.ProcessManager = v
	case "start time":
		st.StartTime, err = parseStart(v)
	case "start since":
		st.StartSince, err = parseInt(k, v)
	case "accepted conn":
		st.AcceptedConn, err = parseUint(k, v)
	case "listen queue":
		st.ListenQueue, err = parseInt(k, v)
	case "max listen queue":
		st.MaxListenQueue, err = parseInt(k, v)
	case "listen queue len":
		st.ListenQueueLen, err = parseInt(k, v)
	case "idle processes":
		st.IdleProcesses, err = parseInt(k, v)
	case "active processes":
		st.ActiveProcesses, err = parseInt(k, v)
	case "total processes":
		st.TotalProcesses, err = parseInt(k, v)
	case "max active processes":
		st.MaxActiveProcesses, err = parseInt(k, v)
	case "max children reached":
		st.MaxChildrenReached, err = parseUint(k, v)
	case "slow requests":
		st.SlowRequests, err = parseUint(k, v)
	case "memory peak":
		st.MemoryPeak, err = parseInt(k, v)
	}
	// Unknown keys come from newer php-fpm versions: ignore them.
	return err
}

func (p *Process) set(k, v string) error {
	var err error
	switch k {
	case "pid":
		var n int64
		n, err = parseInt(k, v)
		if err == nil && (n < 0 || n > 1<<22) {
			err = fmt.Errorf("pid %d out of range", n)
		}
		p.PID, p.unforked = int(n), n == 0
	case "state":
		p.State = v
	case "start time":
		p.StartTime, err = parseStart(v)
	case "start since":
		p.StartSince, err = parseInt(k, v)
	case "requests":
		p.Requests, err = parseUint(k, v)
	case "request duration":
		var us int64
		us, err = parseInt(k, v)
		p.RequestDuration = time.Duration(us) * time.Microsecond
	case "request method":
		p.RequestMethod = v
	case "request uri":
		p.RequestURI = v
	case "content length":
		p.ContentLength, err = parseInt(k, v)
	case "user":
		p.User = v
	case "script":
		p.Script = v
	case "last request cpu":
		p.LastRequestCPU, err = strconv.ParseFloat(v, 64)
		// ParseFloat takes NaN and Inf, which php-fpm never writes and
		// the report's JSON cannot hold.
		if err != nil || math.IsNaN(p.LastRequestCPU) || math.IsInf(p.LastRequestCPU, 0) {
			err = fmt.Errorf("last request cpu %q is not a number", truncate(v, 20))
		}
	case "last request memory":
		p.LastRequestMemory, err = parseInt(k, v)
	}
	return err
}

func (p *Process) appendTo(k, more string) {
	switch k {
	case "request uri":
		p.RequestURI += more
	case "script":
		p.Script += more
	case "user":
		p.User += more
	}
}

func parseInt(k, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a whole number", k, truncate(v, 20))
	}
	return n, nil
}

func parseUint(k, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a count", k, truncate(v, 20))
	}
	return n, nil
}

// parseStart reads a start time: a Unix time in JSON, a date in plain text.
func parseStart(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse("02/Jan/2006:15:04:05 -0700", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("start time %q is neither a Unix time nor a date", truncate(v, 40))
	}
	return t, nil
}
