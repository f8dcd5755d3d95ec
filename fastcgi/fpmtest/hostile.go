package fpmtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// Hostile FastCGI peers: servers that misbehave on purpose, for tests of how
// a client bounds what a broken or malicious php-fpm can do to it. They
// frame records with package fastcgi's record layer, the one the client
// checks them with; what they get wrong on purpose (a header that lies about
// its length, a version byte overwritten) they get wrong by hand.

// Peer serves one accepted connection. ctx ends when the server closes; the
// server closes conn once Peer returns.
type Peer func(ctx context.Context, conn net.Conn)

// Hostile is a listening hostile peer.
type Hostile struct {
	Network string // "unix" or "tcp"
	Addr    string // the socket path or host:port

	ln     net.Listener
	dir    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu    sync.Mutex
	conns map[net.Conn]struct{} // nil once closed
}

// StartHostile listens on a fresh unix socket or on loopback TCP and serves
// every connection with peer. Close, or the test's cleanup, stops it.
func StartHostile(t testing.TB, network string, peer Peer) *Hostile {
	t.Helper()
	h := &Hostile{Network: network, conns: map[net.Conn]struct{}{}}
	var err error
	switch network {
	case "unix":
		// Not t.TempDir: subtest names can push the path past 108 bytes.
		if h.dir, err = os.MkdirTemp("", "fpmguard-hostile"); err != nil {
			t.Fatal(err)
		}
		h.Addr = filepath.Join(h.dir, "fpm.sock")
		h.ln, err = net.Listen("unix", h.Addr)
	case "tcp":
		h.ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			h.Addr = h.ln.Addr().String()
		}
	default:
		err = fmt.Errorf("unknown network %q", network)
	}
	if err != nil {
		if h.dir != "" {
			os.RemoveAll(h.dir)
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	t.Cleanup(h.Close)
	h.wg.Go(func() { h.serve(ctx, peer) })
	return h
}

func (h *Hostile) serve(ctx context.Context, peer Peer) {
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.conns == nil {
			h.mu.Unlock()
			conn.Close()
			return
		}
		h.conns[conn] = struct{}{}
		h.mu.Unlock()
		h.wg.Go(func() {
			defer func() {
				h.mu.Lock()
				if h.conns != nil {
					delete(h.conns, conn)
				}
				h.mu.Unlock()
				conn.Close()
			}()
			peer(ctx, conn)
		})
	}
}

// Close stops listening, closes every connection and returns once every
// goroutine of the server has ended. It may be called more than once.
func (h *Hostile) Close() {
	h.once.Do(func() {
		h.cancel()
		h.ln.Close()
		h.mu.Lock()
		for c := range h.conns {
			c.Close()
		}
		h.conns = nil
		h.mu.Unlock()
		h.wg.Wait()
		if h.dir != "" {
			os.RemoveAll(h.dir)
		}
	})
}

// Response encodes a whole answer the way php-fpm sends it: the CGI output
// (headers, blank line, body) as STDOUT, the empty STDOUT that ends the
// stream, and END_REQUEST. stdout must fit in one record.
func Response(id uint16, stdout string) []byte {
	b := fastcgi.AppendRecord(nil, fastcgi.Stdout, id, []byte(stdout))
	b = fastcgi.AppendRecord(b, fastcgi.Stdout, id, nil)
	return fastcgi.AppendEndRequest(b, id, fastcgi.EndRequestBody{ProtocolStatus: fastcgi.RequestComplete})
}

// ReadRequest reads a client's request up to its empty STDIN record and
// returns the request id of its BEGIN_REQUEST.
func ReadRequest(r io.Reader) (uint16, error) {
	var id uint16
	for first := true; ; first = false {
		h, err := fastcgi.ReadRecordHeader(r)
		if err != nil {
			return 0, err
		}
		if _, err := io.CopyN(io.Discard, r, int64(h.ContentLength)+int64(h.PaddingLength)); err != nil {
			return 0, err
		}
		if first {
			if h.Type != fastcgi.BeginRequest {
				return 0, fmt.Errorf("first record of type %d", h.Type)
			}
			id = h.ID
		}
		if h.Type == fastcgi.Stdin && h.ContentLength == 0 {
			return id, nil
		}
	}
}

// hold keeps the connection open until the client or the server closes it,
// reading whatever the client still sends.
func hold(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) }

// Silent reads the request and never answers.
func Silent(_ context.Context, conn net.Conn) {
	if _, err := ReadRequest(conn); err == nil {
		hold(conn)
	}
}

// Answer reads the request, writes raw and keeps the connection open.
func Answer(raw []byte) Peer {
	return func(_ context.Context, conn net.Conn) {
		if _, err := ReadRequest(conn); err != nil {
			return
		}
		_, _ = conn.Write(raw)
		hold(conn)
	}
}

// Hangup reads the request, writes raw and closes the connection.
func Hangup(raw []byte) Peer {
	return func(_ context.Context, conn net.Conn) {
		if _, err := ReadRequest(conn); err != nil {
			return
		}
		_, _ = conn.Write(raw)
	}
}

// Dribble reads the request and writes raw one byte per interval. It does
// not catch up after a delay: by any time t since it read the request it has
// written at most 2 + t/interval bytes.
func Dribble(raw []byte, interval time.Duration) Peer {
	return func(ctx context.Context, conn net.Conn) {
		if _, err := ReadRequest(conn); err != nil {
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := range raw {
			if _, err := conn.Write(raw[i : i+1]); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		hold(conn)
	}
}

// Flood reads the request and answers with total bytes of body in full
// 65535-byte STDOUT records, as fast as the connection takes them, then ends
// the request. It stops at the first failed write.
func Flood(total int) Peer {
	return func(_ context.Context, conn net.Conn) {
		if _, err := ReadRequest(conn); err != nil {
			return
		}
		if _, err := conn.Write(fastcgi.AppendRecord(nil, fastcgi.Stdout, 1, []byte("Content-Type: text/plain\r\n\r\n"))); err != nil {
			return
		}
		chunk := make([]byte, 65535)
		for i := range chunk {
			chunk[i] = 'x'
		}
		// Encoded once: the peer runs in the test's process, and what it
		// allocates counts against the client's memory bound.
		rec := fastcgi.AppendRecord(nil, fastcgi.Stdout, 1, chunk)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := conn.Write(rec); err != nil {
				return // the client gave up: EPIPE or ECONNRESET
			}
		}
		_, _ = conn.Write(fastcgi.AppendEndRequest(nil, 1, fastcgi.EndRequestBody{ProtocolStatus: fastcgi.RequestComplete}))
		hold(conn)
	}
}
