package supervisor

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestReadSocketQueue: two connections nobody accepted show as a queue of
// two on a unix and on a TCP listener, with the backlog as its maximum.
func TestReadSocketQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "www.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	for _, a := range []fastcgi.Address{{Network: "unix", Addr: path}, {Network: "tcp", Addr: tl.Addr().String()}} {
		for range 2 {
			c, err := net.Dial(a.Network, a.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		// A dump made by another test moments ago may predate the
		// listener: poll past queueMaxAge.
		q := fpmtest.Poll(t, 30*time.Second, func() (*SocketQueue, bool) {
			q, err := ReadSocketQueue(a)
			return q, err == nil && q.Length == 2
		})
		if q.Max <= 0 {
			t.Errorf("%s: backlog %d", a, q.Max)
		}
	}
	if _, err := ReadSocketQueue(fastcgi.Address{Network: "unix", Addr: path + ".none"}); err == nil {
		t.Error("a socket nobody listens on has a queue")
	}
}
