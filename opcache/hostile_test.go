package opcache_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/opcache"
)

// TestReadHostilePeers runs the opcache read against the hostile peers of
// fpmtest: it must end with the case's classified error, one that says what
// it was doing, bounded memory and nothing left behind. Every case's client
// settings make its outcome certain whatever the machine's speed.
func TestReadHostilePeers(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		for _, hc := range fpmtest.HostileCases("Content-Type: application/json\r\n\r\n{\"schema\":1}") {
			t.Run(network+"/"+hc.Name, func(t *testing.T) {
				err := fpmtest.RunHostile(t, network, hc, func(ctx context.Context, fc fastcgi.Client, addr fastcgi.Address) error {
					st, err := opcache.Client{FastCGI: fc, Script: "/x.php"}.Read(ctx, addr)
					if st != nil {
						t.Errorf("status %+v returned with error %v", st, err)
					}
					return err
				})
				if !strings.HasPrefix(err.Error(), "opcache status: GET /x.php on ") {
					t.Errorf("error %q does not say it was reading the opcache", err)
				}
				if fe, _ := fastcgi.AsError(err); hc.Class == fastcgi.ClassNotFound && !strings.Contains(fe.Hint, "php-fpm cannot read /x.php") {
					t.Errorf("hint %q does not say where the script must be", fe.Hint)
				}
			})
		}
	}
}
