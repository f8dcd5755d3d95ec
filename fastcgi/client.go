// Package fastcgi talks to php-fpm the way nginx does: one short FastCGI
// request per connection, bounded in time and size. It also knows php-fpm's
// two built-in endpoints, the ping and the status page, and the status page's
// data model. It knows nothing of pools' configs, processes or metrics. Of
// fpmguard's packages it imports only safefile, to reach a socket inside
// another container's root.
package fastcgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for a Client's zero fields.
const (
	DefaultTimeout = 2 * time.Second
	DefaultMaxBody = 8 << 20
	maxStderr      = 64 << 10
)

// Client sends FastCGI requests. The zero value is ready to use.
//
// gofast encodes each request, once: the bytes of a request fpmguard sends
// every second are the same every time, and gofast's Do starts four
// goroutines and two pipes per request, which at a thousand pools cost
// more than all the rest of a probe. The exchange itself runs on the
// caller's goroutine: every request gets its own connection with a
// deadline, and a recorder checks each record of the answer and keeps the
// output within bounds (gofast has no deadline, no size limit, ignores
// record ids and cannot tell a finished answer from a dropped connection).
type Client struct {
	Timeout time.Duration // bounds dial and exchange together; DefaultTimeout if 0
	MaxBody int64         // bytes of stdout accepted; DefaultMaxBody if 0
	// Probe counts the client's connections as fpmguard's own probes, in
	// RequestsSent and Connections: what fpmguard takes away from
	// php-fpm's counts of its users' requests.
	Probe bool
}

// Request is one CGI request. SCRIPT_NAME, SCRIPT_FILENAME, REQUEST_URI and
// DOCUMENT_URI are derived from Path and Script the way nginx's stock
// fastcgi_params set them.
type Request struct {
	Method string            // GET if empty
	Path   string            // the URI path, e.g. /status
	Query  string            // without the leading '?'
	Script string            // SCRIPT_FILENAME; Path if empty
	Params map[string]string // extra parameters, set last
}

// Response is php-fpm's complete answer.
type Response struct {
	Status int // 200 when php-fpm sent no Status header
	Header http.Header
	Body   []byte
	Stderr []byte // what PHP logged for this request, e.g. "Primary script unknown"
}

func (c Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Client) maxBody() int64 {
	if c.MaxBody > 0 {
		return c.MaxBody
	}
	return DefaultMaxBody
}

// Do sends req to addr and waits for the whole response, at most until the
// client's timeout or ctx's deadline, whichever comes first. It returns an
// *Error for every failure. An answer with status 400 or above is an error
// too, returned with the response.
func (c Client) Do(ctx context.Context, addr Address, req Request) (*Response, error) {
	timeout := c.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op := req.describe()

	nc, err := c.open(ctx, addr)
	if err != nil {
		return nil, dialError(op, addr, timeout, err)
	}
	defer nc.Close()

	wire, err := encoded(req.params())
	if err != nil {
		return nil, &Error{Op: op, Addr: addr, Class: ClassBadResponse, Err: err}
	}
	rec := newRecorder(c.maxBody())
	if _, err := nc.Write(wire); err != nil {
		rec.finish(err)
	} else {
		rec.readFrom(nc)
	}

	if rec.err != nil {
		err := rec.err
		if ctx.Err() != nil && !errors.Is(rec.err, errTooLarge) {
			err = context.DeadlineExceeded
		}
		e := classify(op, addr, timeout, err)
		if e.Class == ClassTimeout {
			e.Err = fmt.Errorf("%w, %s", e.Err, rec.waiting)
		}
		return nil, e
	}
	resp, err := parseCGI(rec.stdout.Bytes())
	if err != nil {
		return nil, classify(op, addr, timeout, err)
	}
	resp.Stderr = rec.stderr.Bytes()
	if resp.Status >= http.StatusBadRequest {
		return resp, answerError(req, addr, resp)
	}
	return resp, nil
}

// dialError classifies a failure to connect.
func dialError(op string, addr Address, timeout time.Duration, err error) *Error {
	e := classify(op, addr, timeout, err)
	if e.Class == ClassTimeout {
		e.Err = fmt.Errorf("%w, waiting to connect", e.Err)
	}
	return e
}

// dial connects to addr with ctx's deadline on every read and write, and
// ctx's end waking them.
func (c Client) dial(ctx context.Context, addr Address) (io.ReadWriteCloser, error) {
	deadline, _ := ctx.Deadline()
	target := addr.Addr
	if addr.Network == "unix" {
		path, connected, err := addr.socketPath()
		if err != nil {
			return nil, err
		}
		defer connected()
		target = path
		uc, ok, err := dialUnix(path, deadline)
		if err != nil {
			return nil, err
		}
		if ok {
			return &cancelled{uc, uc.cancel(ctx)}, nil
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, addr.Network, target)
	if err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(deadline); err != nil {
		nc.Close()
		return nil, err
	}
	// A cancelled ctx must wake a blocked read as the deadline would.
	return &cancelled{nc, context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })}, nil
}

// cancelled is a connection that stops watching its ctx when closed.
type cancelled struct {
	io.ReadWriteCloser
	stop func() bool
}

func (c *cancelled) Close() error {
	c.stop()
	return c.ReadWriteCloser.Close()
}

func (r Request) describe() string {
	m := r.Method
	if m == "" {
		m = http.MethodGet
	}
	if r.Query != "" {
		return m + " " + r.Path + "?" + r.Query
	}
	return m + " " + r.Path
}

func (r Request) params() map[string]string {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	script := r.Script
	if script == "" {
		script = r.Path
	}
	uri := r.Path
	if r.Query != "" {
		uri += "?" + r.Query
	}
	p := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "fpmguard",
		"REQUEST_METHOD":    method,
		"SCRIPT_FILENAME":   script,
		"SCRIPT_NAME":       r.Path,
		"DOCUMENT_URI":      r.Path,
		"REQUEST_URI":       uri,
		"QUERY_STRING":      r.Query,
		"REMOTE_ADDR":       "127.0.0.1",
		"SERVER_NAME":       "localhost",
		"CONTENT_LENGTH":    "0",
	}
	for k, v := range r.Params {
		p[k] = v
	}
	return p
}

// parseCGI splits a CGI response into status, headers and body.
func parseCGI(out []byte) (*Response, error) {
	end := bytes.Index(out, []byte("\r\n\r\n"))
	sep := 4
	if lf := bytes.Index(out, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
		end, sep = lf, 2
	}
	if end < 0 {
		return nil, fmt.Errorf("%w: no CGI headers in %d bytes of output", errBadCGI, len(out))
	}
	resp := &Response{Status: http.StatusOK, Header: make(http.Header), Body: out[end+sep:]}
	for _, line := range strings.Split(string(out[:end]), "\n") {
		line = strings.TrimRight(line, "\r")
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: bad header line %q", errBadCGI, truncate(line, 80))
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Status") {
			code, err := strconv.Atoi(strings.SplitN(value, " ", 2)[0])
			if err != nil || code < 100 || code > 999 {
				return nil, fmt.Errorf("%w: bad Status header %q", errBadCGI, truncate(value, 40))
			}
			resp.Status = code
			continue
		}
		resp.Header.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	return resp, nil
}

var errBadCGI = errors.New("bad CGI response")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// requestID is the id gofast gives the first request on a fresh connection,
// the only one fpmguard sends on it.
const requestID = 1

// recorder reads php-fpm's answer: it follows the record stream, rejects
// what php-fpm would never send, keeps stdout and stderr within bounds, and
// stops when the request has ended or the stream failed.
type recorder struct {
	maxBody int64

	hdr      [headerLen]byte
	hdrN     int
	typ      RecordType
	content  int // content bytes left in the current record
	padding  int // padding bytes left in the current record
	endBody  [endRequestLen]byte
	endBodyN int

	stdout, stderr bytes.Buffer
	ended          bool
	got            int64 // bytes read from php-fpm

	err     error  // why the stream failed, nil when it ended well
	waiting string // what was still awaited when the stream failed
}

func newRecorder(maxBody int64) *recorder {
	return &recorder{maxBody: maxBody}
}

func (r *recorder) finish(err error) {
	r.err = err
	if r.got == 0 {
		r.waiting = "waiting for the first byte of the answer"
	} else {
		r.waiting = fmt.Sprintf("waiting for the end of the answer (%d bytes received)", r.got)
	}
}

// readFrom reads the answer from c until the request ends or the stream
// fails, in as few reads as the answer allows. Anything after END_REQUEST
// is left alone: the connection carries this one request.
func (r *recorder) readFrom(c io.Reader) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		r.got += int64(n)
		if perr := r.follow(buf[:n]); perr != nil {
			r.finish(perr)
			return
		}
		if r.ended {
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errEndedEarly
			}
			r.finish(err)
			return
		}
	}
}

// readBufs holds the buffers answers are read through.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// follow advances the record state machine over b.
func (r *recorder) follow(b []byte) error {
	for len(b) > 0 {
		switch {
		case r.hdrN < headerLen:
			k := copy(r.hdr[r.hdrN:], b)
			r.hdrN += k
			b = b[k:]
			if r.hdrN == headerLen {
				if err := r.startRecord(); err != nil {
					return err
				}
			}
		case r.content > 0:
			k := min(r.content, len(b))
			if err := r.keep(b[:k]); err != nil {
				return err
			}
			r.content -= k
			b = b[k:]
		case r.padding > 0:
			k := min(r.padding, len(b))
			r.padding -= k
			b = b[k:]
		}
		if r.hdrN == headerLen && r.content == 0 && r.padding == 0 {
			if r.typ == EndRequest {
				return r.endRequest()
			}
			r.hdrN = 0
		}
	}
	return nil
}

func (r *recorder) startRecord() error {
	h, err := parseHeader(&r.hdr)
	if err != nil {
		return err
	}
	if h.ID != requestID {
		return fmt.Errorf("%w: record for request id %d, want %d", errBadRecord, h.ID, requestID)
	}
	switch h.Type {
	case Stdout, Stderr, EndRequest:
	default:
		return fmt.Errorf("%w: unexpected record type %d", errBadRecord, h.Type)
	}
	r.typ = h.Type
	r.content = int(h.ContentLength)
	r.padding = int(h.PaddingLength)
	if h.Type == EndRequest && r.content != endRequestLen {
		return fmt.Errorf("%w: END_REQUEST of %d bytes, want %d", errBadRecord, r.content, endRequestLen)
	}
	return nil
}

func (r *recorder) keep(b []byte) error {
	switch r.typ {
	case Stdout:
		if int64(r.stdout.Len()+len(b)) > r.maxBody {
			return fmt.Errorf("%w of %d bytes", errTooLarge, r.maxBody)
		}
		r.stdout.Write(b)
	case Stderr:
		// PHP's log lines matter only for their first part; drop the rest.
		if room := maxStderr - r.stderr.Len(); room > 0 {
			r.stderr.Write(b[:min(room, len(b))])
		}
	case EndRequest:
		r.endBodyN += copy(r.endBody[r.endBodyN:], b)
	}
	return nil
}

func (r *recorder) endRequest() error {
	if st := parseEndRequest(&r.endBody).ProtocolStatus; st != RequestComplete {
		return fmt.Errorf("%w: php-fpm refused the request (protocol status %d)", errBadRecord, st)
	}
	r.ended = true
	return nil
}
