package fastcgi_test

import (
	"context"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestHostilePeers runs the heartbeat and the status read against every
// hostile peer, on a unix socket and on loopback TCP: each must end with the
// case's classified error, bounded memory, and no goroutine or fd left.
// Every case's client settings make its outcome certain whatever the
// machine's speed: see fpmtest.HostileCases.
func TestHostilePeers(t *testing.T) {
	type read = func(context.Context, fastcgi.Client, fastcgi.Address) error
	readers := []struct {
		name string
		read func(*testing.T) read
	}{
		{"ping", func(*testing.T) read {
			return func(ctx context.Context, c fastcgi.Client, addr fastcgi.Address) error {
				_, err := c.Ping(ctx, addr, "/ping", "pong")
				return err
			}
		}},
		{"status", func(t *testing.T) read {
			return func(ctx context.Context, c fastcgi.Client, addr fastcgi.Address) error {
				st, err := c.Status(ctx, addr, "/status")
				if st != nil {
					t.Errorf("status %+v returned with error %v", st, err)
				}
				return err
			}
		}},
	}
	for _, network := range []string{"unix", "tcp"} {
		for _, hc := range fpmtest.HostileCases("Content-Type: text/plain;charset=UTF-8\r\n\r\npong") {
			for _, r := range readers {
				t.Run(network+"/"+hc.Name+"/"+r.name, func(t *testing.T) {
					fpmtest.RunHostile(t, network, hc, r.read(t))
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
			raw := append(fastcgi.AppendRecord(nil, fastcgi.Stderr, 1, []byte("PHP Fatal error: boom")),
				fpmtest.Response(1, "Status: 500 Internal Server Error\r\nX-A: b\r\n\r\noops")...)
			srv := fpmtest.StartHostile(t, network, fpmtest.Answer(raw))
			defer srv.Close()
			resp, err := fastcgi.Client{Timeout: fpmtest.HostileTimeout}.Do(context.Background(),
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
