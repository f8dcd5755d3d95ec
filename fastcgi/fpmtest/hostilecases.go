package fpmtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"go.uber.org/goleak"
)

// The settings of the client under test against the hostile peers. Each
// case's outcome must follow from them and from what the peer sends, never
// from how fast the machine runs the peer and the client.
const (
	// HostileTimeout is the timeout of every case that ends by the peer's
	// doing: a bad record, an answer, a hangup, a body over the cap. It
	// only has to never come first: reading those few KB takes a
	// millisecond, and a starved runner was seen to hold a call up for half
	// a second. A call returns as soon as the peer has done its part, so
	// the margin costs nothing.
	HostileTimeout = 10 * time.Second
	// HostileShortTimeout is the timeout of the cases that can only end in
	// a timeout: a peer that never answers, and one that dribbles an answer
	// so slowly that it needs many times the timeout to finish.
	HostileShortTimeout = 250 * time.Millisecond
	// HostileSlack is how long past its timeout a call may take to return.
	// It is there to catch a call that does not end at its deadline, not
	// to time the client: it is generous for a loaded runner.
	HostileSlack = 10 * time.Second
	// HostileMaxBody is the body cap of the client under test. A flood
	// passes it within its first record, so the cap, not the timeout, is
	// what ends the read, however slowly the client reads.
	HostileMaxBody = 4 << 10
	// hostileDribbleInterval is the dribbling peer's pace: a byte every
	// fifth of the timeout, so that a timeout per read would never fire and
	// only the deadline on the whole exchange can end the call.
	hostileDribbleInterval = HostileShortTimeout / 5
)

// hostileMaxAlloc bounds what one reader call may allocate, counting the
// peer's own buffers, which run in this process: about 130 KiB for a flood's
// record, 64 KiB for gofast's record buffer, the request, the pipes, and at
// most HostileMaxBody of body kept, doubled as the buffer grows. A call that
// kept what a flood sends would allocate 100 MB. It does not depend on
// timing: the body kept is bounded by the cap, not by how long it was read.
const hostileMaxAlloc = 2<<20 + 4*HostileMaxBody

// HostileCase is a misbehaving php-fpm and what every reader must make of it.
type HostileCase struct {
	Name   string
	Peer   Peer
	Client fastcgi.Client // the settings under which Class is the only outcome
	Class  fastcgi.Class
	Nginx  int    // what nginx would answer
	Msg    string // in the error
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
	notFound := append(fastcgi.AppendRecord(nil, fastcgi.Stderr, 1, []byte("Primary script unknown")),
		Response(1, "Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n")...)
	// A header that promises 1000 bytes, and the first 10 of them.
	cutShort := append(fastcgi.RecordHeader{Type: fastcgi.Stdout, ID: 1, ContentLength: 1000}.Append(nil), "Status: 20"...)
	end := func(st fastcgi.ProtocolStatus) []byte {
		return fastcgi.AppendEndRequest(nil, 1, fastcgi.EndRequestBody{ProtocolStatus: st})
	}
	// The dribble needs len-1 intervals to finish: at least ten times the
	// timeout, so that no scheduling delay of the peer or the client can
	// let the answer complete before the deadline. (The peer cannot catch
	// up after a delay: its ticker keeps one missed tick at most.)
	dribble := Response(1, answer)
	if need := time.Duration(len(dribble)-1) * hostileDribbleInterval; need < 10*HostileShortTimeout {
		panic(fmt.Sprintf("fpmtest: a dribbled answer of %d bytes takes %v, too close to the %v timeout", len(dribble), need, HostileShortTimeout))
	}
	// Only the timeout ends these: a short one, so that they are quick.
	short := fastcgi.Client{Timeout: HostileShortTimeout, MaxBody: HostileMaxBody}
	timedOut := fmt.Sprintf("timeout after %v", HostileShortTimeout)
	// The peer ends these: a timeout that can never come first.
	c := fastcgi.Client{Timeout: HostileTimeout, MaxBody: HostileMaxBody}
	return []HostileCase{
		{"silent", Silent, short, fastcgi.ClassTimeout, 504, timedOut},
		{"dribble", Dribble(dribble, hostileDribbleInterval), short, fastcgi.ClassTimeout, 504, timedOut},
		{"garbage", Answer(garbage), c, fastcgi.ClassBadResponse, 502, "bad FastCGI record"},
		{"http", Answer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong")), c, fastcgi.ClassBadResponse, 502, "FastCGI version 72, want 1"},
		{"version2", Answer(v2), c, fastcgi.ClassBadResponse, 502, "FastCGI version 2, want 1"},
		{"requestID2", Answer(Response(2, answer)), c, fastcgi.ClassBadResponse, 502, "request id 2, want 1"},
		// 100 MB against a cap of a few KB: the cap is passed in the first
		// record whatever the pace of either side.
		{"flood100MB", Flood(100 << 20), c, fastcgi.ClassBadResponse, 502, "larger than the limit"},
		// The peer reads the whole request before it closes, so the close
		// is a clean end of stream (a FIN, not a reset) on both networks.
		{"closeMidRecord", Hangup(cutShort), c, fastcgi.ClassReset, 502, "closed before the response ended"},
		{"closeUnanswered", Hangup(nil), c, fastcgi.ClassReset, 502, "closed before the response ended"},
		// Closed before the request is read: the client may see EOF, EPIPE
		// or ECONNRESET, depending on who ran first, all of them a reset.
		{"closeAtAccept", func(context.Context, net.Conn) {}, c, fastcgi.ClassReset, 502, ""},
		{"endOnly", Answer(end(fastcgi.RequestComplete)), c, fastcgi.ClassBadResponse, 502, "no CGI headers in 0 bytes"},
		{"noBlankLine", Answer(Response(1, "Content-Type: text/plain\r\nX-Powered-By: PHP/8.2")), c, fastcgi.ClassBadResponse, 502, "no CGI headers"},
		{"status500", Answer(Response(1, "Status: 500 Internal Server Error\r\nContent-Type: text/html\r\n\r\n<h1>boom</h1>")), c, fastcgi.ClassHTTPStatus, 500, "answered 500: <h1>boom</h1>"},
		{"status404", Answer(notFound), c, fastcgi.ClassNotFound, 404, "answered 404: File not found. (Primary script unknown)"},
		{"cantMpxConn", Answer(end(fastcgi.CantMultiplexConn)), c, fastcgi.ClassBadResponse, 502, "protocol status 1"},
		{"overloaded", Answer(append(fastcgi.AppendRecord(nil, fastcgi.Stdout, 1, []byte(answer)), end(fastcgi.Overloaded)...)), c, fastcgi.ClassBadResponse, 502, "protocol status 2"},
	}
}

// RunHostile serves one reader call with hc's peer, the reader using
// hc.Client, and checks the outcome: a classified error with a hint, a call
// that ended at its deadline and not before when the class is a timeout,
// the memory allocated, and that no goroutine or fd is left once the peer
// is gone. It returns the error for the reader's own checks. No check
// depends on the machine's speed: see HostileCases.
func RunHostile(t *testing.T, network string, hc HostileCase, read func(context.Context, fastcgi.Client, fastcgi.Address) error) error {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	fds := OpenFDs(t)
	srv := StartHostile(t, network, hc.Peer)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := read(context.Background(), hc.Client, fastcgi.Address{Network: srv.Network, Addr: srv.Addr})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	srv.Close()
	NoLeak(t, ignore, fds)

	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%v in %v, %.2f MiB allocated", err, elapsed.Round(time.Millisecond), float64(allocated)/(1<<20))
	// Deadlines never fire early: a timeout before it is a wrong class.
	if hc.Class == fastcgi.ClassTimeout && elapsed < hc.Client.Timeout {
		t.Errorf("timed out after %v, before the %v timeout", elapsed, hc.Client.Timeout)
	}
	if limit := hc.Client.Timeout + HostileSlack; elapsed > limit {
		t.Errorf("took %v, want at most %v: the call did not end at its deadline", elapsed, limit)
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); allocated > hostileMaxAlloc || grown > hostileMaxAlloc {
		t.Errorf("allocated %d KiB, heap grew by %d KiB: want at most %d KiB", allocated>>10, grown>>10, hostileMaxAlloc>>10)
	}
	checkHostileError(t, err, hc)
	return err
}

// NoLeak checks that no goroutine started since ignore and no file
// descriptor opened since fds is left. What a finished call leaves winding
// down (gofast's goroutines, a socket closed as its last read returns) may
// take a while to end on a loaded machine: it waits up to leakGrace for
// them, far longer than they need, and returns as soon as they are gone.
func NoLeak(t testing.TB, ignore goleak.Option, fds int) {
	t.Helper()
	deadline := time.Now().Add(leakGrace)
	// goleak.Find retries for about half a second on its own.
	for err := goleak.Find(ignore); err != nil; err = goleak.Find(ignore) {
		if time.Now().After(deadline) {
			t.Errorf("goroutines left after %v: %v", leakGrace, err)
			return
		}
	}
	for n := OpenFDs(t); n != fds; n = OpenFDs(t) {
		if time.Now().After(deadline) {
			t.Errorf("open fds: %d before, %d after %v", fds, n, leakGrace)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leakGrace is how long NoLeak waits for what is winding down.
const leakGrace = 10 * time.Second

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
