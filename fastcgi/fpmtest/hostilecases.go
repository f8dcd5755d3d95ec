package fpmtest

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"go.uber.org/goleak"
)

// HostileTimeout is the readers' timeout against hostile peers; every call
// must end within it plus HostileSlack.
const (
	HostileTimeout = 500 * time.Millisecond
	HostileSlack   = 500 * time.Millisecond
)

// hostileMaxAlloc bounds what one reader call may allocate. The body cap is
// 8 MiB and the body buffer doubles as it grows, so a capped read allocates
// about 18 MiB, never anything near the 100 MB a peer sends. A race build
// allocates twice that: it does not elide the make in bytes.Buffer's
// append([]byte(nil), make([]byte, n)...).
var hostileMaxAlloc = func() uint64 {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return 64 << 20
			}
		}
	}
	return 32 << 20
}()

// HostileCase is a misbehaving php-fpm and what every reader must make of it.
type HostileCase struct {
	Name  string
	Peer  Peer
	Class fastcgi.Class
	Nginx int    // what nginx would answer
	Msg   string // in the error
}

// HostileCases are the misbehaving peers; answer is the CGI output a good
// peer would send the reader under test.
func HostileCases(answer string) []HostileCase {
	garbage := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	v2 := Response(1, answer)
	v2[0] = 2
	notFound := append(Record(TypeStderr, 1, []byte("Primary script unknown")),
		Response(1, "Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n")...)
	return []HostileCase{
		{"silent", Silent, fastcgi.ClassTimeout, 504, "timeout after 500ms"},
		{"dribble", Dribble(Response(1, answer), time.Second), fastcgi.ClassTimeout, 504, "timeout after 500ms"},
		{"garbage", Answer(garbage), fastcgi.ClassBadResponse, 502, "bad FastCGI record"},
		{"http", Answer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong")), fastcgi.ClassBadResponse, 502, "FastCGI version 72, want 1"},
		{"version2", Answer(v2), fastcgi.ClassBadResponse, 502, "FastCGI version 2, want 1"},
		{"requestID2", Answer(Response(2, answer)), fastcgi.ClassBadResponse, 502, "request id 2, want 1"},
		{"flood100MB", Flood(100 << 20), fastcgi.ClassBadResponse, 502, "larger than the limit"},
		{"closeMidRecord", Hangup(append(Header(TypeStdout, 1, 1000, 0), "Status: 20"...)), fastcgi.ClassReset, 502, "closed before the response ended"},
		{"closeUnanswered", Hangup(nil), fastcgi.ClassReset, 502, "closed before the response ended"},
		// Closed before the request is read: the client may see EOF, EPIPE
		// or ECONNRESET, all of them a reset.
		{"closeAtAccept", func(context.Context, net.Conn) {}, fastcgi.ClassReset, 502, ""},
		{"endOnly", Answer(EndRequest(1, 0, RequestComplete)), fastcgi.ClassBadResponse, 502, "no CGI headers in 0 bytes"},
		{"noBlankLine", Answer(Response(1, "Content-Type: text/plain\r\nX-Powered-By: PHP/8.2")), fastcgi.ClassBadResponse, 502, "no CGI headers"},
		{"status500", Answer(Response(1, "Status: 500 Internal Server Error\r\nContent-Type: text/html\r\n\r\n<h1>boom</h1>")), fastcgi.ClassHTTPStatus, 500, "answered 500: <h1>boom</h1>"},
		{"status404", Answer(notFound), fastcgi.ClassNotFound, 404, "answered 404: File not found. (Primary script unknown)"},
		{"cantMpxConn", Answer(EndRequest(1, 0, CantMpxConn)), fastcgi.ClassBadResponse, 502, "protocol status 1"},
		{"overloaded", Answer(append(Record(TypeStdout, 1, []byte(answer)), EndRequest(1, 0, Overloaded)...)), fastcgi.ClassBadResponse, 502, "protocol status 2"},
	}
}

// RunHostile serves one reader call with hc's peer and checks the outcome:
// a classified error with a hint, the time taken, the memory allocated, and
// that no goroutine or fd is left once the peer is gone. It returns the
// error for the reader's own checks. A deadline missed while the process's
// threads waited for a CPU for half the timeout tells of a starved test
// machine, not of the client: such a call is tried again, twice at most.
func RunHostile(t *testing.T, network string, hc HostileCase, read func(context.Context, fastcgi.Address) error) error {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ignore := goleak.IgnoreCurrent()
		fds := OpenFDs(t)
		srv := StartHostile(t, network, hc.Peer)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		waited := runqueueWait()
		start := time.Now()
		err := read(context.Background(), fastcgi.Address{Network: srv.Network, Addr: srv.Addr})
		elapsed := time.Since(start)
		waited = runqueueWait() - waited
		runtime.ReadMemStats(&after)
		srv.Close()
		noLeak(t, ignore, fds)

		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%v in %v (%v waiting for a CPU), %.1f MiB allocated", err, elapsed.Round(time.Millisecond), waited.Round(time.Millisecond), float64(allocated)/(1<<20))
		late := elapsed > HostileTimeout+HostileSlack || fastcgi.ClassOf(err) == fastcgi.ClassTimeout && hc.Class != fastcgi.ClassTimeout
		if late && waited >= HostileTimeout/2 && attempt < 3 {
			t.Logf("attempt %d starved of CPU: trying again", attempt)
			continue
		}
		if elapsed > HostileTimeout+HostileSlack {
			t.Errorf("took %v, want at most %v (the process's threads waited %v for a CPU meanwhile)",
				elapsed, HostileTimeout+HostileSlack, waited.Round(time.Millisecond))
		}
		if hc.Class == fastcgi.ClassTimeout && elapsed < HostileTimeout {
			t.Errorf("timed out after %v, before the %v timeout", elapsed, HostileTimeout)
		}
		if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); allocated > hostileMaxAlloc || grown > int64(hostileMaxAlloc) {
			t.Errorf("allocated %d MiB, heap grew by %d MiB: want at most %d MiB", allocated>>20, grown>>20, hostileMaxAlloc>>20)
		}
		checkHostileError(t, err, hc)
		return err
	}
}

// noLeak checks, once the peer is closed, that no goroutine started since
// ignore and no file descriptor opened since fds is left.
func noLeak(t *testing.T, ignore goleak.Option, fds int) {
	t.Helper()
	goleak.VerifyNone(t, ignore)
	// A socket's fd is released when its last pending read returns, which
	// goleak has just waited for; allow the close a moment all the same.
	deadline := time.Now().Add(time.Second)
	for n := OpenFDs(t); n != fds; n = OpenFDs(t) {
		if time.Now().After(deadline) {
			t.Errorf("open fds: %d before, %d after", fds, n)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkHostileError(t *testing.T, err error, hc HostileCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %v error, got none", hc.Class)
	}
	fe, ok := fastcgi.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *fastcgi.Error", err, err)
	}
	if fe.Class != hc.Class {
		t.Errorf("class = %v, want %v (error: %v)", fe.Class, hc.Class, err)
	}
	if got := fe.NginxStatus(); got != hc.Nginx {
		t.Errorf("nginx status = %d, want %d", got, hc.Nginx)
	}
	if fe.Hint == "" {
		t.Errorf("no hint for %v", err)
	}
	if !fe.Class.Transport() && fe.Status != hc.Nginx {
		t.Errorf("status = %d, want %d", fe.Status, hc.Nginx)
	}
	if !strings.Contains(err.Error(), hc.Msg) {
		t.Errorf("error %q does not mention %q", err, hc.Msg)
	}
}

// OpenFDs counts this process's open file descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// runqueueWait is how long the process's threads have waited for a CPU, to
// tell a slow client from a starved test machine when a deadline is missed.
func runqueueWait() time.Duration {
	var total time.Duration
	files, _ := filepath.Glob("/proc/self/task/*/schedstat")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has gone
		}
		if fs := strings.Fields(string(b)); len(fs) >= 2 {
			ns, _ := strconv.ParseInt(fs[1], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}
