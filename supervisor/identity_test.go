package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func TestMasterName(t *testing.T) {
	sock := fastcgi.Address{Network: "unix", Addr: "/run/php/www.sock"}
	inRoot := fastcgi.Address{Network: "unix", Addr: "/proc/4242/root/run/php/www.sock", Root: "/proc/4242/root"}
	for _, tt := range []struct {
		name string
		t    Target
		want string
	}{
		{"config", Target{MasterConfig: "/etc/php/8.2/fpm/php-fpm.conf", Address: sock}, "/etc/php/8.2/fpm/php-fpm.conf"},
		{"config not clean", Target{MasterConfig: "/etc/php/8.2/fpm/../fpm//php-fpm.conf", Address: sock}, "/etc/php/8.2/fpm/php-fpm.conf"},
		{"chroot", Target{MasterConfig: "/etc/php/7.4/fpm/php-fpm.conf", Root: "/proc/4242/root", RootName: "/srv/php74", Address: inRoot}, "/srv/php74//etc/php/7.4/fpm/php-fpm.conf"},
		{"container", Target{MasterConfig: "/usr/local/etc/php-fpm.conf", Root: "/proc/4242/root", RootName: "root:0:45:256", Address: inRoot}, "root:0:45:256//usr/local/etc/php-fpm.conf"},
		{"pid file", Target{MasterPIDFile: "/run/php/php8.2-fpm.pid", Address: sock}, "/run/php/php8.2-fpm.pid"},
		{"address", Target{Address: sock}, "unix:///run/php/www.sock"},
		{"address in a root", Target{Root: "/proc/4242/root", Address: inRoot}, "unix:///run/php/www.sock"},
		{"tcp", Target{Address: fastcgi.Address{Network: "tcp", Addr: "127.0.0.1:9000"}}, "tcp://127.0.0.1:9000"},
	} {
		if got := tt.t.MasterName(); got != tt.want {
			t.Errorf("%s: MasterName() = %q, want %q", tt.name, got, tt.want)
		}
		if strings.Contains(tt.t.MasterName(), "4242") {
			t.Errorf("%s: %q names the pid", tt.name, tt.t.MasterName())
		}
	}
}

func TestScrapeURIInRoot(t *testing.T) {
	tg := Target{Root: "/proc/4242/root", StatusPath: "/status",
		Address:       fastcgi.Address{Network: "unix", Addr: "/proc/4242/root/run/php/www.sock", Root: "/proc/4242/root"},
		StatusAddress: fastcgi.Address{Network: "unix", Addr: "/proc/4242/root/run/php/www-status.sock", Root: "/proc/4242/root"}}
	if got := tg.ScrapeURI(); got != "unix:///run/php/www-status.sock;/status" {
		t.Errorf("ScrapeURI() = %q", got)
	}
	host := Target{StatusPath: "/status", Address: fastcgi.Address{Network: "tcp", Addr: "127.0.0.1:9000"}}
	if got := host.ScrapeURI(); got != "tcp://127.0.0.1:9000;/status" {
		t.Errorf("ScrapeURI() = %q", got)
	}
}

func TestFindPool(t *testing.T) {
	www74 := PoolID{"www", "/srv/php74//etc/php/7.4/fpm/php-fpm.conf"}
	www82 := PoolID{"www", "/etc/php/8.2/fpm/php-fpm.conf"}
	api := PoolID{"api", "/etc/php/8.2/fpm/php-fpm.conf"}
	odd := PoolID{"a@b", "/etc/odd.conf"}
	ids := []PoolID{www74, www82, api, odd}
	for _, tt := range []struct {
		ref  string
		want PoolID
		err  error
	}{
		{"api", api, nil},
		{"api@/etc/php/8.2/fpm/php-fpm.conf", api, nil},
		{"www@/etc/php/8.2/fpm/php-fpm.conf", www82, nil},
		{"www@/srv/php74//etc/php/7.4/fpm/php-fpm.conf", www74, nil},
		// The config as php-fpm sees it, inside its root.
		{"www@/etc/php/7.4/fpm/php-fpm.conf", www74, nil},
		{"a@b", odd, nil},
		{"a@b@/etc/odd.conf", odd, nil},
		{"www", PoolID{}, ErrAmbiguousPool},
		{"www@/etc/php/8.4/fpm/php-fpm.conf", PoolID{}, ErrUnknownPool},
		{"www@", PoolID{}, ErrUnknownPool},
		{"www@php-fpm.conf", PoolID{}, ErrUnknownPool},
		{"nope", PoolID{}, ErrUnknownPool},
		{"", PoolID{}, ErrUnknownPool},
	} {
		got, err := FindPool(ids, tt.ref)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("FindPool(%q) = %v, %v; want %v, %v", tt.ref, got, err, tt.want, tt.err)
		}
	}
	// The refusal names every pool to choose from.
	_, err := FindPool(ids, "www")
	for _, want := range []string{`pool "www"`, "2 masters", www74.String(), www82.String()} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestLabels(t *testing.T) {
	a, b := PoolID{"www", "/etc/php/7.4/fpm/php-fpm.conf"}, PoolID{"www", "/etc/php/8.2/fpm/php-fpm.conf"}
	api := PoolID{"api", "/etc/php/8.2/fpm/php-fpm.conf"}
	l := Labels([]PoolID{a, b, api})
	if l[a] != "www@/etc/php/7.4/fpm/php-fpm.conf" || l[b] != "www@/etc/php/8.2/fpm/php-fpm.conf" || l[api] != "api" {
		t.Errorf("Labels = %v", l)
	}
	if l := Labels([]PoolID{b, api}); l[b] != "www" {
		t.Errorf("one www: Labels = %v", l)
	}
}

// rootTag is how rootName names a root no path of fpmguard's reaches.
var rootTag = regexp.MustCompile(`^root:\d+:\d+:\d+$`)

// TestRootName names roots as discovery meets them: a chroot by its path
// on the host, and a root that another mount namespace mounted where no
// path of fpmguard's reaches it (a container's) by its device and inode.
// Both names stay when the process in that root is started again with
// another pid.
func TestRootName(t *testing.T) {
	if rootName("") != "" {
		t.Error(`rootName("") is not ""`)
	}
	dir := t.TempDir()
	if got := rootName(dir); got != dir {
		t.Errorf("rootName(%s) = %q", dir, got)
	}
	rootfs, err := fpmtest.Rootfs("7.4")
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("chroot and mount namespaces need root")
	}
	if err != nil {
		fpmtest.RequireIntegration(t, err.Error())
	}
	// In another mount namespace, the root is bound to a directory that is
	// empty in fpmguard's: the kernel names that directory, which here is
	// another one.
	mnt := t.TempDir()
	chroot := func(t *testing.T, argv ...string) string {
		t.Helper()
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		pid := cmd.Process.Pid
		// Once the process has its root: chroot execs sleep.
		return fpmtest.Poll(t, 10*time.Second, func() (string, bool) {
			exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
			root := "/proc/" + strconv.Itoa(pid) + "/root"
			return root, strings.HasSuffix(exe, "/sleep")
		})
	}
	for _, tt := range []struct {
		name string
		argv []string
		want func(string) bool
	}{
		{"chroot", []string{"chroot", rootfs, "/bin/sleep", "60"}, func(s string) bool { return s == rootfs }},
		{"another mount namespace", []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" "$1" && exec chroot "$1" /bin/sleep 60`, rootfs, mnt}, rootTag.MatchString},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := rootName(chroot(t, tt.argv...))
			again := rootName(chroot(t, tt.argv...))
			if !tt.want(first) || again != first || strings.Contains(first, "/proc/") {
				t.Errorf("rootName = %q, then %q for the same root", first, again)
			}
		})
	}
	if ents, err := os.ReadDir(mnt); err != nil || len(ents) > 0 {
		t.Errorf("the bind mount shows in fpmguard's namespace: %s holds %d entries (%v)", mnt, len(ents), err)
	}
}
