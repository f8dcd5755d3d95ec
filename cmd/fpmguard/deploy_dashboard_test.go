package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployBy finds the labels of each aggregation of a query.
var deployBy = regexp.MustCompile(`by \(([^)]*)\)`)

// TestDeployGrafanaDashboard holds the shipped dashboard to the metrics
// fpmguard exports and to the labels that tell pools apart.
func TestDeployGrafanaDashboard(t *testing.T) {
	file := filepath.Join("..", "..", "examples", "grafana", "fpmguard-dashboard.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource map[string]any `json:"datasource"`
	}
	type panel struct {
		ID         int            `json:"id"`
		Type       string         `json:"type"`
		Title      string         `json:"title"`
		Datasource map[string]any `json:"datasource"`
		Targets    []target       `json:"targets"`
		Panels     []panel        `json:"panels"`
	}
	var dash struct {
		SchemaVersion int     `json:"schemaVersion"`
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if dash.SchemaVersion < 36 || dash.UID == "" || dash.Title == "" {
		t.Errorf("%s: schemaVersion %d, uid %q, title %q", file, dash.SchemaVersion, dash.UID, dash.Title)
	}

	vars := map[string]string{}
	var texts []string
	for _, v := range dash.Templating.List {
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		vars[v.Name] = v.Type + " " + q
		if v.Type == "query" {
			texts = append(texts, q)
		}
	}
	for name, want := range map[string]string{
		"DS_PROMETHEUS": "datasource prometheus",
		"instance":      "query label_values(phpfpm_pool_health",
		"master":        "query label_values(phpfpm_pool_health",
		"pool":          "query label_values(phpfpm_pool_health",
	} {
		if !strings.HasPrefix(vars[name], want) {
			t.Errorf("%s: variable %s is %q, want %q...", file, name, vars[name], want)
		}
	}

	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", file, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if uid := fmt.Sprint(p.Datasource["uid"]); uid != "${DS_PROMETHEUS}" {
				t.Errorf("%s: panel %q: datasource %v, want ${DS_PROMETHEUS}", file, p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q: query %s is empty", file, p.Title, tg.RefID)
				}
				if !strings.Contains(tg.Expr, `pool=~"$pool"`) && !strings.Contains(tg.Expr, "phpfpm_opcache_") && !strings.Contains(tg.Expr, "phpfpm_master_") {
					t.Errorf("%s: panel %q: query %s ignores $pool: %s", file, p.Title, tg.RefID, tg.Expr)
				}
				// Debian's www is in every PHP version: a pool is its name
				// and its master.
				if !strings.Contains(tg.Expr, `master=~"$master"`) {
					t.Errorf("%s: panel %q: query %s ignores $master: %s", file, p.Title, tg.RefID, tg.Expr)
				}
				for _, by := range deployBy.FindAllStringSubmatch(tg.Expr, -1) {
					if strings.Contains(by[1], "pool") && !strings.Contains(by[1], "master") {
						t.Errorf("%s: panel %q: query %s merges pools of one name under two masters: by (%s)", file, p.Title, tg.RefID, by[1])
					}
				}
				texts = append(texts, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	checkMetricNames(t, file, strings.Join(texts, "\n"))

	// promtool parses every query, with Grafana's variables filled in.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		requireIntegration(t, "promtool not found: run make deps")
	}
	fill := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$instance", ".*", "$master", ".*", "$pool", ".*")
	var rules []map[string]string
	for i, e := range texts {
		// A variable's label_values(SELECTOR, LABEL) is Grafana's: check
		// its selector.
		e = deployLabelValues.ReplaceAllString(e, "$1")
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": fill.Replace(e)})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(rulesFile, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}
