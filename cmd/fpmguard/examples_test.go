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
		requireIntegration(t, "promtool not found: run make deps")
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRulesTellMastersApart evaluates the shipped rules with promtool
// over two pools www under two masters (PHP 7.4's and 8.2's, as Debian
// names them): each alert fires for its own pool, named with its master.
// Rules that match or sum on pool alone merged the two: the saturation of
// 8.2's www, seen only in its queue, was dropped for 7.4's, and the hung
// workers of both summed into one alert naming neither master.
func TestAlertRulesTellMastersApart(t *testing.T) {
	rules := alertRules(t)
	const m74, m82 = "/etc/php/7.4/fpm/php-fpm.conf", "/etc/php/8.2/fpm/php-fpm.conf"
	const uri74, uri82 = "unix:///run/php/php7.4-fpm.sock;/status", "unix:///run/php/php8.2-fpm.sock;/status"
	series := func(name, master string, labels string) string {
		return name + `{instance="web1",master="` + master + `",pool="www"` + labels + `}`
	}
	uri := func(v string) string { return `,scrape_uri="` + v + `"` }
	type input struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	}
	inputs := []input{
		// 7.4's www: every worker busy, one hung.
		{series("phpfpm_idle_processes", m74, uri(uri74)), "0x15"},
		{series("phpfpm_active_processes", m74, uri(uri74)), "2x15"},
		{series("phpfpm_socket_listen_queue", m74, ""), "0x15"},
		{series("phpfpm_hung_processes", m74, `,kind="blocked"`), "1x15"},
		// 8.2's www: idle workers, but requests wait in its queue; two hung.
		{series("phpfpm_idle_processes", m82, uri(uri82)), "3x15"},
		{series("phpfpm_active_processes", m82, uri(uri82)), "1x15"},
		{series("phpfpm_socket_listen_queue", m82, ""), "4x15"},
		{series("phpfpm_hung_processes", m82, `,kind="blocked"`), "2x15"},
	}
	type alert struct {
		Labels      map[string]string `yaml:"exp_labels"`
		Annotations map[string]string `yaml:"exp_annotations"`
	}
	saturated := func(master, uri string) alert {
		l := map[string]string{"severity": "warning", "instance": "web1", "master": master, "pool": "www"}
		if uri != "" {
			l["scrape_uri"] = uri
		}
		return alert{l, map[string]string{"summary": "php-fpm pool www of " + master + " is saturated",
			"description": "Every worker is busy or requests wait in the listen queue; when the backlog fills, nginx answers 502."}}
	}
	hung := func(master, n string) alert {
		return alert{map[string]string{"severity": "warning", "instance": "web1", "master": master, "pool": "www", "kind": "blocked"},
			map[string]string{"summary": n + " hung (blocked) workers in pool www of " + master,
				"description": "Workers serving one request for longer than --hung-after. blocked: waiting on a database, API, lock or disk; spinning: busy on the CPU."}}
	}
	type expect struct {
		EvalTime  string  `yaml:"eval_time"`
		Alertname string  `yaml:"alertname"`
		ExpAlerts []alert `yaml:"exp_alerts"`
	}
	expects := []expect{
		{"10m", "PHPFPMSaturated", []alert{saturated(m74, uri74), saturated(m82, "")}},
		{"10m", "PHPFPMHungWorkers", []alert{hung(m74, "1"), hung(m82, "2")}},
	}
	if res, err := testAlertRules(t, rules, inputs, expects); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, res)
	}
}
