package packaging

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestVersionMapping: each form git describe gives, as dpkg and rpm spell
// it; and what version.sh refuses.
func TestVersionMapping(t *testing.T) {
	for _, tt := range []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-5-gabc1234", "1.2.3+5.gabc1234"},
		{"v1.2.3-5-gabc1234-dirty", "1.2.3+5.gabc1234.dirty"},
		{"v1.2.3-dirty", "1.2.3+0.dirty"},
		{"v1.0.0-rc.1", "1.0.0~rc.1"},
		{"v1.0.0-rc.1-3-gccccccc", "1.0.0~rc.1+3.gccccccc"},
		{"v1.0.0-beta-2", "1.0.0~beta.2"},
		{"v0.0.0-132-g6c71693", "0.0.0+132.g6c71693"},
		{"v2.0", "2.0"},
	} {
		if got := packageVersion(t, tt.describe); got != tt.want {
			t.Errorf("version.sh package %s = %q, want %q", tt.describe, got, tt.want)
		}
	}
	for _, bad := range []string{"dev", "6c71693", "vx.y", "v1.2.3;rm", "v1.2.3 -5", ""} {
		out, err := command("sh", "version.sh", "package", bad)
		if err == nil {
			t.Errorf("version.sh package %q = %q, want an error", bad, out)
		} else if !strings.Contains(out, "make package VERSION=vX.Y.Z") && bad != "" {
			t.Errorf("version.sh package %q: %q does not say what to do", bad, out)
		}
	}
}

// TestVersionOrder: versions in the order git gives them sort in that
// order in dpkg and in rpm, so each package upgrades the one before.
func TestVersionOrder(t *testing.T) {
	order := []string{
		"v0.0.0-5-gaaaaaaa",
		"v0.0.0-12-gbbbbbbb",
		"v1.0.0-rc.1",
		"v1.0.0-rc.1-3-gccccccc",
		"v1.0.0-rc.2",
		"v1.0.0",
		"v1.0.0-dirty",
		"v1.0.0-2-gddddddd",
		"v1.0.0-2-gddddddd-dirty",
		"v1.0.0-10-geeeeeee",
		"v1.0.1",
		"v1.10.0",
	}
	var pkg []string
	for _, v := range order {
		pkg = append(pkg, packageVersion(t, v))
	}
	dpkg, dpkgErr := exec.LookPath("dpkg")
	rpm, rpmErr := exec.LookPath("rpm")
	if dpkgErr != nil || rpmErr != nil {
		if os.Getenv("FPMGUARD_PACKAGE") != "" {
			t.Fatalf("dpkg or rpm not found (%v, %v): run make test-package", dpkgErr, rpmErr)
		}
		t.Skip("dpkg and rpm compare the versions: make test-package installs them")
	}
	for i := 1; i < len(pkg); i++ {
		a, b := pkg[i-1], pkg[i]
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (%s) is not older than %s (%s)", a, order[i-1], b, order[i])
		}
		// rpm's own comparison, through its Lua interpreter: -1 for older.
		out, err := exec.Command(rpm, "--eval", `%{lua: print(rpm.vercmp("`+a+`", "`+b+`"))}`).Output()
		if err != nil || strings.TrimSpace(string(out)) != "-1" {
			t.Errorf("rpm: %s (%s) is not older than %s (%s): %q %v", a, order[i-1], b, order[i], out, err)
		}
	}
}

// TestVersionFromGit: with no tag, the version is v0.0.0-N-gHASH, N the
// commits up to HEAD, as git describe would spell it after a v0.0.0 tag.
func TestVersionFromGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	script, err := os.ReadFile("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	describe := func() string {
		t.Helper()
		cmd := exec.Command("sh", "-c", string(script), "version.sh")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("version.sh: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	for i := range 3 {
		if err := os.WriteFile(dir+"/f", []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "f")
		git("commit", "-q", "-m", "c")
	}
	hash := git("rev-parse", "--short", "HEAD")
	if got := describe(); got != "v0.0.0-3-g"+hash {
		t.Errorf("no tag: %q, want v0.0.0-3-g%s", got, hash)
	}
	if err := os.WriteFile(dir+"/f", []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := describe(); got != "v0.0.0-3-g"+hash+"-dirty" {
		t.Errorf("no tag, changed file: %q, want v0.0.0-3-g%s-dirty", got, hash)
	}
	git("checkout", "-q", "f")
	git("tag", "v1.2.3", "HEAD~1")
	git("tag", "not-a-version") // only v* tags count
	if got := describe(); !regexp.MustCompile(`^v1\.2\.3-1-g[0-9a-f]+$`).MatchString(got) {
		t.Errorf("one commit after v1.2.3: %q", got)
	}
	git("tag", "v1.2.4")
	if got := describe(); got != "v1.2.4" {
		t.Errorf("on v1.2.4: %q", got)
	}
}
