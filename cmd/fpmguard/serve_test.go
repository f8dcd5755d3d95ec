package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"golang.org/x/sys/unix"
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

// TestServeWithAStalledLog: whatever reads fpmguard's log stops reading
// without closing (a stalled journald, a stopped pager). The pipe fills,
// and fpmguard goes on probing every pool, those whose probes log too.
// The pipe holds 4 KiB; 40 pools that fail log far more than that at
// their first failures, so a writer that waited would stop their probes.
func TestServeWithAStalledLog(t *testing.T) {
	fpm := fpmtest.Start(t, fpmtest.Options{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	args := []string{"serve", "--pool", "unix://" + fpm.Pools["www"].Listen + ",name=www", "--web.listen-address", addr, "--interval", "200ms", "--opcache-dir", opcacheDir(t)}
	missing := t.TempDir()
	for i := range 40 {
		args = append(args, "--pool", fmt.Sprintf("unix://%s/p%d.sock,name=missing%d", missing, i, i))
	}
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://" + addr
	probes := func() map[string]time.Time {
		_, body := httpGet(base + "/snapshot")
		var s struct {
			Pools []struct {
				Report    struct{ Name string }
				LastProbe time.Time `json:"last_probe"`
			}
		}
		_ = json.Unmarshal([]byte(body), &s)
		out := map[string]time.Time{}
		for _, p := range s.Pools {
			out[p.Report.Name] = p.LastProbe
		}
		return out
	}
	// The pipe full: what fpmguard logged waits in it, unread.
	fpmtest.Poll(t, time.Minute, func() (int, bool) {
		n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ) // FIONREAD
		return n, err == nil && n > 4096-512
	})
	first := fpmtest.Poll(t, time.Minute, func() (map[string]time.Time, bool) { p := probes(); return p, len(p) == 41 })
	fpmtest.Poll(t, time.Minute, func() ([]string, bool) {
		var behind []string
		for name, at := range probes() {
			if !at.After(first[name].Add(time.Second)) {
				behind = append(behind, name)
			}
		}
		return behind, len(behind) == 0
	})
	if _, body := httpGet(base + "/metrics"); !strings.Contains(body, "fpmguard_log_lines_dropped_total") {
		t.Errorf("no fpmguard_log_lines_dropped_total in /metrics")
	}
}

// TestKillNeedsAuthentication reproduces the last part of finding 6 of
// issue 18: `--web.enable-kill` let any process on loopback kill workers,
// in a pod any container, the PHP application's included. Without client
// authentication in the web config, serve and run now refuse to start,
// unless --web.kill-from-loopback says that is meant; and the web flags
// that make no sense are refused too. (Before, serve started and served
// until the context ended.)
func TestKillNeedsAuthentication(t *testing.T) {
	sock := "unix://" + t.TempDir() + "/none.sock"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--web.enable-kill"}, "--web.enable-kill without client authentication would let any process on this machine (in a pod: any container, the PHP application's included) kill workers"},
		{[]string{"run", "--web.enable-kill", "--", "php-fpm8.2", "-F", "-y", "/nonexistent.conf"}, "add --web.kill-from-loopback to accept that"},
		{[]string{"serve", "--web.kill-from-loopback"}, "--web.kill-from-loopback says who may kill over HTTP: it needs --web.enable-kill"},
		{[]string{"serve", "--web.allowed-host", "fpm.example:9253"}, `--web.allowed-host "fpm.example:9253": give a host name without port`},
		{[]string{"serve", "--web.allowed-host", "*"}, `--web.allowed-host "*"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{tc.args[0], "--pool", sock, "--web.listen-address", freePort(t)}, tc.args[1:]...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := run(ctx, args, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("fpmguard %q: exit %d, stderr %q; want 2 and one line with %q", args, code, errb.String(), tc.want)
			}
		})
	}
}
