package fpmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// TestStartEachVersion starts a pool of each version, with every option
// a test may ask for, and talks to it through its host paths: the page it
// runs reports the PHP version and php-fpm's own root, and the cleanup
// leaves no process and no directory behind.
func TestStartEachVersion(t *testing.T) {
	ForEachVersion(t, func(t *testing.T, v string) {
		var f *FPM
		var pids []int
		t.Run("run", func(t *testing.T) {
			files := map[string]string{
				"v.php": `<?php echo PHP_VERSION, " ", __FILE__, " ", (int)ini_get("opcache.enable"), " ", function_exists("opcache_get_status") ? "opcache" : "-";`,
			}
			f = Start(t, Options{Version: v, Files: files, Pools: []Pool{
				{MaxChildren: 2, StatusListen: HasStatusListen(v), Slowlog: true},
				{Name: "od", PM: "ondemand", MaxChildren: 1},
			}})
			if !strings.HasPrefix(f.PHPVersion, v+".") {
				t.Errorf("PHPVersion = %q, want %s.x", f.PHPVersion, v)
			}
			if (f.Root == "") != (v == HostVersion) {
				t.Errorf("Root = %q for %s", f.Root, v)
			}
			if f.Root != "" && !strings.HasPrefix(f.Dir, f.Root+"/") {
				t.Errorf("Dir %s lies outside the root %s", f.Dir, f.Root)
			}
			if got, err := os.Readlink("/proc/" + strconv.Itoa(f.MasterPID()) + "/root"); err != nil || (f.Root != "" && got != f.Root) || (f.Root == "" && got != "/") {
				t.Errorf("the master's root is %q (%v), want %q", got, err, f.Root)
			}
			c := fastcgi.Client{Timeout: 10 * time.Second}
			www := f.Pools["www"]
			resp, err := c.Do(context.Background(), fastcgi.Address{Network: "unix", Addr: www.Listen}, fastcgi.Request{Path: "/v.php", Script: f.Script("v.php")})
			if err != nil {
				t.Fatal(err)
			}
			want := f.PHPVersion + " " + f.InRoot(filepath.Join(f.DocRoot, "v.php")) + " 1 opcache"
			if string(resp.Body) != want {
				t.Errorf("v.php: %q, want %q", resp.Body, want)
			}
			statusSock := www.StatusSocket
			if statusSock == "" {
				statusSock = www.Listen
			}
			st, err := c.Status(context.Background(), fastcgi.Address{Network: "unix", Addr: statusSock}, "/status")
			if err != nil {
				t.Fatal(err)
			}
			if st.Pool != "www" || len(st.Processes) != 2 {
				t.Errorf("status: pool %q with %d workers, want www with 2", st.Pool, len(st.Processes))
			}
			if _, err := c.Ping(context.Background(), fastcgi.Address{Network: "unix", Addr: f.Pools["od"].Listen}, "/ping", "pong"); err != nil {
				t.Error(err)
			}
			pids = append([]int{f.MasterPID()}, f.WorkerPIDs("www")...)
		})
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				t.Errorf("process %d still runs after the test", pid)
			}
		}
		if f != nil {
			if _, err := os.Stat(f.Dir); err == nil && f.Root != "" {
				t.Errorf("%s is still there after the test", f.Dir)
			}
		}
	})
}

// TestStatusListenBefore80 checks that a 7.4 pool asking for
// pm.status_listen fails the test with a message, instead of starting
// without it.
func TestStatusListenBefore80(t *testing.T) {
	for _, v := range Versions {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() {
				if r := recover(); r != nil && r != errFatal {
					panic(r)
				}
			}()
			New(ft, Options{Version: v, Pools: []Pool{{StatusListen: true}}})
		}()
		if HasStatusListen(v) != (ft.msg == "") {
			t.Errorf("PHP %s: pm.status_listen refused with %q, want it refused only before 8.0", v, ft.msg)
		}
		if ft.msg != "" && !strings.Contains(ft.msg, "pm.status_listen") {
			t.Errorf("the refusal does not name pm.status_listen: %s", ft.msg)
		}
	}
}

var errFatal = errors.New("Fatalf")

// fatalRecorder keeps the message of a Fatalf and ends the call.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(errFatal)
}

// TestInRoot checks the translation of host paths into the root.
func TestInRoot(t *testing.T) {
	f := &FPM{Root: "/var/cache/r/php7.4"}
	for in, want := range map[string]string{
		"/var/cache/r/php7.4/fpmtest/1/www.sock": "/fpmtest/1/www.sock",
		"/var/cache/r/php7.4":                    "/",
	} {
		if got := f.InRoot(in); got != want {
			t.Errorf("InRoot(%s) = %s, want %s", in, got, want)
		}
	}
	for _, out := range []string{"/var/cache/r/php7.45/x", "/tmp/x", "/var/cache/r/php7.4/../x"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InRoot(%s) did not panic", out)
				}
			}()
			f.InRoot(out)
		}()
	}
	if got := (&FPM{}).InRoot("/tmp/x"); got != "/tmp/x" {
		t.Errorf("on the host InRoot(/tmp/x) = %s", got)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
