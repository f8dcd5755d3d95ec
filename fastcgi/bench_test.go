package fastcgi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/yookoala/gofast"
)

// BenchmarkHeartbeat measures one ping round trip on a unix socket to a
// real php-fpm, each on a fresh connection. rawGofast is the baseline: gofast
// used as its README shows, with no deadline, no limit and no checks.
func BenchmarkHeartbeat(b *testing.B) {
	fpm := fpmtest.Start(b, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	sock := fpm.Pools["www"].Listen
	ctx := context.Background()

	b.Run("fpmguard", func(b *testing.B) {
		c := fastcgi.Client{}
		addr := fastcgi.Address{Network: "unix", Addr: sock}
		for b.Loop() {
			if _, err := c.Ping(ctx, addr, "/ping", "pong"); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same socket as a master in another container shows it: its
	// path resolved inside the root (here the master's directory) at
	// every connect.
	b.Run("insideRoot", func(b *testing.B) {
		c := fastcgi.Client{}
		addr := fastcgi.Address{Network: "unix", Addr: sock, Root: fpm.Dir}
		for b.Loop() {
			if _, err := c.Ping(ctx, addr, "/ping", "pong"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rawGofast", func(b *testing.B) {
		factory := gofast.SimpleClientFactory(gofast.SimpleConnFactory("unix", sock))
		for b.Loop() {
			c, err := factory()
			if err != nil {
				b.Fatal(err)
			}
			req := gofast.NewRequest(nil)
			req.Params = map[string]string{"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/ping", "SCRIPT_FILENAME": "/ping"}
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if err := resp.WriteTo(rec, &bytes.Buffer{}); err != nil {
				b.Fatal(err)
			}
			c.Close()
			if rec.Body.String() != "pong" {
				b.Fatalf("got %q", rec.Body)
			}
		}
	})
}

// fiftyWorkers builds a json&full page of 50 workers from the real capture.
func fiftyWorkers(b *testing.B) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", "php82_status_full.json"))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	head := s[:strings.Index(s, `"processes":[`)+len(`"processes":[`)]
	first := s[len(head) : strings.Index(s, "},{")+1]
	var procs []string
	for i := range 50 {
		procs = append(procs, strings.Replace(first, `"pid":8457`, fmt.Sprintf(`"pid":%d`, 10000+i), 1))
	}
	return []byte(head + strings.Join(procs, ",") + "]}")
}

// BenchmarkParseStatus50 parses a 50-worker status page. encodingJSON is the
// baseline: encoding/json into tagged structs, which cannot read the broken
// documents php-fpm writes before 8.1.
func BenchmarkParseStatus50(b *testing.B) {
	doc := fiftyWorkers(b)
	b.Run("fpmguard", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			st, err := fastcgi.ParseStatus(doc)
			if err != nil || len(st.Processes) != 50 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encodingJSON", func(b *testing.B) {
		type proc struct {
			PID             int     `json:"pid"`
			State           string  `json:"state"`
			StartTime       int64   `json:"start time"`
			StartSince      int64   `json:"start since"`
			Requests        uint64  `json:"requests"`
			RequestDuration int64   `json:"request duration"`
			RequestMethod   string  `json:"request method"`
			RequestURI      string  `json:"request uri"`
			ContentLength   int64   `json:"content length"`
			User            string  `json:"user"`
			Script          string  `json:"script"`
			LastCPU         float64 `json:"last request cpu"`
			LastMemory      int64   `json:"last request memory"`
		}
		type page struct {
			Pool               string `json:"pool"`
			ProcessManager     string `json:"process manager"`
			StartTime          int64  `json:"start time"`
			StartSince         int64  `json:"start since"`
			AcceptedConn       uint64 `json:"accepted conn"`
			ListenQueue        int64  `json:"listen queue"`
			MaxListenQueue     int64  `json:"max listen queue"`
			ListenQueueLen     int64  `json:"listen queue len"`
			IdleProcesses      int64  `json:"idle processes"`
			ActiveProcesses    int64  `json:"active processes"`
			TotalProcesses     int64  `json:"total processes"`
			MaxActiveProcesses int64  `json:"max active processes"`
			MaxChildrenReached uint64 `json:"max children reached"`
			SlowRequests       uint64 `json:"slow requests"`
			Processes          []proc `json:"processes"`
		}
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var p page
			if err := json.Unmarshal(doc, &p); err != nil || len(p.Processes) != 50 {
				b.Fatal(err)
			}
		}
	})
}
