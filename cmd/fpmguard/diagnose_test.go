package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/waits"
)

// The diagnosis where operators look (issues 21 and 24): what hung
// workers wait for, their PHP stacks, and why workers died, in status,
// check, top, serve's JSON, events and metrics, against real php-fpm,
// MariaDB and nginx.

// privateDBAddr is a loopback address of the test's own on MySQL's port,
// so that the service is named by its well-known port.
func privateDBAddr() string {
	return fmt.Sprintf("127.%d.%d.%d:3306", 100+rand.IntN(100), rand.IntN(250)+1, rand.IntN(250)+1)
}

// lockedMariaDB starts MariaDB with a table another session holds a write
// lock on, and php-fpm whose script orders.php reads that table: every
// request of it waits for the lock, blocked reading from MySQL.
func lockedMariaDB(t *testing.T, workers int) (*fpmtest.MariaDB, *fpmtest.FPM) {
	t.Helper()
	db := lockedOrders(t)
	f := fpmtest.Start(t, fpmtest.Options{
		Pools:   []fpmtest.Pool{{MaxChildren: workers, StatusListen: true}},
		Files:   map[string]string{"orders.php": ordersPHP(db)},
		Defines: map[string]string{"default_socket_timeout": "600", "max_execution_time": "0"},
	})
	return db, f
}

// lockedOrders starts MariaDB with a table app.orders that another session
// holds a write lock on until the test ends.
func lockedOrders(t *testing.T) *fpmtest.MariaDB {
	t.Helper()
	db := fpmtest.StartMariaDB(t, fpmtest.MariaDBOptions{Addr: privateDBAddr()})
	db.Exec(t, "CREATE DATABASE app; CREATE TABLE app.orders (id INT) ENGINE=InnoDB; INSERT INTO app.orders VALUES (1)")
	s := db.Session(t)
	s.Send(t, "LOCK TABLES app.orders WRITE; SELECT SLEEP(600);")
	fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		out := db.Exec(t, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'")
		return out, strings.TrimSpace(out) == "1"
	})
	return db
}

// ordersPHP is a script that reads db's app.orders over TCP.
func ordersPHP(db *fpmtest.MariaDB) string {
	host, port, _ := net.SplitHostPort(db.Addr)
	return `<?php $db = new mysqli("` + host + `", "app", "", "app", ` + port + `); $db->query("SELECT * FROM orders");`
}

// wwwSpec names pool www of f for --pool.
func wwwSpec(f *fpmtest.FPM) string {
	p := f.Pools["www"]
	spec := fmt.Sprintf("unix://%s,pm=static,pm.max_children=%d", p.Listen, len(f.WorkerPIDs("www")))
	if p.StatusSocket != "" {
		spec += ",pm.status_listen=" + p.StatusSocket
	}
	return spec
}

// TestStatusNamesMySQL: status on a pool whose 4 workers are blocked on a
// locked MariaDB table names MySQL, its address and how long, in one
// grouped line; the worker table names the wait of each; check says the
// same line; the JSON carries each worker's wait and the group.
func TestStatusNamesMySQL(t *testing.T) {
	db, f := lockedMariaDB(t, 4)
	f.Background(t, 4, "orders.php", "")
	spec := wwwSpec(f)
	args := []string{"--pool", spec, "--no-opcache", "--hung-after", "2s", "--timeout", "1s"}
	want := regexp.MustCompile(`waits: 4 of 4 workers blocked reading from ` + regexp.QuoteMeta(db.Addr) + ` \(MySQL\), in requests up to \d+(\.\d)?s old`)
	out := fpmtest.Poll(t, 90*time.Second, func() (string, bool) {
		_, out, _ := runCLI(t, append([]string{"status"}, args...)...)
		return out, want.MatchString(out)
	})
	t.Logf("fpmguard status:\n%s", out)
	rows := regexp.MustCompile(`(?m)^  \d+ +Running .* yes +read MySQL$`).FindAllString(out, -1)
	if len(rows) != 4 {
		t.Errorf("want 4 rows saying read MySQL:\n%s", out)
	}
	if n := strings.Count(out, "blocked reading from "+db.Addr+" (MySQL) (in "); n != 4 {
		t.Errorf("want each worker's wait under the table, with its system call and fd:\n%s", out)
	}

	_, out, _ = runCLI(t, append([]string{"check"}, args...)...)
	if !strings.Contains(out, "4 of 4 workers blocked reading from "+db.Addr+" (MySQL)") {
		t.Errorf("check: %s", out)
	}

	_, out, _ = runCLI(t, append([]string{"status", "-o", "json"}, args...)...)
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := rep.Pools[0]
	if len(p.Waits) != 1 || len(p.Waits[0].PIDs) != 4 || p.Waits[0].Wait.Service() != waits.ServiceMySQL || p.Waits[0].Wait.Peer.Remote.String() != db.Addr {
		t.Errorf("waits %+v", p.Waits)
	}
	for _, w := range p.Processes {
		if w.Hung && (w.Wait == nil || w.Wait.Kind != waits.KindNetRead || w.Stack == nil) {
			t.Errorf("worker %d: wait %+v stack %+v", w.PID, w.Wait, w.Stack)
		}
	}
}

// TestServeTellsOOMKill: a worker OOM-killed by its memory cgroup in the
// middle of a request shows, under serve, as an OOM kill of that request
// tied to the 502 nginx answered for it: in /events, in /status and in
// phpfpm_worker_exits_total. The request waits for the test to see it in
// flight before it allocates, so that the status read shows it running.
func TestServeTellsOOMKill(t *testing.T) {
	f := fpmtest.Start(t, fpmtest.Options{
		Pools:   []fpmtest.Pool{{MaxChildren: 2, StatusListen: true}},
		Files:   map[string]string{"import.php": `<?php while (!file_exists(__DIR__ . "/go")) { usleep(10000); } $s = str_repeat("x", 400 << 20); echo strlen($s);`},
		Defines: map[string]string{"max_execution_time": "0", "memory_limit": "-1"},
	})
	g, err := fpmtest.MemoryLimit(t, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	// The master too: a worker it starts after the kill is in the group.
	for _, pid := range append(f.WorkerPIDs("www"), f.MasterPID()) {
		if err := g.Add(pid); err != nil {
			t.Fatal(err)
		}
	}
	n := fpmtest.StartNginx(t, f, "www", fpmtest.NginxOptions{})
	addr := freePort(t)
	startBinary(t, "serve", "--fpm-config", f.Conf, "--web.listen-address", addr, "--interval", "200ms", "--no-opcache", "--nginx-error-log", n.ErrorLog)
	base := "http://" + addr
	waitHTTP(t, base+"/readyz", 200)
	// Deaths are counted from the moment php-fpm's error log is followed.
	fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		_, metrics := httpGet(base + "/metrics")
		return metrics, strings.Contains(metrics, `phpfpm_worker_exits_total{cause="oom_kill",master="`+f.Conf+`",pool="www"} 0`)
	})

	status := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Post(n.URL+"/import.php", "text/plain", strings.NewReader("rows"))
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	var pid int
	fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		_, body := httpGet(base + "/status")
		var rep supervisor.Report
		if json.Unmarshal([]byte(body), &rep) != nil || len(rep.Pools) == 0 {
			return body, false
		}
		for _, p := range rep.Pools[0].Processes {
			if p.RequestURI == "/import.php" && p.RequestMethod == "POST" && !p.Idle() {
				pid = p.PID
			}
		}
		return body, pid != 0
	})
	f.WriteFile(t, "go", "")
	if code := <-status; code != 502 {
		t.Errorf("nginx answered %d, want 502", code)
	}

	want := fmt.Sprintf("worker %d of pool www was OOM-killed (cgroup limit 64.0MiB) while running POST /import.php: 1 × 502 upstream closed the connection early", pid)
	fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		_, body := httpGet(base + "/events")
		return body, strings.Contains(body, want) && strings.Contains(body, `"kind": "worker_exit"`)
	})
	t.Logf("the death in /events: %s", want)

	_, body := httpGet(base + "/status")
	var rep supervisor.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if d := rep.Pools[0].Deaths; len(d) != 1 || d[0].PID != pid || d[0].Cause != "oom_kill" || d[0].InRequest != "POST /import.php" ||
		len(d[0].Nginx) != 1 || d[0].Nginx[0].Status != 502 || d[0].Nginx[0].Count != 1 || d[0].LimitBytes != 64<<20 {
		t.Errorf("deaths in /status: %+v", d)
	}
	_, metrics := httpGet(base + "/metrics")
	for _, line := range []string{`phpfpm_worker_exits_total{cause="oom_kill",master="` + f.Conf + `",pool="www"} 1`, `phpfpm_worker_exits_total{cause="killed",master="` + f.Conf + `",pool="www"} 0`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// TestE2EHungOnMariaDB: four workers hung on a locked MariaDB table behind
// nginx; nginx times them out with 504, and fpmguard's event for those
// 504s names what the workers wait for: blocked reading from MySQL.
func TestE2EHungOnMariaDB(t *testing.T) {
	db := lockedOrders(t)
	const readTimeout = 5 * time.Second
	s := runStack(t, fpmtest.Pool{MaxChildren: 4, StatusListen: true}, readTimeout, "--interval", "200ms", "--hung-after", "2s")
	s.fpm.WriteFile(t, "orders.php", ordersPHP(db))
	var ended []chan int
	for range 4 {
		c := make(chan int, 1)
		ended = append(ended, c)
		go func() { c <- s.nginx.Get("/orders.php", 60*time.Second) }()
	}
	for _, c := range ended {
		if code := <-c; code != 504 {
			t.Errorf("nginx answered %d, want 504 at fastcgi_read_timeout", code)
		}
	}
	want := regexp.MustCompile(`4 × 504 upstream timed out on unix://` + regexp.QuoteMeta(s.fpm.Pools["www"].Listen) + ` in the last minute — 4 of 4 workers blocked reading from ` +
		regexp.QuoteMeta(db.Addr) + ` \(MySQL\) for \d+(\.\d)?s, in mysqli->query`)
	msg := fpmtest.Poll(t, 30*time.Second, func() (string, bool) {
		for _, m := range eventMessages(t, s.metrics) {
			if want.MatchString(m) {
				return m, true
			}
		}
		return "", false
	})
	t.Logf("nginx's 504s, tied: %s", msg)
	_, metrics := httpGet(s.metrics + "/metrics")
	if !strings.Contains(metrics, `phpfpm_hung_processes_by_wait{master="`+s.fpm.Conf+`",pool="www",service="mysql",wait="network-read"} 4`) {
		t.Errorf("metrics lack the 4 workers blocked reading from MySQL")
	}
}

// eventMessages reads the messages of serve's /events.
func eventMessages(t *testing.T, base string) []string {
	t.Helper()
	_, body := httpGet(base + "/events")
	var out struct {
		Events []struct {
			Message string `json:"message"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		return nil
	}
	var ms []string
	for _, e := range out.Events {
		ms = append(ms, e.Message)
	}
	return ms
}

// deepPHP hangs in a known stack: sleep <- wait_db (line 2) <- Repo::find
// (line 3) <- handle (line 4) <- <main> (line 5).
const deepPHP = `<?php
function wait_db() { sleep(600); }
class Repo { static function find() { wait_db(); } }
function handle() { Repo::find(); }
handle();
`

// TestStatusNamesTheStack: status names the PHP stack of a hung worker,
// function by function with file and line, on every PHP version of the
// matrix, fpmguard beside php-fpm in its root as in the field; the worker
// is read, never stopped (its state stays S).
func TestStatusNamesTheStack(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v, Pools: []fpmtest.Pool{{MaxChildren: 2, StatusListen: fpmtest.HasStatusListen(v)}},
			Files: map[string]string{"deep.php": deepPHP}, Defines: map[string]string{"max_execution_time": "0"}})
		g := newGuard(t, fpm)
		p := fpm.Pools["www"]
		spec := "unix://" + g.path(p.Listen) + ",pm=static,pm.max_children=2"
		if p.StatusSocket != "" {
			spec += ",pm.status_listen=" + g.path(p.StatusSocket)
		}
		fpm.Background(t, 1, "deep.php", "")
		pid := fpm.WaitWorker(t, "www", func(p fastcgi.Process) bool { return fpmtest.Running(p) && strings.HasSuffix(p.Script, "/deep.php") })
		script := fpm.Script("deep.php")
		places := fmt.Sprintf("stack: sleep <- wait_db (%[1]s:2) <- Repo::find (%[1]s:3) <- handle (%[1]s:4) <- <main> (%[1]s:5)", script)
		out := fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
			_, out, _ := g.run(t, "status", "--pool", spec, "--no-opcache", "--hung-after", "1s")
			return out, strings.Contains(out, places)
		})
		if !strings.Contains(out, fmt.Sprintf("waits: worker %d sleeping, in requests up to", pid)) || !strings.Contains(out, "in sleep <- wait_db <- Repo::find <- handle") {
			t.Errorf("the pool's line lacks the wait and the stack:\n%s", out)
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || !strings.Contains(string(st), ") S ") {
			t.Errorf("worker %d after its stack was read: %q %v", pid, st, err)
		}
		t.Logf("PHP %s: %s", fpm.PHPVersion, places)
	})
}

// TestDiagnosisWithoutPermission: fpmguard run as a user that may not read
// the workers' /proc (no CAP_SYS_PTRACE) names no wait and no stack it
// cannot prove, and says once, in the advice, what is missing and how to
// grant it.
func TestDiagnosisWithoutPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		requireIntegration(t, "switching to an unprivileged user needs root")
	}
	f := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 3, Extra: []string{"listen.mode = 0666"}}},
		Files: map[string]string{"deep.php": deepPHP}, Defines: map[string]string{"max_execution_time": "0"}})
	f.Background(t, 2, "deep.php", "")
	for range 2 {
		f.WaitWorker(t, "www", func(p fastcgi.Process) bool { return fpmtest.Running(p) && strings.HasSuffix(p.Script, "/deep.php") })
	}
	bin := buildBinary(t)
	daemon, err := user.Lookup("daemon")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(daemon.Uid)
	gid, _ := strconv.Atoi(daemon.Gid)
	out := fpmtest.Poll(t, 60*time.Second, func() (string, bool) {
		cmd := exec.Command(bin, "status", "--pool", "unix://"+f.Pools["www"].Listen+",pm=static,pm.max_children=3", "--no-opcache", "--hung-after", "1s")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, _ := cmd.CombinedOutput()
		return string(out), strings.Count(string(out), " yes ") == 2
	})
	// One line for both, in words that hold for both: no worker's own path.
	if !strings.Contains(out, "waits: 2 of 3 workers waiting on something unknown: its system call could not be read (permission denied),") {
		t.Errorf("want the two hung workers in one line, their wait unknown for want of permission:\n%s", out)
	}
	for _, bad := range []string{"workers sleeping", "wait_db", "deep.php:"} {
		if strings.Contains(out, bad) {
			t.Errorf("named %q without permission to read it:\n%s", bad, out)
		}
	}
	for _, want := range []struct {
		text string
		n    int
	}{
		{"advice: fpmguard may not read what worker", 1},
		{"advice: reading the PHP stack of worker", 1},
		{`needs CAP_SYS_PTRACE, which this process lacks: grant CAP_SYS_PTRACE`, 1},
		{`securityContext.capabilities.add: ["SYS_PTRACE"]`, 1},
		// Both workers' stack errors point at the advice, said once.
		{"stack: not read: fpmguard may not read its memory: see the advice (CAP_SYS_PTRACE)", 1},
	} {
		if n := strings.Count(out, want.text); n != want.n {
			t.Errorf("%q appears %d times, want %d:\n%s", want.text, n, want.n, out)
		}
	}
	t.Logf("without CAP_SYS_PTRACE:\n%s", out)
}
