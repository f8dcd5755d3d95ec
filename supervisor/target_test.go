package supervisor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor/fpmconf"
)

func TestParsePoolSpec(t *testing.T) {
	tests := []struct {
		spec    string
		check   func(Target) bool
		wantErr string
	}{
		{spec: "/run/php/www.sock", check: func(t Target) bool {
			return t.Name == "www" && t.StatusPath == "/status" && t.PingPath == "/ping" && t.PingResponse == "pong" && t.StatusAddress.IsZero()
		}},
		{spec: "127.0.0.1:9000,name=api,pm.status_path=/fpm-status,pm.status_listen=127.0.0.1:9001,ping.path=/health,ping.response=ok", check: func(t Target) bool {
			return t.Name == "api" && t.StatusPath == "/fpm-status" && t.StatusAddress.String() == "tcp://127.0.0.1:9001" && t.PingPath == "/health" && t.PingResponse == "ok"
		}},
		{spec: "/run/php/www.sock,pm=static,pm.max_children=5", check: func(t Target) bool { return t.MinWorkers == 5 && t.MaxChildren == 5 }},
		{spec: "/run/php/www.sock,pm.max_children=5,pm=static", check: func(t Target) bool { return t.MinWorkers == 5 }},
		{spec: "/run/php/www.sock,pid=/run/php/fpm.pid", check: func(t Target) bool { return t.MasterPIDFile == "/run/php/fpm.pid" }},
		{spec: "www.sock", wantErr: `bad FastCGI address "www.sock"`},
		{spec: "/run/php/www.sock,status", wantErr: `option "status" is not key=value`},
		{spec: "/run/php/www.sock,colour=blue", wantErr: `unknown option "colour"; use one of name, pm.status_path`},
		{spec: "/run/php/www.sock,pm.status_path=status", wantErr: `must be a path starting with /`},
		{spec: "/run/php/www.sock,pm=lazy", wantErr: `pm "lazy" must be static, dynamic or ondemand`},
		{spec: "/run/php/www.sock,pid=fpm.pid", wantErr: `must be an absolute path`},
		{spec: "/run/php/www.sock,pm.max_children=ten", wantErr: `pm.max_children "ten" must be a whole number`},
	}
	for _, tt := range tests {
		got, err := ParsePoolSpec(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.spec) {
				t.Errorf("ParsePoolSpec(%q) error = %v, want one naming the spec and %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.check(got) {
			t.Errorf("ParsePoolSpec(%q) = %+v, %v", tt.spec, got, err)
		}
	}
}

// hostileRoot is a master's root as another container shows it through
// /proc/PID/root, with a config naming a pool socket and a pid file in a
// directory its pool user writes.
func hostileRoot(t *testing.T) (root string, tg Target) {
	t.Helper()
	// Not t.TempDir: a socket path must stay under 108 bytes.
	root, err := os.MkdirTemp("", "fpmguard-root")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc/php", "run/php"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "run/php"), fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	conf := "[global]\npid = /run/php/fpm.pid\n[hostile]\nlisten = /run/php/hostile.sock\npm = static\npm.max_children = 2\npm.status_path = /status\nping.path = /ping\n"
	if err := os.WriteFile(filepath.Join(root, "etc/php/php-fpm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := fpmconf.Load("/etc/php/php-fpm.conf", fpmconf.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := TargetsFromConfig(cfg, root, 0, "discovered")
	if err != nil || len(ts) != 1 {
		t.Fatalf("targets %+v, %v", ts, err)
	}
	return root, ts[0]
}

// TestHostileRootSwapsSocket: after fpmguard has read a master's config
// in another root, the pool user there swaps the pool's socket for a link
// to a pool of the host. fpmguard must not connect to the host's pool and
// report its workers under the hostile pool's name: the socket is resolved
// inside the root at every connect.
func TestHostileRootSwapsSocket(t *testing.T) {
	host := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	root, tg := hostileRoot(t)
	link(t, host.Pools["www"].Listen, filepath.Join(root, "run/php/hostile.sock"))

	r := testProber(time.Second).Probe(context.Background(), tg, nil)
	if r.Status.OK || r.Heartbeat.OK || len(r.Processes) > 0 {
		t.Errorf("pool hostile reached the host's pool: status %+v heartbeat %+v workers %+v", r.Status, r.Heartbeat, r.Processes)
	}
	if r.Health != HealthDown {
		t.Errorf("health %s %q, want down: nothing listens at /run/php/hostile.sock inside the root", r.Health, r.Reasons)
	}
}

// TestHostileRootPIDFile: a pid file inside another root that links to
// /dev/zero or to a root-only file of the host neither kills fpmguard nor
// shows the file.
func TestHostileRootPIDFile(t *testing.T) {
	shadow := rootOnlyFile(t)
	for _, target := range []string{"/dev/zero", shadow} {
		t.Run(target, func(t *testing.T) {
			root, tg := hostileRoot(t)
			link(t, target, filepath.Join(root, "run/php/fpm.pid"))
			r := testProber(time.Second).Probe(context.Background(), tg, nil)
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if leaks(string(out)) || r.Master == nil || r.Master.Alive {
				t.Errorf("master %+v", r.Master)
			}
		})
	}
}

// TestChrootMasterSwapsSocket is finding 4 with a real master in another
// root: php-fpm 8.2 started with chroot, seen only through /proc/PID/root,
// found by discovery. After discovery read its config, the pool user
// inside swaps the pool's socket and pid file for links to the host's
// pool and to /dev/zero. fpmguard keeps to the root: the pool is down,
// never the host's pool under the hostile pool's name, and nothing crashes.
func TestChrootMasterSwapsSocket(t *testing.T) {
	host := fpmtest.Start(t, fpmtest.Options{Pools: []fpmtest.Pool{{MaxChildren: 2}}})
	f := startChrootFPM(t, nil)
	pid := f.cmd.Process.Pid
	targets, err := Discover(context.Background(), Trust{})
	var tg Target
	for _, d := range targets {
		if d.MasterPID == pid {
			tg = d
		}
	}
	if tg.Name != "www" || tg.Root != "/proc/"+strconv.Itoa(pid)+"/root" {
		t.Fatalf("the chrooted master %d was not discovered through its root: %+v (err %v)", pid, targets, err)
	}
	// The status page through the main socket, the one swapped below.
	tg.StatusAddress = fastcgi.Address{}
	pr := testProber(time.Second)
	if r := pr.Probe(context.Background(), tg, nil); r.Health != HealthOK || len(r.Processes) != 2 {
		t.Fatalf("before the swap: %s %q, workers %+v", r.Health, r.Reasons, r.Processes)
	}
	for name, target := range map[string]string{"run/www.sock": host.Pools["www"].Listen, "run/php-fpm.pid": "/dev/zero"} {
		p := filepath.Join(f.root, name)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	r := pr.Probe(context.Background(), tg, nil)
	hostWorkers := host.WorkerPIDs("www")
	for _, p := range r.Processes {
		if slices.Contains(hostWorkers, p.PID) {
			t.Errorf("pool www of the chrooted master shows the host's worker %d", p.PID)
		}
	}
	if r.Health != HealthDown || r.Status.OK || r.Heartbeat.OK {
		t.Errorf("after the swap: %s %q, status %+v, heartbeat %+v", r.Health, r.Reasons, r.Status, r.Heartbeat)
	}
	// Found by its pid file instead, inside the root: /dev/zero is refused.
	tg.MasterPID = 0
	if r := pr.Probe(context.Background(), tg, nil); r.Master == nil || r.Master.Alive || !strings.Contains(r.Master.Error, "symbolic link") {
		t.Errorf("master through a pid file linking to /dev/zero: %+v", r.Master)
	}
}
