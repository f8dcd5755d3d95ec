package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// hostilePath is what a client can make php-fpm put in a worker's request
// URI: nginx passes its decoded $uri in SCRIPT_NAME, and php-fpm builds the
// URI from it. It retitles the terminal (OSC 0 … BEL), then turns it red.
const hostilePath = "/sleep.php/\x1b]0;x\a\x1b[31mred"

// hostileShown is how a terminal shows it after fpmguard: every control
// character escaped.
const hostileShown = `/sleep.php/\x1b]0;x\x07\x1b[31mred`

// rawControl returns the first control character in s that is not a line
// end (C0, DEL, C1), and where, or -1.
func rawControl(s string) (rune, int) {
	for i, r := range s {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) {
			return r, i
		}
	}
	return 0, -1
}

func assertTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if r, i := rawControl(out); i >= 0 {
		t.Errorf("%s: raw control character %U at %d: %q", what, r, i, out[max(0, i-40):min(len(out), i+20)])
	}
}

// TestHostileURIReachesNoTerminal sends a request whose URI carries an
// escape sequence through a real php-fpm, and finds it escaped in every
// output a person reads on a terminal (status, check, top --once, the log
// in both formats, /events, /status and /snapshot as text), while the JSON
// still carries the exact string: on every PHP version, 7.4's status JSON
// with the URI unescaped included.
func TestHostileURIReachesNoTerminal(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{
			Version: v,
			// On 7.4, without pm.status_listen, the idle worker answers
			// the status page.
			Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}},
			Files: map[string]string{"sleep.php": fpmtest.SleepPHP},
		})
		g := newGuard(t, fpm)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() {
			_, _ = fastcgi.Client{Timeout: 2 * time.Minute}.Do(ctx, fastcgi.Address{Network: "unix", Addr: fpm.Pools["www"].Listen},
				fastcgi.Request{Path: hostilePath, Query: "ms=120000", Script: fpm.Script("sleep.php")})
		}()
		pid := fpm.WaitWorker(t, "www", func(p fastcgi.Process) bool { return strings.HasPrefix(p.RequestURI, hostilePath) })
		flags := []string{"--fpm-config", g.path(fpm.Conf), "--hung-after", "1s", "--opcache-dir", g.opcacheDir(t)}
		// The request has run past --hung-after: the reasons name its URI too.
		fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
			_, out, _ := g.run(t, append([]string{"status", "--no-opcache"}, flags...)...)
			return out, strings.Contains(out, "has run GET")
		})

		code, out, stderr := g.run(t, append([]string{"status"}, flags...)...)
		if code != 0 || !strings.Contains(out, hostileShown) || !strings.Contains(out, fmt.Sprintf("worker %d has run GET %s for", pid, hostileShown)) {
			t.Errorf("status (exit %d) lacks the escaped URI:\n%s%s", code, out, stderr)
		}
		assertTerminalSafe(t, "status", out+stderr)

		_, out, stderr = g.run(t, append([]string{"check"}, flags...)...)
		if !strings.Contains(out, hostileShown) {
			t.Errorf("check lacks the escaped URI: %s", out)
		}
		assertTerminalSafe(t, "check", out+stderr)

		_, out, stderr = g.run(t, append([]string{"top", "--once", "--width", "200", "--interval", "200ms"}, flags...)...)
		if !strings.Contains(out, hostileShown) || !strings.Contains(out, fmt.Sprint(pid)) {
			t.Errorf("top --once lacks the escaped URI:\n%s%s", out, stderr)
		}
		assertTerminalSafe(t, "top --once", out+stderr)

		_, out, _ = g.run(t, append([]string{"status", "-o", "json"}, flags...)...)
		assertTerminalSafe(t, "status -o json", out)
		var rep supervisor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		exact := false
		for _, p := range rep.Pools[0].Processes {
			exact = exact || p.RequestURI == hostilePath
		}
		if !exact {
			t.Errorf("status -o json does not carry the exact URI %q:\n%s", hostilePath, out)
		}

		for _, format := range []string{"logfmt", "json"} {
			addr := freePort(t)
			cmd, log := g.start(t, append([]string{"serve", "--web.listen-address", addr, "--interval", "200ms", "--log.format", format}, flags...)...)
			base := "http://" + addr
			events := fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
				_, body := httpGet(base + "/events")
				return body, strings.Contains(body, `"kind": "hung"`)
			})
			assertTerminalSafe(t, "/events", events)
			var ev struct {
				Events []struct{ Kind, Message string }
			}
			if err := json.Unmarshal([]byte(events), &ev); err != nil {
				t.Fatal(err)
			}
			exact = false
			for _, e := range ev.Events {
				exact = exact || (e.Kind == "hung" && strings.Contains(e.Message, hostilePath))
			}
			if !exact {
				t.Errorf("/events does not carry the exact URI:\n%s", events)
			}
			for _, path := range []string{"/status", "/snapshot"} {
				_, body := httpGet(base + path)
				if !strings.Contains(body, `\u001b]0;x\u0007`) {
					t.Errorf("%s lacks the URI, JSON-escaped:\n%s", path, body)
				}
				assertTerminalSafe(t, path, body)
			}
			// The event was logged as it was recorded; the log is read once
			// fpmguard has ended.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			line := log.String()
			// slog quotes a logfmt value as Go does (BEL is \a there).
			want := map[string]string{"logfmt": `/sleep.php/\x1b]0;x\a\x1b[31mred`, "json": `\u001b]0;x\u0007\u001b[31mred`}[format]
			if !strings.Contains(line, want) {
				t.Errorf("the %s log lacks %q:\n%s", format, want, line)
			}
			assertTerminalSafe(t, "the "+format+" log", line)
		}
	})
}

// TestNoColourOnDevNull: /dev/null is a character device, not a terminal.
func TestNoColourOnDevNull(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if useColor("auto", f) {
		t.Error("colour on /dev/null")
	}
	if !useColor("always", f) {
		t.Error("--color always ignored")
	}
}
