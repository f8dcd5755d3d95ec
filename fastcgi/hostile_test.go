package fastcgi_test

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"go.uber.org/goleak"
)

// hostileTimeout is the readers' timeout against hostile peers; every call
// must end within it plus hostileSlack.
const (
	hostileTimeout = 500 * time.Millisecond
	hostileSlack   = 500 * time.Millisecond
	// The body cap is 8 MiB; a reader may allocate a few times that while
	// its buffer grows, never anything near the 100 MB a peer sends.
	hostileMaxAlloc = 32 << 20
)

// hostileCase is a misbehaving php-fpm and what every reader must make of it.
type hostileCase struct {
	name  string
	peer  fpmtest.Peer
	class fastcgi.Class
	nginx int    // what nginx would answer
	msg   string // in the error
}

func hostileCases() []hostileCase {
	const pong = "Content-Type: text/plain;charset=UTF-8\r\n\r\npong"
	garbage := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	v2 := fpmtest.Response(1, pong)
	v2[0] = 2
	notFound := append(fpmtest.Record(fpmtest.TypeStderr, 1, []byte("Primary script unknown")),
		fpmtest.Response(1, "Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n")...)
	return []hostileCase{
		{"silent", fpmtest.Silent, fastcgi.ClassTimeout, 504, "timeout after 500ms"},
		{"dribble", fpmtest.Dribble(fpmtest.Response(1, pong), time.Second), fastcgi.ClassTimeout, 504, "timeout after 500ms"},
		{"garbage", fpmtest.Answer(garbage), fastcgi.ClassBadResponse, 502, "bad FastCGI record"},
		{"http", fpmtest.Answer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong")), fastcgi.ClassBadResponse, 502, "FastCGI version 72, want 1"},
		{"version2", fpmtest.Answer(v2), fastcgi.ClassBadResponse, 502, "FastCGI version 2, want 1"},
		{"requestID2", fpmtest.Answer(fpmtest.Response(2, pong)), fastcgi.ClassBadResponse, 502, "request id 2, want 1"},
		{"flood100MB", fpmtest.Flood(100 << 20), fastcgi.ClassBadResponse, 502, "larger than the limit"},
		{"closeMidRecord", fpmtest.Hangup(append(fpmtest.Header(fpmtest.TypeStdout, 1, 1000, 0), "Status: 20"...)), fastcgi.ClassReset, 502, "closed before the response ended"},
		{"closeUnanswered", fpmtest.Hangup(nil), fastcgi.ClassReset, 502, "closed before the response ended"},
		{"endOnly", fpmtest.Answer(fpmtest.EndRequest(1, 0, fpmtest.RequestComplete)), fastcgi.ClassBadResponse, 502, "no CGI headers in 0 bytes"},
		{"noBlankLine", fpmtest.Answer(fpmtest.Response(1, "Content-Type: text/plain\r\nX-Powered-By: PHP/8.2")), fastcgi.ClassBadResponse, 502, "no CGI headers"},
		{"status500", fpmtest.Answer(fpmtest.Response(1, "Status: 500 Internal Server Error\r\nContent-Type: text/html\r\n\r\n<h1>boom</h1>")), fastcgi.ClassHTTPStatus, 500, "answered 500: <h1>boom</h1>"},
		{"status404", fpmtest.Answer(notFound), fastcgi.ClassNotFound, 404, "answered 404: File not found. (Primary script unknown)"},
		{"cantMpxConn", fpmtest.Answer(fpmtest.EndRequest(1, 0, fpmtest.CantMpxConn)), fastcgi.ClassBadResponse, 502, "protocol status 1"},
		{"overloaded", fpmtest.Answer(append(fpmtest.Record(fpmtest.TypeStdout, 1, []byte(pong)), fpmtest.EndRequest(1, 0, fpmtest.Overloaded)...)), fastcgi.ClassBadResponse, 502, "protocol status 2"},
	}
}

// TestHostilePeers runs the heartbeat and the status read against every
// hostile peer, on a unix socket and on loopback TCP: each must end in time
// with a classified error, bounded memory, and no goroutine or fd left.
func TestHostilePeers(t *testing.T) {
	c := fastcgi.Client{Timeout: hostileTimeout}
	readers := []struct {
		name string
		read func(context.Context, fastcgi.Address) error
	}{
		{"ping", func(ctx context.Context, addr fastcgi.Address) error {
			_, err := c.Ping(ctx, addr, "/ping", "pong")
			return err
		}},
		{"status", func(ctx context.Context, addr fastcgi.Address) error {
			st, err := c.Status(ctx, addr, "/status")
			if st != nil {
				t.Errorf("status %+v returned with error %v", st, err)
			}
			return err
		}},
	}
	for _, network := range []string{"unix", "tcp"} {
		for _, hc := range hostileCases() {
			for _, r := range readers {
				t.Run(network+"/"+hc.name+"/"+r.name, func(t *testing.T) {
					runHostile(t, network, hc, r.read)
				})
			}
		}
	}
}

// TestHostileAnswerKeepsResponse: an error status from php-fpm comes back
// with the response, its status, body and stderr.
func TestHostileAnswerKeepsResponse(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			raw := append(fpmtest.Record(fpmtest.TypeStderr, 1, []byte("PHP Fatal error: boom")),
				fpmtest.Response(1, "Status: 500 Internal Server Error\r\nX-A: b\r\n\r\noops")...)
			srv := fpmtest.StartHostile(t, network, fpmtest.Answer(raw))
			defer srv.Close()
			resp, err := fastcgi.Client{Timeout: hostileTimeout}.Do(context.Background(),
				fastcgi.Address{Network: srv.Network, Addr: srv.Addr}, fastcgi.Request{Path: "/x.php"})
			fe, ok := fastcgi.AsError(err)
			if !ok || fe.Class != fastcgi.ClassHTTPStatus || fe.Status != 500 || fe.NginxStatus() != 500 {
				t.Fatalf("err = %v, want a 500 ClassHTTPStatus", err)
			}
			if resp == nil || resp.Status != 500 || string(resp.Body) != "oops" || resp.Header.Get("X-A") != "b" || string(resp.Stderr) != "PHP Fatal error: boom" {
				t.Errorf("response %+v", resp)
			}
		})
	}
}

// runHostile serves one reader call with hc's peer and checks the outcome:
// the error, the time taken, the memory allocated, and that nothing is left
// once the peer is gone.
func runHostile(t *testing.T, network string, hc hostileCase, read func(context.Context, fastcgi.Address) error) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	fds := hostileFDs(t)

	srv := fpmtest.StartHostile(t, network, hc.peer)
	addr := fastcgi.Address{Network: srv.Network, Addr: srv.Addr}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := read(context.Background(), addr)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	srv.Close()

	if elapsed > hostileTimeout+hostileSlack {
		t.Errorf("took %v, want at most %v", elapsed, hostileTimeout+hostileSlack)
	}
	if hc.class == fastcgi.ClassTimeout && elapsed < hostileTimeout {
		t.Errorf("timed out after %v, before the %v timeout", elapsed, hostileTimeout)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if allocated > hostileMaxAlloc || grown > hostileMaxAlloc {
		t.Errorf("allocated %d MiB, heap grew by %d MiB: want at most %d MiB", allocated>>20, grown>>20, hostileMaxAlloc>>20)
	}
	checkHostileError(t, err, hc)
	t.Logf("%v in %v, %.1f MiB allocated", err, elapsed.Round(time.Millisecond), float64(allocated)/(1<<20))

	goleak.VerifyNone(t, ignore)
	// A socket's fd is released when its last pending read returns, which
	// goleak has just waited for; allow the close a moment all the same.
	deadline := time.Now().Add(time.Second)
	for n := hostileFDs(t); n != fds; n = hostileFDs(t) {
		if time.Now().After(deadline) {
			t.Errorf("open fds: %d before, %d after", fds, n)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkHostileError(t *testing.T, err error, hc hostileCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %v error, got none", hc.class)
	}
	fe, ok := fastcgi.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *fastcgi.Error", err, err)
	}
	if fe.Class != hc.class {
		t.Errorf("class = %v, want %v (error: %v)", fe.Class, hc.class, err)
	}
	if got := fe.NginxStatus(); got != hc.nginx {
		t.Errorf("nginx status = %d, want %d", got, hc.nginx)
	}
	if fe.Hint == "" {
		t.Errorf("no hint for %v", err)
	}
	if !fe.Class.Transport() && fe.Status != hc.nginx {
		t.Errorf("status = %d, want %d", fe.Status, hc.nginx)
	}
	if !strings.Contains(err.Error(), hc.msg) {
		t.Errorf("error %q does not mention %q", err, hc.msg)
	}
}

func hostileFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
