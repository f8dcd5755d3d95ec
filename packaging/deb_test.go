package packaging

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debFiles is every file and directory of the .deb (dpkg-deb -c): mode,
// owner and path. The directories are dpkg's usual ones.
var debFiles = []string{
	"drwxr-xr-x root/root ./etc/",
	"drwxr-xr-x root/root ./etc/default/",
	"-rw-r--r-- root/root ./etc/default/fpmguard",
	"drwxr-xr-x root/root ./usr/",
	"drwxr-xr-x root/root ./usr/bin/",
	"-rwxr-xr-x root/root ./usr/bin/fpmguard",
	"drwxr-xr-x root/root ./usr/lib/",
	"drwxr-xr-x root/root ./usr/lib/systemd/",
	"drwxr-xr-x root/root ./usr/lib/systemd/system/",
	"-rw-r--r-- root/root ./usr/lib/systemd/system/fpmguard.service",
	"drwxr-xr-x root/root ./usr/share/",
	"drwxr-xr-x root/root ./usr/share/bash-completion/",
	"drwxr-xr-x root/root ./usr/share/bash-completion/completions/",
	"-rw-r--r-- root/root ./usr/share/bash-completion/completions/fpmguard",
	"drwxr-xr-x root/root ./usr/share/doc/",
	"drwxr-xr-x root/root ./usr/share/doc/fpmguard/",
	"-rw-r--r-- root/root ./usr/share/doc/fpmguard/changelog.Debian.gz",
	"-rw-r--r-- root/root ./usr/share/doc/fpmguard/copyright",
	"drwxr-xr-x root/root ./usr/share/lintian/",
	"drwxr-xr-x root/root ./usr/share/lintian/overrides/",
	"-rw-r--r-- root/root ./usr/share/lintian/overrides/fpmguard",
	"drwxr-xr-x root/root ./usr/share/man/",
	"drwxr-xr-x root/root ./usr/share/man/man1/",
	"-rw-r--r-- root/root ./usr/share/man/man1/fpmguard.1.gz",
	"drwxr-xr-x root/root ./usr/share/zsh/",
	"drwxr-xr-x root/root ./usr/share/zsh/vendor-completions/",
	"-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_fpmguard",
	"drwxr-xr-x root/root ./var/",
	"drwxr-xr-x root/root ./var/lib/",
	"drwxr-xr-x root/root ./var/lib/fpmguard/",
}

// TestDeb: each .deb passes lintian, holds what it should with the right
// metadata, and a static binary of its architecture and version.
func TestDeb(t *testing.T) {
	b := artifacts(t)
	for _, goarch := range goarchs {
		t.Run(goarch, func(t *testing.T) {
			deb := b.deb(goarch)
			// Errors and warnings fail; packaging/lintian-overrides says
			// why the overridden tags do not apply.
			// (--show-overrides would fail it on the overridden ones.)
			if out, err := command("lintian", "--fail-on", "error,warning", "--info", "--pedantic", "--display-experimental", deb); err != nil {
				t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
			} else {
				t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
			}
			fields := map[string]string{"Package": "fpmguard", "Version": b.pkgVersion + "-1", "Architecture": debArch[goarch]}
			for k, want := range fields {
				if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, k)); got != want {
					t.Errorf("%s: %s: %q, want %q", filepath.Base(deb), k, got, want)
				}
			}
			if got := strings.TrimSpace(run(t, "dpkg-deb", "--info", deb, "conffiles")); got != "/etc/default/fpmguard" {
				t.Errorf("conffiles: %q, want /etc/default/fpmguard", got)
			}
			var files []string
			for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
				f := strings.Fields(line) // mode owner size date time path
				if len(f) != 6 {
					t.Fatalf("dpkg-deb --contents: %q", line)
				}
				files = append(files, f[0]+" "+f[1]+" "+f[5])
			}
			if !slices.Equal(files, debFiles) {
				t.Errorf("%s holds:\n%s\nwant:\n%s", filepath.Base(deb), strings.Join(files, "\n"), strings.Join(debFiles, "\n"))
			}
			checkBinary(t, b, filepath.Base(deb), debBinary(t, b, goarch), goarch)
		})
	}
}

// TestDebInstall installs the .deb of this machine's architecture into a
// copy of a clean Debian bookworm root with php8.2-fpm, as a user would,
// and uses what it installed there: fpmguard status against php-fpm,
// serve as the unit runs it, the man page, completion, the unit; then
// reinstalls it, removes it and purges it.
func TestDebInstall(t *testing.T) {
	b := artifacts(t)
	root := copyRoot(t, b.root)
	deb := "/tmp/" + filepath.Base(b.deb(hostArch))
	data, err := os.ReadFile(b.deb(hostArch))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, deb), data, 0o644); err != nil {
		t.Fatal(err)
	}
	in := func(args ...string) string { t.Helper(); return run(t, "chroot", append([]string{root}, args...)...) }

	t.Logf("dpkg -i:\n%s", in("dpkg", "-i", deb))
	if got := in("dpkg-query", "-W", "-f", "${Version} ${Status}", "fpmguard"); got != b.pkgVersion+"-1 install ok installed" {
		t.Errorf("dpkg-query: %q", got)
	}
	// Enabled, as Debian does with a service (no systemd runs here to start
	// it).
	if target, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/fpmguard.service")); err != nil || filepath.Base(target) != "fpmguard.service" {
		t.Errorf("fpmguard.service is not enabled: %q %v", target, err)
	}
	if got := in("/usr/bin/fpmguard", "version"); !strings.HasPrefix(got, "fpmguard "+b.version+" (") {
		t.Errorf("fpmguard version: %q, want fpmguard %s", got, b.version)
	}

	t.Run("man", func(t *testing.T) {
		if got := strings.TrimSpace(in("man", "-w", "fpmguard")); got != "/usr/share/man/man1/fpmguard.1.gz" {
			t.Errorf("man -w fpmguard: %q", got)
		}
		page := in("env", "MANWIDTH=80", "man", "-P", "cat", "fpmguard")
		for _, want := range []string{"fpmguard - Supervisor, prober and exporter", "--kill-hung-after", "serve [<flags>]", b.version} {
			if !strings.Contains(page, want) {
				t.Errorf("man fpmguard lacks %q:\n%s", want, page)
			}
		}
	})
	t.Run("bash completion", func(t *testing.T) {
		// bash-completion loads a command's completion from its own
		// directory on first use: __load_completion finds it, and the
		// script then asks fpmguard itself.
		out := in("bash", "-c", `. /usr/share/bash-completion/bash_completion
__load_completion fpmguard || { echo "not found"; exit 1; }
complete -p fpmguard
COMP_WORDS=(fpmguard serve --kill); COMP_CWORD=2; _fpmguard_bash_autocomplete
echo "${COMPREPLY[@]}"`)
		if !regexp.MustCompile(`(?m)^complete( -o default)? -F _fpmguard_bash_autocomplete( -o default)? fpmguard$`).MatchString(out) || !strings.Contains(out, "--kill-hung-after") {
			t.Errorf("bash completion:\n%s", out)
		}
	})
	t.Run("zsh completion", func(t *testing.T) {
		// compinit reads every #compdef of zsh's function path.
		out := in("zsh", "-fc", `autoload -Uz compinit && compinit -u -D && print -r -- "${_comps[fpmguard]}"`)
		if strings.TrimSpace(out) != "_fpmguard" {
			t.Errorf("zsh: the completion of fpmguard is %q, want _fpmguard", out)
		}
	})
	t.Run("systemd-analyze verify", func(t *testing.T) {
		// The root's own systemd checks the unit as installed: its
		// settings, ExecStart's binary and the man page it names.
		out, err := inNamespace(root, "systemd-analyze", "verify", "/usr/lib/systemd/system/fpmguard.service").CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
	t.Run("status and serve", func(t *testing.T) { statusAndServe(t, b, root) })

	// Upgrade (to the same version): the user's defaults file is kept.
	defaults := filepath.Join(root, "etc/default/fpmguard")
	edited, err := os.ReadFile(defaults)
	if err != nil {
		t.Fatal(err)
	}
	in("dpkg", "-i", deb)
	if again, _ := os.ReadFile(defaults); string(again) != string(edited) {
		t.Errorf("reinstalling changed /etc/default/fpmguard:\n%s", again)
	}
	// Remove: the binary goes; the conffile, the opcache directory and the
	// enabled state stay, the unit masked.
	in("dpkg", "-r", "fpmguard")
	for _, gone := range []string{"usr/bin/fpmguard", "usr/lib/systemd/system/fpmguard.service", "usr/share/man/man1/fpmguard.1.gz"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("dpkg -r left /%s", gone)
		}
	}
	for _, kept := range []string{"etc/default/fpmguard", "var/lib/fpmguard"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("dpkg -r removed /%s: %v", kept, err)
		}
	}
	if target, _ := os.Readlink(filepath.Join(root, "etc/systemd/system/fpmguard.service")); target != "/dev/null" {
		t.Errorf("after dpkg -r, fpmguard.service is not masked: %q", target)
	}
	// Purge: nothing of fpmguard's is left, but for man's cache of the
	// page shown above (man-db's, which its cron job cleans) and the
	// root's own labels.
	in("dpkg", "--purge", "fpmguard")
	out, _ := exec.Command("find", root+"/etc", root+"/var", root+"/usr", "-name", "*fpmguard*",
		"-not", "-path", root+"/var/cache/man/*", "-not", "-path", root+"/etc/fpmguard-rootfs", "-not", "-path", root+"/etc/fpmguard-package-root").CombinedOutput()
	if left := strings.TrimSpace(string(out)); left != "" {
		t.Errorf("dpkg --purge left:\n%s", left)
	}
}

// copyRoot copies the cached root for one test, which may change it.
func copyRoot(t *testing.T, cached string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cached, "etc", "fpmguard-package-root")); err != nil {
		t.Fatalf("no package test root at %s (make test-package makes it with .ci/package-deps): %v", cached, err)
	}
	root := filepath.Join(t.TempDir(), "root")
	run(t, "cp", "-a", "--one-file-system", cached, root)
	// php-fpm's workers (www-data) reach what is below it.
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// inNamespace runs a command in root, in a PID namespace of its own with
// its own /proc, as a container does: it sees only the processes it
// starts, and they all die with it. --kill-child ends the namespace when
// unshare is killed.
func inNamespace(root string, argv ...string) *exec.Cmd {
	cmd := exec.Command("unshare", append([]string{"--fork", "--pid", "--kill-child", "--mount-proc=" + filepath.Join(root, "proc"), "chroot", root}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"}
	return cmd
}

// scenario is what an administrator does after installing: turn on the
// status page and ping of Debian's www pool, start php-fpm, look with
// fpmguard status, and start the service as its unit does, with the flags
// of /etc/default/fpmguard.
const scenario = `set -eu
sed -i 's|^;pm.status_path = .*|pm.status_path = /status|; s|^;ping.path = .*|ping.path = /ping|' /etc/php/8.2/fpm/pool.d/www.conf
mkdir -p /run/php
/usr/sbin/php-fpm8.2 --fpm-config /etc/php/8.2/fpm/php-fpm.conf
i=0
while [ ! -S /run/php/php8.2-fpm.sock ]; do
	i=$((i + 1)); [ $i -lt 600 ] || { echo "php-fpm8.2 did not start" >&2; exit 1; }
	sleep 0.1
done
/usr/bin/fpmguard status --color=never >/tmp/status.out 2>&1 || echo "exit $?" >>/tmp/status.out
. /etc/default/fpmguard
exec %s
`

func statusAndServe(t *testing.T, b build, root string) {
	// The unit's ExecStart, as written in the installed unit.
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/fpmguard.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("the installed unit has no ExecStart")
	}
	// The administrator moves the listener to a free port on loopback.
	port := freePort(t)
	defaults := filepath.Join(root, "etc/default/fpmguard")
	conf, err := os.ReadFile(defaults)
	if err != nil {
		t.Fatal(err)
	}
	conf = regexp.MustCompile(`(?m)^ARGS=""$`).ReplaceAll(conf, []byte(`ARGS="--web.listen-address=127.0.0.1:`+port+`"`))
	if err := os.WriteFile(defaults, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp/scenario.sh"), fmt.Appendf(nil, scenario, m[1]), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := inNamespace(root, "/bin/sh", "/tmp/scenario.sh")
	logFile, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	}
	defer stop()
	serveLog := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }

	// The service watches the pool it discovered: healthy, with the
	// version and the commit in fpmguard_build_info.
	url := "http://127.0.0.1:" + port + "/metrics"
	var metrics string
	deadline := time.Now().Add(60 * time.Second)
	for {
		metrics = get(url)
		if regexp.MustCompile(`(?m)^phpfpm_pool_health\{health="ok",master="[^"]*",pool="www"\} 1$`).MatchString(metrics) {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the scenario ended: %v\n%s", err, serveLog())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy pool www at %s after 60 s:\n%s\nlog:\n%s", url, metrics, serveLog())
		}
	}
	buildInfo := regexp.MustCompile(`(?m)^fpmguard_build_info\{(.*)\} 1$`).FindStringSubmatch(metrics)
	if buildInfo == nil {
		t.Fatalf("no fpmguard_build_info:\n%s", metrics)
	}
	for _, want := range []string{`version="` + b.version + `"`, `revision="` + b.revision + `"`} {
		if !strings.Contains(buildInfo[1], want) {
			t.Errorf("fpmguard_build_info{%s} lacks %s", buildInfo[1], want)
		}
	}
	if !regexp.MustCompile(`(?m)^phpfpm_pool_utilization_ratio\{master="[^"]*",pool="www"\} `).MatchString(metrics) {
		t.Errorf("no phpfpm_pool_utilization_ratio for www:\n%s", metrics)
	}
	status, err := os.ReadFile(filepath.Join(root, "tmp/status.out"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "pool www  unix:///run/php/php8.2-fpm.sock  OK\n") {
		t.Errorf("fpmguard status does not show pool www OK:\n%s", status)
	}
	t.Logf("fpmguard status in the root:\n%s", status)
	// The opcache script went where the package made room for it.
	if scripts, _ := filepath.Glob(filepath.Join(root, "var/lib/fpmguard/fpmguard-opcache-*.php")); len(scripts) != 1 {
		t.Errorf("opcache scripts in /var/lib/fpmguard: %q", scripts)
	}

	// Ending the namespace ends php-fpm too: nothing is left running in
	// the root.
	stop()
	deadline = time.Now().Add(30 * time.Second)
	for left := processesIn(root); len(left) > 0; left = processesIn(root) {
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still run in the root 30 s after its namespace ended", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processesIn lists the processes whose root directory is root.
func processesIn(root string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if r, err := os.Readlink("/proc/" + e.Name() + "/root"); err == nil && r == root {
			pids = append(pids, pid)
		}
	}
	return pids
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// get returns the body of a GET, or "" when nothing answers.
func get(url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
