package main

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestServeReadsOpcacheAtOnce: the opcache is read right after the first
// probe of every pool, not one --opcache-interval later. An interval of an
// hour makes that certain: the series can only come from the first read.
func TestServeReadsOpcacheAtOnce(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{Name: "a", StatusListen: true}, {Name: "b"}}})
	addr := freePort(t)
	start := time.Now()
	startBinary(t, "serve", "--fpm-config", fpm.Conf, "--web.listen-address", addr, "--interval", "1s",
		"--opcache-interval", "1h", "--opcache-dir", opcacheDir(t))
	body := fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		_, body := httpGet("http://" + addr + "/metrics")
		return body, strings.Contains(body, "phpfpm_opcache_up{")
	})
	t.Logf("opcache series %v after start", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(body, "phpfpm_opcache_enabled{") {
		t.Errorf("no opcache figures:\n%s", body)
	}
}
