package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rpmFiles is every file of the .rpm: path, mode, owner, group and flags
// (c: config, n: noreplace).
var rpmFiles = []string{
	"/etc/sysconfig/fpmguard -rw-r--r-- root root cn",
	"/usr/bin/fpmguard -rwxr-xr-x root root ",
	"/usr/lib/systemd/system/fpmguard.service -rw-r--r-- root root ",
	"/usr/share/bash-completion/completions/fpmguard -rw-r--r-- root root ",
	"/usr/share/man/man1/fpmguard.1.gz -rw-r--r-- root root ",
	"/usr/share/zsh/site-functions/_fpmguard -rw-r--r-- root root ",
	"/var/lib/fpmguard drwxr-xr-x root root ",
}

// TestRPM: each .rpm holds what it should, its scripts do what RPM
// distributions do with a service (not enabled on install), and its
// binary is the .deb's.
func TestRPM(t *testing.T) {
	b := artifacts(t)
	for _, goarch := range goarchs {
		t.Run(goarch, func(t *testing.T) {
			rpm := b.rpm(goarch)
			got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", rpm)
			if want := "fpmguard " + b.pkgVersion + " 1 " + rpmArch[goarch]; got != want {
				t.Errorf("%s: %q, want %q", filepath.Base(rpm), got, want)
			}
			list := strings.Split(strings.TrimSpace(run(t, "rpm", "-qlp", rpm)), "\n")
			var want []string
			for _, f := range rpmFiles {
				want = append(want, strings.Fields(f)[0])
			}
			if !slices.Equal(list, want) {
				t.Errorf("rpm -qlp %s:\n%s\nwant:\n%s", filepath.Base(rpm), strings.Join(list, "\n"), strings.Join(want, "\n"))
			}
			files := strings.Split(strings.TrimSuffix(run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]", rpm), "\n"), "\n")
			if !slices.Equal(files, rpmFiles) {
				t.Errorf("%s's files:\n%s\nwant:\n%s", filepath.Base(rpm), strings.Join(files, "\n"), strings.Join(rpmFiles, "\n"))
			}

			scripts := rpmScripts(t, run(t, "rpm", "-qp", "--scripts", rpm))
			for _, tt := range []struct{ script, want string }{
				{"postinstall", "systemctl --no-reload preset fpmguard.service"},
				{"preuninstall", "systemctl --no-reload disable fpmguard.service"},
				{"postuninstall", "systemctl try-restart fpmguard.service"},
			} {
				if !strings.Contains(scripts[tt.script], tt.want) {
					t.Errorf("%s scriptlet lacks %q:\n%s", tt.script, tt.want, scripts[tt.script])
				}
			}
			for name, body := range scripts {
				if rpmEnables.MatchString(body) {
					t.Errorf("%s scriptlet enables or starts the service, which RPM distributions leave to a preset:\n%s", name, body)
				}
			}

			dir := t.TempDir()
			cpio := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio --quiet -idm ./usr/bin/fpmguard`, "sh", rpm)
			cpio.Dir = dir
			if out, err := cpio.CombinedOutput(); err != nil {
				t.Fatalf("rpm2cpio %s: %v\n%s", filepath.Base(rpm), err, out)
			}
			bin, err := os.ReadFile(filepath.Join(dir, "usr", "bin", "fpmguard"))
			if err != nil {
				t.Fatal(err)
			}
			sum := checkBinary(t, b, filepath.Base(rpm), bin, goarch)
			if debSum := checkBinary(t, b, "the .deb", debBinary(t, b, goarch), goarch); sum != debSum {
				t.Errorf("the .rpm's binary (sha256 %s) is not the .deb's (%s)", sum, debSum)
			}
		})
	}
}

// rpmEnables matches a command that enables or starts a unit.
var rpmEnables = regexp.MustCompile(`(?m)^[^#]*systemctl\b[^\n]*\s(enable|start)\b`)

// rpmScripts splits rpm -qp --scripts into its scriptlets by name
// ("postinstall scriptlet (using /bin/sh):").
func rpmScripts(t *testing.T, out string) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if n, ok := strings.CutSuffix(strings.TrimSpace(line), " scriptlet (using /bin/sh):"); ok {
			name = n
			continue
		}
		if name == "" {
			t.Fatalf("rpm --scripts: text before any scriptlet: %q", line)
		}
		scripts[name] += line
	}
	return scripts
}
