package fastcgi

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseDeadline is far above what any input should take, so a slow machine
// does not fail the test while a quadratic loop does: the largest body the
// client accepts parses in about 2 s under the race detector on an idle
// 2-core machine, several times that on a loaded one, and took hours when
// it was quadratic.
const parseDeadline = 60 * time.Second

// parseWithin runs ParseStatus and fails t when it does not return in
// time: the watcher parses on every tick and must never stall on a body.
func parseWithin(t *testing.T, b []byte) (*Status, error) {
	t.Helper()
	type result struct {
		st  *Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := ParseStatus(b)
		done <- result{st, err}
	}()
	timer := time.NewTimer(parseDeadline)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.st, r.err
	case <-timer.C:
		t.Fatalf("ParseStatus did not return within %s on %d bytes", parseDeadline, len(b))
		return nil, nil
	}
}

func FuzzParseStatus(f *testing.F) {
	// The real captures: every body in testdata except the expected
	// outputs and the README.
	files, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, ".golden") || strings.HasSuffix(name, "README.md") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Edge cases next to what php-fpm writes.
	for _, s := range []string{
		"",
		"{",
		"{}",
		`{"pool":"www"}`,
		`{"pool":"www","processes":[]}`,
		`{"pool":"www","processes":[{}]}`,
		`{"pool":"www","processes":[{"pid":0}]}`,
		`{"pool":"www","processes":[{"pid":-1}]}`,
		`{"pool":"www","processes":[{"pid":1,"last request cpu":NaN}]}`,
		`{"pool":"www","processes":[{"pid":1,"request uri":"/a\"b\\c","content length":0}]}`,
		`{"pool":"www","processes":[{"pid":1,"request uri":"\u00e9\ud800","content length":0}]}`,
		"pool: www\n",
		"pool: www\n*****\n",
		"pool: www\n*****\npid: 1\nlast request cpu: NaN\n",
		"pool: www\n*****\npid: 1\nlast request cpu: +Inf\n",
		"pool: www\n*****\npid: 1\nrequest uri: /a\nb\nc\n",
		"pool: www\r\n*****\r\npid: 1\r\n",
		"POOL: www\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseWithin(t, b)
		if err != nil {
			if st != nil {
				t.Fatalf("error %v with a status", err)
			}
			return
		}
		if st.Pool == "" {
			t.Fatalf("accepted without a pool name: %+v", st)
		}
		for i, p := range st.Processes {
			if p.PID <= 0 {
				t.Fatalf("process %d accepted with pid %d", i, p.PID)
			}
			// The report encodes the status as JSON, which has no NaN or Inf.
			if math.IsNaN(p.LastRequestCPU) || math.IsInf(p.LastRequestCPU, 0) {
				t.Fatalf("process %d: last request cpu %v", i, p.LastRequestCPU)
			}
		}
		again, err := parseWithin(t, b)
		if err != nil || !reflect.DeepEqual(st, again) {
			t.Fatalf("a second parse differs:\n%+v\n%+v, %v", st, again, err)
		}
	})
}

// TestParseStatusLongValue: a value that runs onto many lines, in a body as
// large as the client accepts, is read in linear time. Appending line by
// line took hours.
func TestParseStatusLongValue(t *testing.T) {
	head := "pool: www\n*****\npid: 1\nrequest uri: /x\n"
	lines := (DefaultMaxBody - len(head)) / 2
	st, err := parseWithin(t, []byte(head+strings.Repeat("a\n", lines)))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(st.Processes[0].RequestURI, "\na"); got != lines {
		t.Errorf("request uri holds %d continuation lines, want %d", got, lines)
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"unix:///run/php/www.sock",
		"/run/php/www.sock",
		"unix:/run/php/www.sock",
		"unix:/run/php/www.sock:", // as nginx's upstream field holds it
		"tcp://127.0.0.1:9000",
		"127.0.0.1:9000",
		"[::1]:9000",
		"[fe80::1%eth0]:9000",
		"php:9000",
		" 127.0.0.1:9000 ",
		"",
		"/",
		"//",
		"unix://",
		"unix:///",
		"unix://run/php.sock",
		"127.0.0.1:0",
		"127.0.0.1:+9000",
		"127.0.0.1:09000",
		"[::1]",
		"[php]:9000",
		"http://127.0.0.1:9000",
		"/run/a\x00b.sock",
		"/run/a\nb.sock",
		"bad host:9000",
		"-php:9000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, "use unix:///run/php/www.sock") {
				t.Fatalf("ParseAddress(%q) error is not one line with an example: %q", s, msg)
			}
			return
		}
		again, err := ParseAddress(a.String())
		if err != nil || again != a {
			t.Fatalf("ParseAddress(%q) = %#v, but its String() %q reads back as %#v, %v", s, a, a.String(), again, err)
		}
	})
}
