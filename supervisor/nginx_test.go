package supervisor

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseNginxLineOnRealLog reads the error log of a real nginx in front
// of broken upstreams (see fuzz_test.go) and checks each failure is read
// with its cause, and that nothing else is: not the notices, not a missing
// static file whose Referer imitates an upstream failure.
func TestParseNginxLineOnRealLog(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "nginx-error.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		e, ok := ParseNginxLine(line)
		if strings.Contains(line, "favicon.ico") {
			if ok {
				t.Errorf("a forged Referer counted as %+v: %s", e, line)
			}
			continue
		}
		if ok {
			got[e.Cause+" "+e.Upstream]++
			if (e.Cause == "timeout") != (e.Status == 504) {
				t.Errorf("%+v: a timeout is nginx's 504, everything else its 502", e)
			}
		}
	}
	want := map[string]int{
		"refused unix:/tmp/fpmguard-nginx/refused.sock": 1,
		"backlog unix:/tmp/fpmguard-nginx/backlog.sock": 1,
		"missing unix:/tmp/fpmguard-nginx/missing.sock": 1,
		"permission unix:/tmp/fpmguard-nginx/perm.sock": 1,
		"reset unix:/tmp/fpmguard-nginx/close.sock":     1,
		"timeout unix:/tmp/fpmguard-nginx/hang.sock":    1,
		"reset 127.0.0.1:39797":                         1, // recv() failed (104)
		"reset 127.0.0.1:46343":                         1, // prematurely closed
		"timeout 127.0.0.1:44273":                       1,
		"refused 127.0.0.1:38333":                       1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: read %d times, want %d; all: %v", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("read %v, want %v", got, want)
	}
}
