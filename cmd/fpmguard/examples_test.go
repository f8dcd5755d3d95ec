package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/watch"
	fpmweb "github.com/fpmguard/fpmguard/web"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// exported lists the metric names /metrics can show: the collector's, with
// a histogram's series suffixes.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		fpmweb.NewCollector(func() *watch.Snapshot { return nil }, true).Describe(ch)
		close(ch)
	}()
	re := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bphpfpm_[a-z_]+\b`)

// checkMetricNames fails for each phpfpm_ metric in text that fpmguard does not
// export.
func checkMetricNames(t *testing.T, file, text string) {
	t.Helper()
	names := exported(t)
	found := metricName.FindAllString(text, -1)
	if len(found) == 0 {
		t.Errorf("%s uses no phpfpm_ metric", file)
	}
	for _, n := range found {
		if !names[n] {
			t.Errorf("%s uses %s, which fpmguard does not export", file, n)
		}
	}
}

// TestAlertRules checks examples/prometheus/alerts.yml with promtool, and
// that every metric it uses exists.
func TestAlertRules(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "prometheus", "alerts.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var alerts []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkMetricNames(t, path+": "+r.Alert, r.Expr)
		}
	}
	for _, want := range []string{"PHPFPMPoolDown", "PHPFPMHeartbeatFailing", "PHPFPMHungWorkers", "PHPFPMSaturated", "PHPFPMOpcacheFullNoRestart", "PHPFPMOpcacheRestarts"} {
		if !strings.Contains(strings.Join(alerts, " "), want) {
			t.Errorf("no alert %s in %v", want, alerts)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FPMGUARD_INTEGRATION") == "require" {
			t.Fatal("promtool not found: run make deps")
		}
		t.Skip("promtool not found: run make deps")
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
