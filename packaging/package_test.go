// Package packaging holds no Go code: its tests check what make package
// and make image build, as a user installs it. make test-package builds
// them and runs these tests with FPMGUARD_PACKAGE set; without it, all but
// the version mapping's skip.
package packaging

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// build is what make test-package built, from its environment.
type build struct {
	dist       string // the packages and SHA256SUMS
	version    string // git describe: what fpmguard version says
	pkgVersion string // its spelling for dpkg and rpm
	revision   string // the commit
	image      string // NAME:VERSION in buildah's vfs storage
	root       string // the clean Debian bookworm root, with php8.2-fpm
}

// artifacts reads make test-package's environment, or skips the test.
func artifacts(t *testing.T) build {
	t.Helper()
	dist := os.Getenv("FPMGUARD_PACKAGE")
	if dist == "" {
		t.Skip("FPMGUARD_PACKAGE is not set: make test-package builds the packages and the image, then runs this")
	}
	b := build{dist: dist}
	for _, v := range []struct {
		env string
		to  *string
	}{
		{"FPMGUARD_VERSION", &b.version},
		{"FPMGUARD_REVISION", &b.revision},
		{"FPMGUARD_IMAGE", &b.image},
		{"FPMGUARD_PACKAGE_ROOT", &b.root},
	} {
		*v.to = os.Getenv(v.env)
		if *v.to == "" {
			t.Fatalf("FPMGUARD_PACKAGE is set, and %s is not: run make test-package", v.env)
		}
	}
	b.pkgVersion = packageVersion(t, b.version)
	return b
}

// packageVersion is version's spelling for dpkg and rpm, from the script
// make package uses.
func packageVersion(t *testing.T, version string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "sh", "version.sh", "package", version))
}

// run runs a command and returns its stdout, failing the test with its
// stderr when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := command(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// command runs a command and returns its stdout and stderr together.
func command(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// debArch and rpmArch name GOARCH in each package format.
var (
	debArch = map[string]string{"amd64": "amd64", "arm64": "arm64"}
	rpmArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}
	elfArch = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
)

// goarchs are the architectures make package builds for.
var goarchs = []string{"amd64", "arm64"}

func (b build) deb(goarch string) string {
	return filepath.Join(b.dist, "fpmguard_"+b.pkgVersion+"-1_"+debArch[goarch]+".deb")
}

func (b build) rpm(goarch string) string {
	return filepath.Join(b.dist, "fpmguard-"+b.pkgVersion+"-1."+rpmArch[goarch]+".rpm")
}

// checkBinary checks a packaged fpmguard: a static executable of goarch,
// built with this version and revision. It returns the binary's sha256.
func checkBinary(t *testing.T, b build, where string, bin []byte, goarch string) string {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: not an ELF file: %v", where, err)
	}
	if f.Machine != elfArch[goarch] {
		t.Errorf("%s: built for %s, want %s", where, f.Machine, elfArch[goarch])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked; make package builds with CGO_ENABLED=0", where)
		}
	}
	// The version and the commit, set by -ldflags -X (which -trimpath
	// keeps out of the build information).
	for _, want := range []string{b.version, b.revision} {
		if !bytes.Contains(bin, []byte(want)) {
			t.Errorf("%s: %s is not in the binary", where, want)
		}
	}
	tmp := filepath.Join(t.TempDir(), "fpmguard")
	if err := os.WriteFile(tmp, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(tmp)
	if err != nil {
		t.Fatalf("%s: no Go build information: %v", where, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["GOARCH"] != goarch || settings["-trimpath"] != "true" {
		t.Errorf("%s: CGO_ENABLED=%s GOARCH=%s -trimpath=%s, want 0, %s and true", where, settings["CGO_ENABLED"], settings["GOARCH"], settings["-trimpath"], goarch)
	}
	sum := sha256.Sum256(bin)
	return hex.EncodeToString(sum[:])
}

// debBinary is /usr/bin/fpmguard of the .deb of goarch.
func debBinary(t *testing.T, b build, goarch string) []byte {
	t.Helper()
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", b.deb(goarch), dir)
	bin, err := os.ReadFile(filepath.Join(dir, "usr", "bin", "fpmguard"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestChecksums: SHA256SUMS holds every package, and they match it.
func TestChecksums(t *testing.T) {
	b := artifacts(t)
	var want []string
	for _, goarch := range goarchs {
		want = append(want, filepath.Base(b.deb(goarch)), filepath.Base(b.rpm(goarch)))
	}
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = b.dist
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
	for _, name := range want {
		if !strings.Contains(string(out), name+": OK\n") {
			t.Errorf("SHA256SUMS does not check %s:\n%s", name, out)
		}
	}
	if n := strings.Count(string(out), ": OK\n"); n != len(want) {
		t.Errorf("SHA256SUMS checks %d files, want %d:\n%s", n, len(want), out)
	}
}

// hostArch is the GOARCH of the packages this machine can run.
var hostArch = runtime.GOARCH
