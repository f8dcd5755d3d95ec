package fastcgi_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// update rewrites the golden files under testdata: go test -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestParseStatusCaptures(t *testing.T) {
	tests := []struct {
		file      string
		procs     int
		uris      map[int]string // pid -> request URI
		durations map[int]time.Duration
	}{
		{
			file:  "php82_status_full.json",
			procs: 3,
			uris:  map[int]string{8457: `/sleep.php?s=8&token=abc"x`, 8458: "-"},
			durations: map[int]time.Duration{
				8457: 3503076 * time.Microsecond,
			},
		},
		{
			file:  "php82_status_full.txt",
			procs: 3,
			uris:  map[int]string{8457: `/sleep.php?s=8&token=abc"x`, 8458: "-"},
			durations: map[int]time.Duration{
				8457: 3504286 * time.Microsecond,
			},
		},
		{
			file:  "unescaped_status_full.json",
			procs: 3,
			uris: map[int]string{
				8457: `/sleep.php?s=8&token=abc"x`,
				8458: "/a\\q?q=\"x\",\"pid\":1}\nz",
			},
		},
		{
			file:  "newline_status_full.txt",
			procs: 3,
			uris:  map[int]string{8457: `/sleep.php?s=8&token=abc"x`, 8458: "/multi?x=1\nsecond line: not a key"},
		},
		{file: "php82_status.json"},
		{file: "php82_status.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			st, err := fastcgi.ParseStatus(data)
			if err != nil {
				t.Fatalf("ParseStatus: %v", err)
			}
			if st.Pool != "www" || st.ProcessManager != "static" || st.TotalProcesses != 3 || st.SlowRequests != 2 {
				t.Errorf("pool fields wrong: %+v", st)
			}
			if st.StartTime.Unix() != 1795683363 {
				t.Errorf("start time = %v (%d), want Unix 1795683363", st.StartTime, st.StartTime.Unix())
			}
			if len(st.Processes) != tt.procs {
				t.Fatalf("got %d processes, want %d", len(st.Processes), tt.procs)
			}
			for _, p := range st.Processes {
				if want, ok := tt.uris[p.PID]; ok && p.RequestURI != want {
					t.Errorf("pid %d uri = %q, want %q", p.PID, p.RequestURI, want)
				}
				if want, ok := tt.durations[p.PID]; ok && p.RequestDuration != want {
					t.Errorf("pid %d duration = %v, want %v", p.PID, p.RequestDuration, want)
				}
			}
			out, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			fpmtest.Golden(t, strings.TrimSuffix(tt.file, filepath.Ext(tt.file))+filepath.Ext(tt.file)+".golden", append(out, '\n'), *update)
		})
	}
}

// TestParseStatusOfEachVersion reads the status pages of PHP 7.4.33,
// 8.2.36 and 8.4.27, captured while a worker ran a request whose URI, user
// and script hold a quote, a backslash and an escape sequence. 7.4 writes
// all three raw into its JSON, 8.4.27 the user and the script; each is
// read back exactly.
func TestParseStatusOfEachVersion(t *testing.T) {
	const (
		uri  = "/sleep.php/a\"b\\c\x1b[31m?ms=5000&q=\"x\\y"
		user = `u"s\er`
	)
	for _, tt := range []struct {
		file, script string
	}{
		{"php74_hostile_status_full.json", `/fpmtest/3401070488/www/sl"e\ep.php`},
		{"php82_hostile_status_full.json", `/tmp/TestZZCapture8.22305558182/001/www/sl"e\ep.php`},
		{"php84_hostile_status_full.json", `/fpmtest/3762609083/www/sl"e\ep.php`},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			st, err := fastcgi.ParseStatus(data)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range st.Processes {
				if p.RequestURI == uri {
					found = true
					if p.User != user || p.Script != tt.script || p.State != "Running" {
						t.Errorf("user %q script %q state %q, want %q %q Running", p.User, p.Script, p.State, user, tt.script)
					}
				}
			}
			if !found || len(st.Processes) != 2 || st.Pool != "www" {
				t.Errorf("no worker with URI %q in %+v", uri, st)
			}
		})
	}
}

func TestParseStatusRejects(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no pool line"},
		{"html", "<html>File not found.</html>", "no pool line"},
		{"truncated json", `{"pool":"www","process manager":"sta`, "unterminated string"},
		{"bad number", `{"pool":"www","process manager":"static","accepted conn":x}`, `accepted conn "x" is not a count`},
		{"bad pid", `{"pool":"www","processes":[{"pid":-4}]}`, "pid -4 out of range"},
		{"no pool", `{"accepted conn":1}`, "no pool name"},
		{"bad text start", "pool: www\nstart time: yesterday\n", `start time "yesterday"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := fastcgi.ParseStatus([]byte(tt.in))
			if err == nil {
				t.Fatalf("fastcgi.ParseStatus(%q) = %+v, want an error", tt.in, st)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestParseStatusUnknownOrder reads a layout whose string fields come in an
// order this reader does not know, as a future php-fpm might write it.
func TestParseStatusUnknownOrder(t *testing.T) {
	in := `{"pool":"www","processes":[{"script":"/x.php","pid":7,"request uri":"/x","state":"Idle"}],"process manager":"ondemand"}`
	st, err := fastcgi.ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if st.ProcessManager != "ondemand" || len(st.Processes) != 1 || st.Processes[0].Script != "/x.php" || st.Processes[0].RequestURI != "/x" {
		t.Errorf("got %+v", st)
	}
}

// TestParseStatusUnforkedChild: php-fpm fills a scoreboard slot for a child
// before it forks it, and its pid after: a full status page read in that
// moment (right after a worker is killed and respawned) names pid 0, state
// "(null)". That slot is no process, and the page is read without it; a
// process with no pid at all still makes the page unreadable.
func TestParseStatusUnforkedChild(t *testing.T) {
	for _, in := range []string{
		`{"pool":"www","process manager":"static","processes":[{"pid":0,"state":"(null)","request duration":2953452317},{"pid":12,"state":"Idle"}]}`,
		"pool: www\nprocess manager: static\n\n************************\npid: 0\nstate: (null)\n\n************************\npid: 12\nstate: Idle\n",
	} {
		st, err := fastcgi.ParseStatus([]byte(in))
		if err != nil || len(st.Processes) != 1 || st.Processes[0].PID != 12 {
			t.Errorf("ParseStatus(%q) = %+v, %v; want worker 12 alone", in, st, err)
		}
	}
	for _, in := range []string{
		`{"pool":"www","processes":[{"state":"Idle"}]}`,
		"pool: www\n\n************************\nstate: Idle\n",
	} {
		if st, err := fastcgi.ParseStatus([]byte(in)); err == nil {
			t.Errorf("ParseStatus(%q) = %+v, want an error for a process without a pid", in, st)
		}
	}
}
