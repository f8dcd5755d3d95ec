package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestManPage: --help-man is a man page and nothing else, with the
// version in its title line, a NAME line whatis(1) can read, and every
// command.
func TestManPage(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--help-man").Output()
	if err != nil {
		t.Fatalf("fpmguard --help-man: %v", err)
	}
	page := string(out)
	if !strings.HasPrefix(page, ".TH fpmguard 1 dev ") {
		t.Errorf("title line %q, want .TH fpmguard 1 VERSION", strings.SplitN(page, "\n", 2)[0])
	}
	if !strings.Contains(page, ".SH \"NAME\"\nfpmguard \\- Supervisor, prober and exporter for php-fpm and its opcache.\n") {
		t.Errorf("NAME is not `fpmguard \\- summary` (kingpin's template changed?):\n%.300s", page)
	}
	for _, cmd := range []string{"status", "check", "opcache status", "top", "advise", "serve", "run", "version"} {
		if !strings.Contains(page, "\n\\fB"+cmd) {
			t.Errorf("the man page has no section for %s", cmd)
		}
	}
	// The usage kingpin prints when no command follows stays out.
	if strings.Contains(page, "usage:") {
		t.Errorf("the man page holds the usage text:\n%s", page[strings.Index(page, "usage:"):])
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "--warnings", "-l", "-")
		cmd.Stdin = bytes.NewReader(out)
		cmd.Env = append(cmd.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
		text, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(text), "fpmguard - Supervisor") {
			t.Errorf("man -l: %v\n%.500s", err, text)
		}
	}
}

// TestCompletion: the completion scripts are scripts only, and the shell's
// calls back into fpmguard complete commands and flags.
func TestCompletion(t *testing.T) {
	bin := buildBinary(t)
	for _, tt := range []struct {
		args        []string
		first, last string // first and last line
	}{
		{[]string{"--completion-script-bash"}, "", "complete -F _fpmguard_bash_autocomplete -o default fpmguard"},
		{[]string{"--completion-script-zsh"}, "#compdef fpmguard", "fi"},
	} {
		out, err := exec.Command(bin, tt.args...).Output()
		if err != nil {
			t.Fatalf("fpmguard %s: %v", tt.args, err)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if lines[0] != tt.first || lines[len(lines)-1] != tt.last {
			t.Errorf("fpmguard %s: first line %q, last %q; want %q, %q:\n%s", tt.args, lines[0], lines[len(lines)-1], tt.first, tt.last, out)
		}
	}
	// What bash's script asks, as the user types `fpmguard st<TAB>`,
	// `fpmguard serve --kill<TAB>` and `fpmguard opcache <TAB>`.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"st"}, "status"},
		{[]string{"serve", "--kill"}, "--kill-hung-after"},
		{[]string{"opcache"}, "invalidate"},
	} {
		out, err := exec.Command(bin, append([]string{"--completion-bash"}, tt.args...)...).CombinedOutput()
		if err != nil || !strings.Contains("\n"+string(out)+"\n", "\n"+tt.want+"\n") {
			t.Errorf("fpmguard --completion-bash %s: %v, want %s among:\n%s", tt.args, err, tt.want, out)
		}
	}
}

// TestVersionFlag: --version prints the version alone, which the version
// command prints first.
func TestVersionFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"--version"}, &out, &errOut); code != 0 || errOut.Len() > 0 {
		t.Fatalf("--version: exit %d, stderr %q", code, errOut.String())
	}
	if out.String() != version+"\n" {
		t.Errorf("--version printed %q, want %q", out.String(), version+"\n")
	}
	out.Reset()
	if code := run(t.Context(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "fpmguard "+version+" (") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
}
