package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/phpbin"
)

// configLine is a config line in an advice, as the user pastes it:
// `key = value`.
var configLine = regexp.MustCompile("`([a-z_.]+(?:\\[\\])?) = ([^`]+)`")

// configLines lists the config lines of advice, as "key = value".
func configLines(advice []string) []string {
	var out []string
	for _, a := range advice {
		for _, m := range configLine.FindAllStringSubmatch(a, -1) {
			out = append(out, m[1]+" = "+m[2])
		}
	}
	return out
}

// masterTargets reads the pools of fpm's master as discovery does: through
// /proc/PID/root for a master in a root of its own.
func masterTargets(t *testing.T, fpm *fpmtest.FPM) map[string]Target {
	t.Helper()
	root, err := foreignRoot(fpm.MasterPID())
	if err != nil {
		t.Fatal(err)
	}
	if (root != "") != (fpm.Root != "") {
		t.Fatalf("master %d: root %q, but fpmtest runs it in %q", fpm.MasterPID(), root, fpm.Root)
	}
	ts, err := TargetsOfMaster(Master{PID: fpm.MasterPID(), Config: fpm.InRoot(fpm.Conf), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Target{}
	for _, tg := range ts {
		out[tg.Name] = tg
	}
	return out
}

// configTest runs the version's own `php-fpm -t` on conf, a host path, as
// a process of php-fpm's container.
func configTest(t *testing.T, fpm *fpmtest.FPM, conf string) {
	t.Helper()
	out, err := fpm.Command(fpm.InRootArgv()[0], "-t", "-y", fpm.InRoot(conf)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("php-fpm %s -t refuses the config with the advice pasted: %v\n%s", fpm.PHPVersion, err, out)
	}
}

// TestAdvicePassesConfigTest pastes the advice of `status` into the pool's
// config and runs that version's own `php-fpm -t` on it, for every version:
// 7.4 is never advised pm.status_listen, paths are as php-fpm sees them in
// its root, and access.suppress_path[] is advised from 8.2 on for a pool
// with an access log. The pasted config is then loaded (SIGUSR2) and
// probed again: the advice has no config line left, and on 8.2 and later
// no probe reaches the access log any more.
func TestAdvicePassesConfigTest(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		for _, c := range []struct {
			name       string
			pool       fpmtest.Pool
			statusPath string // the target's, when not the pool's
			want       []string
		}{
			{name: "default", pool: fpmtest.Pool{}, want: []string{"pm.status_listen", "access.suppress_path[]"}},
			{name: "bare", pool: fpmtest.Pool{StatusPath: "-", PingPath: "-"}, want: []string{"pm.status_path", "pm.status_listen", "ping.path", "access.suppress_path[]"}},
			{name: "wrong-status-path", pool: fpmtest.Pool{}, statusPath: "/fpm-status", want: []string{"pm.status_path", "pm.status_listen", "access.suppress_path[]"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				fpm := fpmtest.New(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{c.pool}})
				accessLog := filepath.Join(fpm.Dir, "access.log")
				appendFile(t, fpm.Conf, "access.log = "+fpm.InRoot(accessLog)+"\n")
				fpm.Start(t)
				tg := masterTargets(t, fpm)["www"]
				if c.statusPath != "" {
					tg.StatusPath = c.statusPath
				}
				r := testProber(5*time.Second).Probe(context.Background(), tg, nil)
				if r.Master == nil || r.Master.PHPVersion.String() != fpm.PHPVersion {
					t.Fatalf("master %+v, want PHP %s read from its binary", r.Master, fpm.PHPVersion)
				}
				lines := configLines(r.Advice)
				var keys []string
				for _, l := range lines {
					keys = append(keys, strings.SplitN(l, " = ", 2)[0])
				}
				want := slices.DeleteFunc(slices.Clone(c.want), func(k string) bool {
					return k == "pm.status_listen" && !r.Master.PHPVersion.AtLeast(8, 0) || k == "access.suppress_path[]" && !r.Master.PHPVersion.AtLeast(8, 2)
				})
				slices.Sort(keys)
				slices.Sort(want)
				if !slices.Equal(keys, want) {
					t.Fatalf("advice %q: config lines %q, want %q", r.Advice, lines, want)
				}
				for _, a := range r.Advice {
					if strings.Contains(a, "/proc/") || strings.Contains(a, "fpmguard status") {
						t.Errorf("advice %q names /proc or `fpmguard status`", a)
					}
				}
				if slices.Contains(keys, "pm.status_listen") {
					sock := fpm.InRoot(filepath.Join(fpm.Dir, "www-status.sock"))
					if !slices.Contains(lines, "pm.status_listen = "+sock) {
						t.Errorf("config lines %q, want pm.status_listen = %s, as php-fpm sees it", lines, sock)
					}
				}
				if !r.Master.PHPVersion.AtLeast(8, 0) && !strings.Contains(strings.Join(r.Advice, "\n"), "PHP 7.4 has no pm.status_listen") {
					t.Errorf("advice %q does not say what a 7.4 user can do", r.Advice)
				}
				if len(lines) == 0 {
					return
				}

				conf, err := os.ReadFile(fpm.Conf)
				if err != nil {
					t.Fatal(err)
				}
				pasted := string(conf) + "\n; pasted from fpmguard status\n" + strings.Join(lines, "\n") + "\n"
				pastedPath := filepath.Join(fpm.Dir, "pasted.conf")
				if err := os.WriteFile(pastedPath, []byte(pasted), 0o644); err != nil {
					t.Fatal(err)
				}
				configTest(t, fpm, pastedPath)

				// Loaded, the advice is followed: nothing left to paste.
				if err := os.WriteFile(fpm.Conf, []byte(pasted), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := fpm.Signal(syscall.SIGUSR2); err != nil {
					t.Fatal(err)
				}
				var after PoolReport
				fpmtest.Poll(t, time.Minute, func() ([]string, bool) {
					tg := masterTargets(t, fpm)["www"]
					after = testProber(5*time.Second).Probe(context.Background(), tg, nil)
					left := configLines(after.Advice)
					return left, after.Heartbeat.OK && after.Status.OK && len(left) == 0
				})
				if !r.Master.PHPVersion.AtLeast(8, 2) {
					return
				}
				// The heartbeat stays out of the access log from now on.
				before := readFile(t, accessLog)
				for range 3 {
					if hb := testProber(5*time.Second).Probe(context.Background(), masterTargets(t, fpm)["www"], nil).Heartbeat; !hb.OK {
						t.Fatalf("heartbeat %+v", hb)
					}
				}
				if c.pool.PingPath != "-" && !strings.Contains(before, "GET /ping") {
					t.Errorf("the access log never had the heartbeat before the advice was followed:\n%s", before)
				}
				// The status page is read through pm.status_listen now, whose
				// pool logs nothing: the probes leave no line at all.
				if log := readFile(t, accessLog)[len(before):]; log != "" {
					t.Errorf("fpmguard's probes are still in the access log:\n%s", log)
				}
			})
		}
	})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdviceWhileEveryWorkerIsBusy: a pool whose every worker is busy is
// advised what its version allows, and never sent to the worker table of
// `fpmguard status`, which is where the advice is printed. On 7.4 (no
// pm.status_listen) no status page answers, and no worker table is shown.
func TestAdviceWhileEveryWorkerIsBusy(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2}}, Files: map[string]string{"sleep.php": fpmtest.SleepPHP}})
		tg := masterTargets(t, fpm)["www"]
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{}, 2)
		for range 2 {
			go func() {
				defer func() { done <- struct{}{} }()
				_, _ = fastcgi.Client{Timeout: 2 * time.Minute}.Do(ctx, tg.Address, fastcgi.Request{Path: "/sleep.php", Query: "ms=120000", Script: fpm.Script("sleep.php")})
			}()
		}
		t.Cleanup(func() {
			cancel()
			<-done
			<-done
		})
		r := fpmtest.Poll(t, time.Minute, func() (PoolReport, bool) {
			r := testProber(time.Second).Probe(context.Background(), tg, nil)
			// Both workers hold a request: the status read, through a
			// worker as the ping, times out too.
			return r, r.Heartbeat.Failed() && r.Heartbeat.Failure.Class == fastcgi.ClassTimeout && r.Status.Failed() && r.Status.Failure.Class == fastcgi.ClassTimeout
		})
		advice := strings.Join(r.Advice, "\n")
		lines := configLines(r.Advice)
		if strings.Contains(advice, "fpmguard status") {
			t.Errorf("advice %q sends the user to `fpmguard status`", r.Advice)
		}
		if !strings.Contains(advice, "no status page answered") {
			t.Errorf("advice %q does not say that no status page showed the workers", r.Advice)
		}
		if fpmtest.HasStatusListen(v) {
			if !slices.Equal(lines, []string{"pm.status_listen = " + fpm.InRoot(filepath.Join(fpm.Dir, "www-status.sock"))}) {
				t.Errorf("config lines %q, want the pool's pm.status_listen", lines)
			}
		} else if len(lines) != 0 || !strings.Contains(advice, "PHP 7.4 has no pm.status_listen") {
			t.Errorf("advice %q, want no config line and what a 7.4 user can do", r.Advice)
		}
		t.Logf("PHP %s, every worker busy: %q", fpm.PHPVersion, r.Advice)
	})
}

// TestAdviceByVersion: each line for each version, known or not, and for
// masters in another root.
func TestAdviceByVersion(t *testing.T) {
	v74, v82, v84 := phpbin.Version{Major: 7, Minor: 4, Patch: 33}, phpbin.Version{Major: 8, Minor: 2, Patch: 36}, phpbin.Version{Major: 8, Minor: 4, Patch: 27}
	root := "/proc/28985/root"
	inRoot := Target{Name: "www", Address: fastcgi.Address{Network: "unix", Addr: root + "/run/php/php8.4-fpm.sock", Root: root}, StatusPath: "/status", PingPath: "/ping", Root: root}
	host := Target{Name: "www", Address: fastcgi.Address{Network: "unix", Addr: "/run/php/php8.2-fpm.sock"}, StatusPath: "/status", PingPath: "/ping", AccessLog: "/var/log/fpm.log"}
	tcp := Target{Name: "api", Address: fastcgi.Address{Network: "tcp", Addr: "127.0.0.1:9000"}, StatusPath: "/status", PingPath: "/ping"}
	withLog := host
	withLog.SuppressPaths = []string{"/ping"}
	bare := host
	bare.StatusPath, bare.PingPath = "", ""
	ok := PoolReport{Status: StatusRead{OK: true}, Heartbeat: Heartbeat{OK: true}}
	skipped := PoolReport{Status: StatusRead{Skipped: true}, Heartbeat: Heartbeat{Skipped: true}}
	timeout := &Failure{Class: fastcgi.ClassTimeout, Hint: "no answer in time: every worker may be busy or hung (nginx answers 504); see the worker table of `fpmguard status`"}
	hungShown := PoolReport{Status: StatusRead{OK: true}, Heartbeat: Heartbeat{Failure: timeout}, Processes: []ProcessState{{PID: 1}}}
	dark := PoolReport{Status: StatusRead{Failure: timeout}, Heartbeat: Heartbeat{Failure: timeout}}
	notFound := PoolReport{Status: StatusRead{Failure: &Failure{Class: fastcgi.ClassNotFound, Hint: "php-fpm has no status page at /status: add `pm.status_path = /status` to the pool (and `pm.status_listen` for a socket that answers when every worker is busy), or pass the pool's real status path"}}, Heartbeat: Heartbeat{OK: true}}
	for _, c := range []struct {
		name string
		t    Target
		r    PoolReport
		v    phpbin.Version
		want []string
	}{
		{"8.4 in a root", inRoot, ok, v84, []string{"add `pm.status_listen = /run/php/php8.4-fpm-status.sock` to pool [www] so its status still answers when every worker is busy"}},
		{"7.4", inRoot, ok, v74, []string{"PHP 7.4 has no pm.status_listen (PHP 8.0 brought it): the status page of pool [www] is served by its own workers, so it does not answer while all of them are busy; keep pm.max_children above the busiest peak (`fpmguard advise` sizes it) and let fpmguard in php-fpm's own container recover the pool with `--reload-unhealthy` when every worker hangs"}},
		{"unknown version", inRoot, ok, phpbin.Version{}, []string{"if its master runs PHP 8.0 or later, add `pm.status_listen = /run/php/php8.4-fpm-status.sock` to pool [www] so its status still answers when every worker is busy (PHP 7 refuses the directive)"}},
		{"tcp", tcp, ok, v82, []string{"add `pm.status_listen = 127.0.0.1:9001` to pool [api] so its status still answers when every worker is busy"}},
		{"access log, 8.2", host, ok, v82, []string{
			"add `pm.status_listen = /run/php/php8.2-fpm-status.sock` to pool [www] so its status still answers when every worker is busy",
			"add `access.suppress_path[] = /ping` to pool [www] so fpmguard's heartbeat stays out of its access log"}},
		{"access log, suppressed already", withLog, ok, v82, []string{"add `pm.status_listen = /run/php/php8.2-fpm-status.sock` to pool [www] so its status still answers when every worker is busy"}},
		{"access log, 7.4", host, ok, v74, []string{"PHP 7.4 has no pm.status_listen (PHP 8.0 brought it): the status page of pool [www] is served by its own workers, so it does not answer while all of them are busy; keep pm.max_children above the busiest peak (`fpmguard advise` sizes it) and let `--reload-unhealthy` recover the pool when every worker hangs"}},
		{"access log, unknown version", host, ok, phpbin.Version{}, []string{"if its master runs PHP 8.0 or later, add `pm.status_listen = /run/php/php8.2-fpm-status.sock` to pool [www] so its status still answers when every worker is busy (PHP 7 refuses the directive)"}},
		{"bare, 8.4", bare, skipped, v84, []string{
			"add `pm.status_path = /status` to pool [www] so fpmguard can see its workers",
			"add `pm.status_listen = /run/php/php8.2-fpm-status.sock` to pool [www] so its status still answers when every worker is busy",
			"add `ping.path = /ping` to pool [www] so fpmguard can send a heartbeat through a worker",
			"add `access.suppress_path[] = /ping` to pool [www] so fpmguard's heartbeat stays out of its access log"}},
		{"hung, table shown", host, hungShown, v84, []string{
			"add `pm.status_listen = /run/php/php8.2-fpm-status.sock` to pool [www] so its status still answers when every worker is busy",
			"add `access.suppress_path[] = /ping` to pool [www] so fpmguard's heartbeat stays out of its access log",
			"every worker may be busy or hung, so nginx answers 504 at its fastcgi_read_timeout: the workers of this report show which requests hold them"}},
		{"hung, nothing shown, 7.4", inRoot, dark, v74, []string{
			"PHP 7.4 has no pm.status_listen (PHP 8.0 brought it): the status page of pool [www] is served by its own workers, so it does not answer while all of them are busy; keep pm.max_children above the busiest peak (`fpmguard advise` sizes it) and let fpmguard in php-fpm's own container recover the pool with `--reload-unhealthy` when every worker hangs",
			"no answer in time: every worker may be busy or hung (nginx answers 504), and no status page answered to show which requests hold them"}},
		{"no status page, 7.4", inRoot, notFound, v74, []string{
			"PHP 7.4 has no pm.status_listen (PHP 8.0 brought it): the status page of pool [www] is served by its own workers, so it does not answer while all of them are busy; keep pm.max_children above the busiest peak (`fpmguard advise` sizes it) and let fpmguard in php-fpm's own container recover the pool with `--reload-unhealthy` when every worker hangs",
			"php-fpm has no status page at /status: add `pm.status_path = /status` to pool [www], or give fpmguard the pool's real status path"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.r.Master = &MasterReport{Alive: true, PHPVersion: c.v}
			if got := advice(c.t, c.r); !slices.Equal(got, c.want) {
				t.Errorf("advice:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
	if got := suggestStatusListen(Target{Address: fastcgi.Address{Network: "tcp", Addr: "[::1]:65535"}}); got != "[::1]:65534" {
		t.Errorf("status listener beside port 65535: %s", got)
	}
	if got := advice(host, ok); len(got) != 1 || !strings.HasPrefix(got[0], "if its master runs PHP 8.0") {
		t.Errorf("no master: %q", got)
	}
}
