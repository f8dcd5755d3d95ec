package fpmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// The version matrix: tests run a pool of each PHP version the field runs.
// The host's php-fpm is 8.2; the other versions are Debian's own builds,
// run with chroot in a root filesystem that .ci/install-deps (.ci/rootfs)
// builds once and caches. A master in a chroot lives in another root,
// exactly as php-fpm in another container of a pod does: fpmguard sees it
// only through /proc/PID/root.

// Versions lists the PHP versions of the matrix, oldest first.
var Versions = []string{"7.4", "8.2", "8.4"}

// HostVersion is the version run from the host's own php-fpm; an empty
// Options.Version means it too.
const HostVersion = "8.2"

// rootSuites names the Debian suite each chroot version comes from, for
// messages; .ci/rootfs holds the same list.
var rootSuites = map[string]string{"7.4": "bullseye", "8.4": "trixie"}

// DefaultRootfsCache is where .ci/rootfs caches the roots unless
// FPMGUARD_ROOTFS says otherwise.
const DefaultRootfsCache = "/var/cache/fpmguard-test"

// HasStatusListen reports whether PHP version v has pm.status_listen:
// php-fpm 8.0 brought it, and an older php-fpm refuses the config.
func HasStatusListen(v string) bool { return v != "7.4" }

// ForEachVersion runs fn as a subtest named after each version of the
// matrix, and logs which php-fpm each one runs.
func ForEachVersion(t *testing.T, fn func(t *testing.T, v string)) {
	t.Helper()
	t.Logf("php-fpm matrix: %s", MatrixLine())
	for _, v := range Versions {
		t.Run(v, func(t *testing.T) { fn(t, v) })
	}
}

// MatrixLine names the php-fpm each version of the matrix runs, e.g.
// "7.4.33, 8.2.36, 8.4.27", and what is missing.
func MatrixLine() string {
	var parts []string
	for _, v := range Versions {
		rt, err := buildOf(v)
		if err != nil {
			parts = append(parts, v+" (missing: run .ci/install-deps)")
			continue
		}
		parts = append(parts, rt.phpVersion)
	}
	return strings.Join(parts, ", ")
}

// fpmBuild is how a version's php-fpm is started.
type fpmBuild struct {
	root       string // the root filesystem, "" for the host's
	binary     string // php-fpm as the host sees it
	inRoot     string // php-fpm as the chroot sees it
	phpVersion string // as php-fpm -v reports it
}

var builds sync.Map // version -> *buildResult

type buildResult struct {
	once sync.Once
	rt   fpmBuild
	err  error
}

// buildOf finds version v's php-fpm and asks it its version, once per
// binary and test binary. The host's binary is looked up each time: a test
// may point PHP_FPM at another.
func buildOf(v string) (fpmBuild, error) {
	key, host := v, ""
	if v == "" || v == HostVersion {
		bin, err := Binary()
		if err != nil {
			return fpmBuild{}, err
		}
		key, host = "host:"+bin, bin
	}
	r, _ := builds.LoadOrStore(key, &buildResult{})
	res := r.(*buildResult)
	res.once.Do(func() { res.rt, res.err = findBuild(v, host) })
	return res.rt, res.err
}

// findBuild finds version v's php-fpm: host, the host's binary, when v is
// the host's version.
func findBuild(v, host string) (fpmBuild, error) {
	if host != "" {
		pv, err := phpVersion(host)
		return fpmBuild{binary: host, inRoot: host, phpVersion: pv}, err
	}
	suite, ok := rootSuites[v]
	if !ok {
		return fpmBuild{}, fmt.Errorf("fpmtest: no PHP %q in the matrix; versions are %s", v, strings.Join(Versions, ", "))
	}
	if os.Geteuid() != 0 {
		return fpmBuild{}, fmt.Errorf("PHP %s runs with chroot in its own root: run the test as root", v)
	}
	root, err := Rootfs(v)
	if err != nil {
		return fpmBuild{}, err
	}
	rt := fpmBuild{root: root, inRoot: "/usr/sbin/php-fpm" + v}
	rt.binary = filepath.Join(root, rt.inRoot)
	if !isExec(rt.binary) {
		return fpmBuild{}, fmt.Errorf("PHP %s: %s is missing: run .ci/install-deps as root, which builds the %s root", v, rt.binary, suite)
	}
	rt.phpVersion, err = phpVersion(chrootBinary(), root, rt.inRoot)
	return rt, err
}

// Rootfs returns the root filesystem of PHP version v, after checking that
// only root may write to it and to the cache holding it: the tests run
// php-fpm from it as root.
func Rootfs(v string) (string, error) {
	cache := os.Getenv("FPMGUARD_ROOTFS")
	if cache == "" {
		cache = DefaultRootfsCache
	}
	root := filepath.Join(cache, "php"+v)
	for _, d := range []string{cache, root} {
		fi, err := os.Stat(d)
		if err != nil {
			return "", fmt.Errorf("PHP %s: no root filesystem at %s: run .ci/install-deps as root, which builds it (FPMGUARD_ROOTFS moves the cache)", v, root)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			return "", fmt.Errorf("PHP %s: %s must be a directory owned by root and writable by no one else; remove it and run .ci/install-deps", v, d)
		}
	}
	return root, nil
}

var versionRE = regexp.MustCompile(`^PHP (\d+\.\d+\.\d+)`)

// phpVersion runs `argv -v` and returns the version it prints.
func phpVersion(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], append(argv[1:], "-v")...).Output()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w", strings.Join(argv, " "), err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s -v printed no version: %q", strings.Join(argv, " "), out)
	}
	return string(m[1]), nil
}

// chrootBinary is chroot(1), which runs php-fpm in its root: it execs
// php-fpm, so the master keeps the pid the test started.
func chrootBinary() string { return lookBinary("chroot", "/usr/sbin/chroot") }

// InRoot returns the path php-fpm sees for hostPath, a path inside f's
// root; on the host, hostPath itself. It panics for a path outside the
// root: no php-fpm of f can see it.
func (f *FPM) InRoot(hostPath string) string {
	if f.Root == "" {
		return hostPath
	}
	rel, err := filepath.Rel(f.Root, hostPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		panic(fmt.Sprintf("fpmtest: %s lies outside the root %s", hostPath, f.Root))
	}
	return filepath.Join("/", rel)
}

// MasterName is the name fpmguard gives f's master when it discovers it:
// its config as php-fpm sees it, after its root's path on the host when it
// has a root of its own.
func (f *FPM) MasterName() string {
	if f.Root == "" {
		return f.Conf
	}
	return f.Root + "/" + f.InRoot(f.Conf)
}

// Script is the SCRIPT_FILENAME of a file of the document root, as php-fpm
// sees it.
func (f *FPM) Script(name string) string { return f.InRoot(filepath.Join(f.DocRoot, name)) }

// rootDir returns a new directory for one test inside root, readable by
// the workers, removed when the test ends (after php-fpm has stopped: the
// cleanups registered later run first). Its name is short: socket paths
// below it must fit a sockaddr_un.
func rootDir(t testing.TB, root string) string {
	t.Helper()
	base := filepath.Join(root, "fpmtest")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the test directory in the root: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Which test left a directory behind, should one be left.
	if err := os.WriteFile(filepath.Join(dir, "test"), []byte(t.Name()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Command runs name, a path inside f's root, the way a process of the
// same container runs. php-fpm of a version in a root runs as in a
// container of its own: chrooted, in a mount namespace of its own with a
// /proc mounted in the root (the host's mounts and the cached root stay as
// they are). While the master runs, Command enters its mount namespace,
// root and working directory (nsenter); before or after, a new namespace
// like it. Either way the /proc shows the host's PID namespace, as a pod's
// with shareProcessNamespace does: pids are the host's. On the host it is
// exec.Command(name, args...).
func (f *FPM) Command(name string, args ...string) *exec.Cmd {
	if f.Root == "" {
		return exec.Command(name, args...)
	}
	if f.cmd != nil && f.cmd.Process != nil && !f.exited() {
		argv := append([]string{"--target", strconv.Itoa(f.MasterPID()), "--mount", "--root", "--wd", "--", name}, args...)
		return exec.Command(lookBinary("nsenter", "/usr/bin/nsenter"), argv...)
	}
	return f.newNamespace(append([]string{name}, args...)...)
}

// newNamespace runs argv, paths inside f's root, chrooted in a new mount
// namespace with its own /proc. unshare execs chroot, which execs argv: the
// process keeps the pid the caller started.
func (f *FPM) newNamespace(argv ...string) *exec.Cmd {
	args := append([]string{"--mount", "--propagation", "private", "--mount-proc=" + filepath.Join(f.Root, "proc"), chrootBinary(), f.Root}, argv...)
	return exec.Command(lookBinary("unshare", "/usr/bin/unshare"), args...)
}

func (f *FPM) exited() bool {
	select {
	case <-f.waited:
		return true
	default:
		return false
	}
}

// lookBinary finds name on PATH, else returns fallback.
func lookBinary(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return fallback
}
