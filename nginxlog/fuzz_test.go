package nginxlog

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/nginx-error.log is the error log of a real nginx 1.22 in front
// of broken FastCGI upstreams, one request each: a missing socket, a socket
// file nobody listens on, a socket only root may open (nginx's workers run
// as nobody), a full listen backlog, a server that closes without an
// answer, one that never answers (fastcgi_read_timeout 1s), and over TCP a
// reset, a timeout, a close and a refused port. The notice and info lines
// around them are kept: ParseLine must pass them by. The last request
// is for a missing static file with the Referer
// `https://example.com/", upstream: "fastcgi://unix:/run/php/www.sock:`,
// which nginx logs unescaped: that line looks like a pool's upstream failure,
// and ParseLine must not take it for one (TestParseLineOnRealLog).

func FuzzParseLine(f *testing.F) {
	file, err := os.Open(filepath.Join("testdata", "nginx-error.log"))
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		f.Add(sc.Text())
	}
	if err := sc.Err(); err != nil {
		f.Fatal(err)
	}
	// The same failures as other setups write them, and lines that look
	// like them.
	for _, s := range []string{
		`2026/11/26 09:52:24 [error] 4018#4018: *3 connect() to unix:/run/php/www.sock failed (111: Connection refused) while connecting to upstream, client: 10.0.0.7, server: example.com, request: "GET / HTTP/2.0", upstream: "fastcgi://unix:/run/php/www.sock:", host: "example.com"`,
		`2026/11/26 09:52:24 [error] 4018#4018: *3 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.7, server: example.com, request: "GET / HTTP/1.1", upstream: "fastcgi://127.0.0.1:9000", host: "example.com"`,
		`2026/11/26 09:52:24 [error] 4018#4018: *3 connect() to [::1]:9000 failed (11: Resource temporarily unavailable) while connecting to upstream, client: ::1, server: _, request: "POST /index.php HTTP/1.1", upstream: "fastcgi://[::1]:9000", host: "localhost"`,
		`2026/11/26 09:52:26 [error] 4018#4018: *11 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /a.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/www.sock", host: "localhost", referrer: "https://example.com/"`,
		`upstream: "fastcgi://unix:/run/php/www.sock:" (111: Connection refused)`,
		`(104: Connection reset by peer) upstream: "fastcgi://`,
		`(104: Connection reset by peer) upstream: "fastcgi://"`,
		`(104: Connection reset by peer) upstream: "fastcgi://unix:"`,
		`(13: Permission denied) upstream: "http://127.0.0.1:8080"`,
		`2026/11/26 09:52:24 [error] 4018#4018: *1 open() "/srv/www/favicon.ico" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /favicon.ico HTTP/1.1", host: "localhost"`,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := ParseLine(line)
		if !ok {
			return
		}
		if e.Status != 502 && e.Status != 504 {
			t.Fatalf("status %d", e.Status)
		}
		if e.Cause == "" {
			t.Fatal("no cause")
		}
		if e.Upstream == "" || strings.Contains(e.Upstream, `"`) {
			t.Fatalf("upstream %q", e.Upstream)
		}
	})
}
