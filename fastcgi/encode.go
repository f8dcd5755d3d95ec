package fastcgi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/yookoala/gofast"
)

// encoded returns the bytes of a request with params, as gofast encodes it
// on a fresh connection (request id 1), without keep-conn. They are cached:
// a watcher sends the same few requests to each pool every interval.
func encoded(params map[string]string) ([]byte, error) {
	key := paramsKey(params)
	encodings.mu.Lock()
	b, ok := encodings.m[key]
	encodings.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := encode(params)
	if err != nil {
		return nil, err
	}
	encodings.mu.Lock()
	if encodings.m == nil || len(encodings.m) >= maxEncodings {
		encodings.m = map[string][]byte{}
	}
	encodings.m[key] = b
	encodings.mu.Unlock()
	return b, nil
}

// maxEncodings bounds the cache: a few requests per pool, and one-off
// ones (opcache invalidations) that start it over when it fills.
const maxEncodings = 8192

var encodings struct {
	mu sync.Mutex
	m  map[string][]byte
}

func paramsKey(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}

// encode has gofast write the request into memory.
func encode(params map[string]string) ([]byte, error) {
	c := &captureConn{done: make(chan struct{})}
	fc, err := gofast.SimpleClientFactory(func() (net.Conn, error) { return c, nil })()
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	req := gofast.NewRequest(nil)
	req.Params = params
	pipe, err := fc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		return nil, errors.New("encoding the request: gofast never finished writing it")
	}
	pipe.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.Clone(c.buf.Bytes())
	if err := dropKeepConn(b); err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	return b, nil
}

// keepConn is the FCGI_KEEP_CONN flag of a BEGIN_REQUEST body.
const keepConn = 1

// dropKeepConn clears FCGI_KEEP_CONN in the BEGIN_REQUEST that starts b,
// which gofast always sets. fpmguard sends one request per connection, as
// nginx does by default: without the flag, php-fpm closes the connection
// when it has answered. With it, the worker stays on the connection until
// fpmguard closes it, then wakes once more to find it closed, and php-fpm
// counts that wake-up as one more accepted connection: each probe would
// count twice in the pool's "accepted conn".
func dropKeepConn(b []byte) error {
	const flags = headerLen + 2 // after the two bytes of the role
	if len(b) <= flags || RecordType(b[1]) != BeginRequest {
		return errors.New("gofast's request does not start with BEGIN_REQUEST")
	}
	b[flags] &^= keepConn
	return nil
}

// captureConn keeps what gofast writes, and tells when the request is
// complete: at the empty STDIN record that ends it. gofast's reader gets
// EOF once the request is written, which ends its goroutines.
type captureConn struct {
	net.Conn // nil: only Read, Write and Close are called
	mu       sync.Mutex
	buf      bytes.Buffer
	done     chan struct{}
	once     sync.Once
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	complete := endsWithEmptyStdin(c.buf.Bytes())
	c.mu.Unlock()
	if complete {
		c.once.Do(func() { close(c.done) })
	}
	return len(p), nil
}

func (c *captureConn) Read([]byte) (int, error) {
	<-c.done
	return 0, io.EOF
}

func (c *captureConn) Close() error { return nil }

// endsWithEmptyStdin reports whether b, whole records, ends with an empty
// STDIN record.
func endsWithEmptyStdin(b []byte) bool {
	var last RecordHeader
	for len(b) >= headerLen {
		h, err := parseHeader((*[headerLen]byte)(b[:headerLen]))
		if err != nil {
			return false
		}
		n := headerLen + int(h.ContentLength) + int(h.PaddingLength)
		if n > len(b) {
			return false
		}
		last, b = h, b[n:]
	}
	return len(b) == 0 && last.Type == Stdin && last.ContentLength == 0
}
