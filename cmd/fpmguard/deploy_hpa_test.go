package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployNoPod lists the Kubernetes examples that run no pod of their own,
// checked by tests of their own.
var deployNoPod = map[string]bool{"hpa.yaml": true}

// TestDeployHPAExample: the autoscaler scales the sidecar example's
// Deployment on a query promtool parses, of a metric fpmguard exports.
func TestDeployHPAExample(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "kubernetes")
	file := filepath.Join(dir, "hpa.yaml")
	docs := deployReadManifest(t, file)
	if len(docs) != 1 || docs[0]["apiVersion"] != "keda.sh/v1alpha1" || docs[0]["kind"] != "ScaledObject" {
		t.Fatalf("%s: want one keda.sh/v1alpha1 ScaledObject", file)
	}
	so := docs[0]

	// The target is the sidecar example's Deployment.
	var deployment string
	for _, d := range deployReadManifest(t, filepath.Join(dir, "sidecar.yaml")) {
		if d["kind"] == "Deployment" {
			deployment = fmt.Sprint(deployDig(d, "metadata", "name"))
		}
	}
	ref := deployMap(deployDig(so, "spec", "scaleTargetRef"))
	if ref["name"] != deployment || ref["kind"] != "Deployment" || ref["apiVersion"] != "apps/v1" {
		t.Errorf("%s: scaleTargetRef %v, want apps/v1 Deployment %s of sidecar.yaml", file, ref, deployment)
	}
	lo, _ := deployDig(so, "spec", "minReplicaCount").(int)
	hi, _ := deployDig(so, "spec", "maxReplicaCount").(int)
	if lo < 1 || hi <= lo {
		t.Errorf("%s: replicas %d to %d", file, lo, hi)
	}

	triggers := deployList(deployDig(so, "spec", "triggers"))
	if len(triggers) != 1 {
		t.Fatalf("%s: %d triggers, want 1", file, len(triggers))
	}
	tr := deployMap(triggers[0])
	meta := deployMap(tr["metadata"])
	// A ratio is compared as it is: Value, not AverageValue, which would
	// divide it by the replicas.
	if tr["type"] != "prometheus" || tr["metricType"] != "Value" {
		t.Errorf("%s: trigger type %v, metricType %v; want prometheus, Value", file, tr["type"], tr["metricType"])
	}
	// KEDA reads its metadata as strings.
	for k, v := range meta {
		if _, ok := v.(string); !ok {
			t.Errorf("%s: trigger metadata %s is %T, want a string", file, k, v)
		}
	}
	if th, err := strconv.ParseFloat(fmt.Sprint(meta["threshold"]), 64); err != nil || th <= 0 || th > 1 {
		t.Errorf("%s: threshold %v, want a utilization ratio above 0, at most 1", file, meta["threshold"])
	}
	query := fmt.Sprint(meta["query"])
	if !strings.Contains(query, "phpfpm_pool_utilization_ratio") || !strings.Contains(query, deployment) {
		t.Errorf("%s: query %q does not read phpfpm_pool_utilization_ratio of %s's pods", file, query, deployment)
	}
	checkMetricNames(t, file, query)

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		requireIntegration(t, "promtool not found: run make deps")
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "hpa", "rules": []any{
		map[string]string{"record": "hpa:php_app_sidecar:utilization", "expr": query}}}}})
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "hpa.yml")
	if err := os.WriteFile(rules, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the autoscaler's query: %v\n%s", err, out)
	}
}

// deployImage is the name and tag scheme of make image: a registry, the
// name fpmguard, and the version (git describe) as the tag.
var deployImage = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*/fpmguard:v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)*$`)

// TestDeployImages: every container of the fpmguard image in the
// Kubernetes examples names it as make image tags it, and runs its binary,
// the image's only file: it has no shell and no cp.
func TestDeployImages(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, file := range files {
		if deployNoPod[filepath.Base(file)] {
			continue
		}
		for _, p := range deployPods(file, deployReadManifest(t, file)) {
			for _, c := range p.containers {
				image := fmt.Sprint(deployDig(c.raw, "image"))
				if !strings.Contains(image, "fpmguard") {
					if len(c.argv) > 0 && filepath.Base(c.argv[0]) == "fpmguard" && c.argv[0] != "/usr/bin/fpmguard" {
						t.Errorf("%s: container %s runs %s; the fpmguard image and the packages install /usr/bin/fpmguard", file, c.name, c.argv[0])
					}
					continue
				}
				seen++
				if !deployImage.MatchString(image) {
					t.Errorf("%s: container %s: image %q, want REGISTRY/fpmguard:VERSION as make image tags it (e.g. registry.example.com/fpmguard:v0.1.0)", file, c.name, image)
				}
				if len(c.argv) > 0 && c.argv[0] != "/usr/bin/fpmguard" {
					t.Errorf("%s: container %s runs %q in the fpmguard image, which holds /usr/bin/fpmguard only", file, c.name, c.argv[0])
				}
			}
		}
	}
	if seen == 0 {
		t.Error("no example runs the fpmguard image")
	}
}
