package main

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/watch"
	fpmweb "github.com/fpmguard/fpmguard/web"
	"github.com/prometheus/client_golang/prometheus"
)

// The docs are held to the code where they can drift: the metric
// reference, the vocabularies, the flags they name, the binary they run,
// their links, and the README's length.

// repo is the repository's root, from this package's directory.
const repo = "../.."

// ownDocs are the pages these tests hold to the code: the README, every
// page of docs/ but those other work writes (listed in pendingDocs until
// it lands), and the examples that run fpmguard.
func ownDocs(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs: %v", err)
	}
	var out []string
	for _, p := range pages {
		if !pendingDocs[filepath.Base(p)] {
			out = append(out, p)
		}
	}
	for _, p := range []string{"README.md", "examples/systemd/fpmguard.service", "examples/systemd/README.md",
		"examples/kubernetes/README.md", "examples/kubernetes/sidecar.yaml", "examples/kubernetes/entrypoint.yaml", "examples/demo.sh"} {
		out = append(out, filepath.Join(repo, p))
	}
	return out
}

// pendingDocs are pages the README links to that other work writes: the
// install page of the package, the version matrix, the threat model.
// Their flags are theirs to keep true; a link to them may not resolve yet.
var pendingDocs = map[string]bool{}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestREADMEIsShort(t *testing.T) {
	readme := readFile(t, filepath.Join(repo, "README.md"))
	if n := strings.Count(readme, "\n"); n >= 300 {
		t.Errorf("README.md has %d lines: keep it under 300, and the reference in docs/", n)
	}
	if !strings.HasPrefix(readme, "# fpmguard\n") {
		t.Errorf("README.md does not begin with its title")
	}
}

// exportedMetrics is every metric family fpmguard exports, with its
// labels: the collector's Descs, and the registry's own (build info). The
// Go runtime's go_* and the process's process_* are the client library's.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	ch := make(chan *prometheus.Desc, 256)
	fpmweb.NewCollector(func() *watch.Snapshot { return nil }, true).Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		out[m[1]] = splitLabels(m[2])
	}
	rec := httptest.NewRecorder()
	fpmweb.NewMetricsHandler(fpmweb.NewCollector(func() *watch.Snapshot { return nil }, true), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sample := regexp.MustCompile(`^(fpmguard_[a-z_]+)\{([^}]*)\} `)
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if m := sample.FindStringSubmatch(line); m != nil {
			var labels []string
			for _, kv := range strings.Split(m[2], ",") {
				k, _, _ := strings.Cut(kv, "=")
				labels = append(labels, k)
			}
			out[m[1]] = splitLabels(strings.Join(labels, ","))
		}
	}
	if _, ok := out["fpmguard_build_info"]; !ok {
		t.Fatalf("no fpmguard_build_info in a scrape:\n%s", rec.Body.String())
	}
	return out
}

func splitLabels(s string) []string {
	if s = strings.TrimSpace(s); s == "" {
		return nil
	}
	labels := strings.Split(s, ",")
	for i := range labels {
		labels[i] = strings.TrimSpace(labels[i])
	}
	slices.Sort(labels)
	return labels
}

// TestMetricsReference: docs/metrics.md lists every metric the code
// exports, with its labels and type, and no other.
func TestMetricsReference(t *testing.T) {
	code := exportedMetrics(t)
	doc := readFile(t, filepath.Join(repo, "docs", "metrics.md"))
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)(?:\\{([a-z_,]+)\\})?` \\| ([a-z]+) \\|")
	documented := map[string]bool{}
	types := knownTypes(t)
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		name, labels, typ := m[1], splitLabels(m[2]), m[3]
		documented[name] = true
		want, ok := code[name]
		if !ok {
			t.Errorf("docs/metrics.md names %s, which fpmguard does not export", name)
			continue
		}
		if !slices.Equal(labels, want) {
			t.Errorf("docs/metrics.md gives %s the labels %v; it has %v", name, labels, want)
		}
		if known, ok := types[name]; ok && known != typ {
			t.Errorf("docs/metrics.md types %s as %s; it is a %s", name, typ, known)
		}
	}
	for name := range code {
		if !documented[name] {
			t.Errorf("%s is exported but not in docs/metrics.md", name)
		}
	}
	for _, family := range []string{"`go_*`", "`process_*`"} {
		if !strings.Contains(doc, family) {
			t.Errorf("docs/metrics.md does not name the %s metrics", family)
		}
	}
}

// knownTypes are the metric types of the golden exposition (every family
// fpmguard writes from a full snapshot) and of the registry's own.
func knownTypes(t *testing.T) map[string]string {
	t.Helper()
	types := map[string]string{"fpmguard_build_info": "gauge"}
	golden := readFile(t, filepath.Join(repo, "web", "testdata", "metrics.golden"))
	sc := bufio.NewScanner(strings.NewReader(golden))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	if len(types) < 20 {
		t.Fatalf("web/testdata/metrics.golden gives %d types", len(types))
	}
	return types
}

// flagNames is every flag fpmguard takes, hidden ones included, with the
// --no- form of each switch.
func flagNames() map[string]bool {
	var c cli
	app := newApp(&c)
	names := map[string]bool{"help-long": true, "help-man": true, "completion-script-bash": true, "completion-script-zsh": true}
	add := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			names[f.Name] = true
			if f.IsBoolFlag() {
				names["no-"+f.Name] = true
			}
		}
	}
	var walk func(cmds []*kingpin.CmdModel)
	walk = func(cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			add(c.Flags)
			walk(c.Commands)
		}
	}
	m := app.Model()
	add(m.Flags)
	walk(m.Commands)
	return names
}

// foreignFlags are flags of other programs that the docs name.
var foreignFlags = map[string]string{
	"now":            "systemctl enable --now",
	"nodaemonize":    "php-fpm's long form of -F",
	"purge":          "dpkg --purge",
	"scripts":        "rpm -qp --scripts",
	"storage-driver": "buildah --storage-driver vfs",
	"variant":        "debootstrap --variant=minbase",
	// Chromium's, in the status page's browser test.
	"disable-background-networking": "chromium",
	"disable-component-update":      "chromium",
	"disable-sync":                  "chromium",
	"disable-quic":                  "chromium",
}

// TestDocumentedFlagsExist: every flag the docs and examples name is one
// fpmguard takes.
func TestDocumentedFlagsExist(t *testing.T) {
	names := flagNames()
	re := regexp.MustCompile(`(?:^|[^\w-])--([a-zA-Z][a-zA-Z0-9.-]*)`)
	for _, page := range ownDocs(t) {
		for i, line := range strings.Split(readFile(t, page), "\n") {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				name := strings.TrimRight(m[1], ".-")
				if strings.ToLower(name) != name {
					continue // a placeholder: --NAME, --no-NAME
				}
				if !names[name] && foreignFlags[name] == "" {
					t.Errorf("%s:%d names --%s, which no fpmguard command takes", page, i+1, name)
				}
			}
		}
	}
}

// TestExamplesNameTheRealBinary: an example that runs php-fpm on Debian
// names php-fpm8.2, as Debian installs it; php-fpm alone is the binary of
// the official PHP images, named so only beside them. An example is a line
// of a code block in a page, and any line of a unit or a script.
func TestExamplesNameTheRealBinary(t *testing.T) {
	re := regexp.MustCompile(`(?:^|[\s"'\x60(])php-fpm\s+-[-a-zA-Z]`)
	for _, page := range ownDocs(t) {
		if strings.Contains(page, "kubernetes") {
			continue // the official PHP images' php-fpm
		}
		inCode := !strings.HasSuffix(page, ".md")
		for i, line := range strings.Split(readFile(t, page), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") && strings.HasSuffix(page, ".md") {
				inCode = !inCode
				continue
			}
			if inCode && re.MatchString(line) && !strings.Contains(line, "official PHP images") {
				t.Errorf("%s:%d runs php-fpm, which Debian calls php-fpm8.2: %s", page, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestDocLinks: every relative link of the README and docs/ leads to a
// file, and to a heading of it when it names one.
func TestDocLinks(t *testing.T) {
	pages, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	pages = append(pages, filepath.Join(repo, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#:]*)(?:#([^)]*))?\)`)
	for _, page := range pages {
		for _, m := range link.FindAllStringSubmatch(readFile(t, page), -1) {
			target := page
			if m[1] != "" {
				target = filepath.Join(filepath.Dir(page), m[1])
			}
			if pendingDocs[filepath.Base(target)] {
				continue
			}
			text, err := os.ReadFile(target)
			if err != nil {
				t.Errorf("%s links to %s: %v", page, m[1], err)
				continue
			}
			if m[2] != "" && strings.HasSuffix(target, ".md") && !slices.Contains(anchors(string(text)), m[2]) {
				t.Errorf("%s links to %s#%s: no such heading", page, m[1], m[2])
			}
		}
	}
}

// anchors are the ids GitHub gives a page's headings.
func anchors(md string) []string {
	var out []string
	drop := regexp.MustCompile("[^a-z0-9 _-]")
	for _, line := range strings.Split(md, "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#")))
			out = append(out, strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-"))
		}
	}
	return out
}

// TestVocabularies: every word the code defines for a verdict, a failure,
// a state, an event or an action is on docs/events.md.
func TestVocabularies(t *testing.T) {
	doc := readFile(t, filepath.Join(repo, "docs", "events.md"))
	for _, v := range []struct{ file, typ string }{
		{"supervisor/report.go", "Health"},
		{"supervisor/report.go", "HungKind"},
		{"supervisor/procs.go", "OSState"},
		{"fastcgi/errors.go", "Reason"},
		{"event/event.go", "Kind"},
		{"watch/actions.go", "Action"},
		{"watch/actions.go", "Result"},
		{"nginxlog/nginxlog.go", "Cause"},
		{"fastcgi/errors.go", "classNames"},
	} {
		words := constWords(t, filepath.Join(repo, v.file), v.typ)
		if len(words) == 0 {
			t.Errorf("%s: no words of %s", v.file, v.typ)
		}
		for _, w := range words {
			if !strings.Contains(doc, "`"+w+"`") {
				t.Errorf("docs/events.md lacks `%s` (%s in %s)", w, v.typ, v.file)
			}
		}
	}
}

// constWords are the string constants of type typ in file, or the string
// values of the map variable typ.
func constWords(t *testing.T, file, typ string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	word := func(e ast.Expr) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				out = append(out, s)
			}
		}
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == typ && gd.Tok == token.CONST {
				for _, v := range vs.Values {
					word(v)
				}
			}
			if len(vs.Names) == 1 && vs.Names[0].Name == typ && len(vs.Values) == 1 {
				if cl, ok := vs.Values[0].(*ast.CompositeLit); ok {
					for _, el := range cl.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							word(kv.Value)
						}
					}
				}
			}
		}
	}
	return out
}
