package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/watch"
	fpmweb "github.com/fpmguard/fpmguard/web"
)

// helpOf is `fpmguard CMD --help`.
func helpOf(t *testing.T, cmd string) string {
	t.Helper()
	code, out, stderr := runCLI(t, append(strings.Fields(cmd), "--help")...)
	if code != 0 || stderr != "" {
		t.Fatalf("%s --help: exit %d, stderr %q", cmd, code, stderr)
	}
	return out
}

// TestHelp reads --help as a whole: no double negative, each command's
// own flags and no other, the version, and a repeatable argument shown
// as such.
func TestHelp(t *testing.T) {
	var c cli
	m := newApp(&c).Model()
	cmds := []string{""}
	var walk func(cs []*kingpin.CmdModel)
	walk = func(cs []*kingpin.CmdModel) {
		for _, c := range cs {
			cmds = append(cmds, c.FullCommand)
			walk(c.Commands)
		}
	}
	walk(m.Commands)
	for _, cmd := range cmds {
		help := helpOf(t, cmd)
		if strings.Contains(help, "[no-]no-") {
			t.Errorf("%q --help shows a double negative:\n%s", cmd, help)
		}
		if !strings.Contains(help, "--[no-]version") {
			t.Errorf("%q --help does not offer --version", cmd)
		}
	}
	if help := helpOf(t, "version"); regexp.MustCompile(`--(timeout|opcache-dir|pool|config)`).MatchString(help) {
		t.Errorf("version --help shows flags of other commands:\n%s", help)
	}
	if help := helpOf(t, "opcache status"); regexp.MustCompile(`--(hung-after|show-query|log\.level)`).MatchString(help) {
		t.Errorf("opcache status --help shows flags it does not use:\n%s", help)
	}
	if help := helpOf(t, "opcache invalidate"); !strings.Contains(help, "[<path>...]  Absolute paths") || !strings.Contains(help, "usage: fpmguard opcache invalidate [<flags>] [<path>...]") {
		t.Errorf("opcache invalidate --help does not show that it takes several paths:\n%s", help)
	}
	// The list of commands shows each one's summary; status's own help
	// says its exit status.
	if help := helpOf(t, ""); strings.Contains(help, "/healthz") || strings.Contains(help, "Exit status") {
		t.Errorf("the list of commands shows more than summaries:\n%s", help)
	}
	if help := helpOf(t, "status"); !strings.Contains(help, "Exit status: 0 when every pool serves (OK or DEGRADED), 3 when a pool or an\nopcache is UNHEALTHY or DOWN") {
		t.Errorf("status --help does not give its exit status:\n%s", help)
	}

	// --version prints the version alone (TestVersionFlag); every
	// command's help offers it.
}

// TestServeHelpNamesEveryEndpoint: serve's help has a line for each of
// its endpoints: each answers, and the index page links none that the
// help leaves out.
func TestServeHelpNamesEveryEndpoint(t *testing.T) {
	help := helpOf(t, "serve")
	re := regexp.MustCompile(`(?m)^  (/[a-z]*) +\S`)
	var paths []string
	for _, m := range re.FindAllStringSubmatch(help, -1) {
		paths = append(paths, m[1])
	}
	if len(paths) < 10 {
		t.Fatalf("serve --help names %d endpoints: %q\n%s", len(paths), paths, help)
	}
	handler := fpmweb.WithControl(fpmweb.NewHTTPHandler(func() fpmweb.Source { return nil }, http.NotFoundHandler(), "/metrics"),
		func() watch.Control { return nil }, fpmweb.Policy{})
	for _, p := range paths {
		if p == "/metrics" {
			continue // the handler given above
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost"+p, nil))
		if rec.Code == http.StatusNotFound {
			t.Errorf("serve --help names %s, which answers 404", p)
		}
	}
	// The status page at / links the endpoints: each is in the help.
	index := httptest.NewRecorder()
	fpmweb.NewHTTPHandler(func() fpmweb.Source { return nil }, nil, "/metrics").ServeHTTP(index, httptest.NewRequest(http.MethodGet, "http://localhost/", nil))
	links := regexp.MustCompile(`href="\.(/[a-z]+)"`).FindAllStringSubmatch(index.Body.String(), -1)
	if len(links) < 5 {
		t.Fatalf("the page at / links %d endpoints:\n%s", len(links), index.Body.String())
	}
	for _, m := range links {
		if !strings.Contains(help, "\n  "+m[1]+" ") {
			t.Errorf("the page at / links %s, which serve --help does not name", m[1])
		}
	}
}

// TestHelpToAClosedPipe: `fpmguard --help | head` ends quietly: kingpin
// panics when it cannot write the usage.
func TestHelpToAClosedPipe(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"--version"}} {
		code := run(t.Context(), args, failingWriter{}, failingWriter{})
		if code != 0 {
			t.Errorf("%q to a closed pipe: exit %d", args, code)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }
