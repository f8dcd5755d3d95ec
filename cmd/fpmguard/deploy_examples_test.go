package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/supervisor/fpmconf"
	"go.yaml.in/yaml/v3"
)

// The deployment examples under examples/: Kubernetes manifests, a systemd
// unit and a Grafana dashboard. These tests check that they parse, carry
// the pieces the README promises, and only use flags and metrics fpmguard
// has.

// deployFlagLine matches a flag's own line in kingpin's help (not a
// mention in a wrapped description): "      --kill-hung-after=0",
// "      --[no-]dry-run", "  -h, --[no-]help".
var deployFlagLine = regexp.MustCompile(`(?m)^  (?:-\w, |    )--(\[no-\])?([a-z0-9][a-z0-9.-]*)(=)?`)

// deployFlags is the flags of one fpmguard command, from its --help: name
// -> whether it takes a value.
type deployFlags map[string]bool

func deployHelpFlags(t *testing.T, bin, cmd string) deployFlags {
	t.Helper()
	out, err := exec.Command(bin, cmd, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("fpmguard %s --help: %v\n%s", cmd, err, out)
	}
	flags := deployFlags{}
	for _, m := range deployFlagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[2]] = m[3] == "="
		if m[1] != "" {
			flags["no-"+m[2]] = false
		}
	}
	if !flags["timeout"] || len(flags) < 10 {
		t.Fatalf("cannot read the flags of fpmguard %s --help:\n%s", cmd, out)
	}
	return flags
}

// deployCommand is one fpmguard command line of an example.
type deployCommand struct {
	where string            // file and container, for messages
	cmd   string            // serve, run, ...
	flags map[string]string // long name -> value ("" for a bool)
	rest  []string          // after "--": php-fpm's command line under run
}

// deployParseFpmguard parses argv (argv[0] is fpmguard) against the flags
// `fpmguard CMD --help` lists, failing for any it does not.
func deployParseFpmguard(t *testing.T, where string, argv []string, help func(*testing.T, string) deployFlags) deployCommand {
	t.Helper()
	c := deployCommand{where: where, flags: map[string]string{}}
	if len(argv) < 2 || strings.HasPrefix(argv[1], "-") {
		t.Errorf("%s: %q names no fpmguard command", where, argv)
		return c
	}
	c.cmd = argv[1]
	known := help(t, c.cmd)
	for i := 2; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			c.rest = argv[i+1:]
			break
		}
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: fpmguard %s: %q is not a long flag (only `run` takes a command, after --)", where, c.cmd, a)
			continue
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		takesValue, ok := known[name]
		switch {
		case !ok:
			t.Errorf("%s: fpmguard %s has no flag --%s", where, c.cmd, name)
		case takesValue && !hasValue:
			if i+1 >= len(argv) || strings.HasPrefix(argv[i+1], "--") {
				t.Errorf("%s: --%s needs a value", where, name)
				continue
			}
			i++
			value = argv[i]
		case !takesValue && hasValue:
			t.Errorf("%s: --%s takes no value", where, name)
		}
		c.flags[name] = value
	}
	return c
}

// deployHelpCache runs `fpmguard CMD --help` once per command.
func deployHelpCache(bin string) func(*testing.T, string) deployFlags {
	cache := map[string]deployFlags{}
	return func(t *testing.T, cmd string) deployFlags {
		t.Helper()
		if cache[cmd] == nil {
			cache[cmd] = deployHelpFlags(t, bin, cmd)
		}
		return cache[cmd]
	}
}

// A Kubernetes manifest, read as plain maps.

type deployMount struct {
	volume, path, subPath string
	readOnly              bool
}

type deployContainer struct {
	name   string
	argv   []string // command, then args
	mounts []deployMount
	raw    map[string]any
}

type deployPod struct {
	file        string
	annotations map[string]any
	spec        map[string]any
	containers  []deployContainer
	volumes     map[string]map[string]any
	configMaps  map[string]map[string]string // ConfigMaps of the same file
}

func deployDig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func deployMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func deployList(v any) []any {
	l, _ := v.([]any)
	return l
}

func deployStrings(v any) []string {
	var out []string
	for _, e := range deployList(v) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// deployReadManifest decodes every document of a multi-document YAML file.
func deployReadManifest(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, len(docs)+1, err)
		}
		if doc == nil {
			continue
		}
		if doc["apiVersion"] == nil || doc["kind"] == nil {
			t.Errorf("%s: document %d has no apiVersion or kind", file, len(docs)+1)
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		t.Fatalf("%s holds no document", file)
	}
	return docs
}

// deployPods finds the pod specs of a manifest: Pods and workload templates.
func deployPods(file string, docs []map[string]any) []deployPod {
	cms := map[string]map[string]string{}
	for _, d := range docs {
		if d["kind"] == "ConfigMap" {
			data := map[string]string{}
			for k, v := range deployMap(d["data"]) {
				data[k] = fmt.Sprint(v)
			}
			cms[fmt.Sprint(deployDig(d, "metadata", "name"))] = data
		}
	}
	var pods []deployPod
	for _, d := range docs {
		var spec, meta map[string]any
		switch d["kind"] {
		case "Pod":
			spec, meta = deployMap(d["spec"]), deployMap(d["metadata"])
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			spec, meta = deployMap(deployDig(d, "spec", "template", "spec")), deployMap(deployDig(d, "spec", "template", "metadata"))
		default:
			continue
		}
		p := deployPod{file: file, annotations: deployMap(meta["annotations"]), spec: spec,
			volumes: map[string]map[string]any{}, configMaps: cms}
		for _, v := range deployList(spec["volumes"]) {
			p.volumes[fmt.Sprint(deployDig(v, "name"))] = deployMap(v)
		}
		for _, key := range []string{"initContainers", "containers"} {
			for _, c := range deployList(spec[key]) {
				kc := deployContainer{name: fmt.Sprint(deployDig(c, "name")), raw: deployMap(c)}
				kc.argv = append(deployStrings(deployDig(c, "command")), deployStrings(deployDig(c, "args"))...)
				for _, m := range deployList(deployDig(c, "volumeMounts")) {
					kc.mounts = append(kc.mounts, deployMount{volume: fmt.Sprint(deployDig(m, "name")),
						path: fmt.Sprint(deployDig(m, "mountPath")), subPath: fmt.Sprint(deployDig(m, "subPath")), readOnly: deployDig(m, "readOnly") == true})
					if deployDig(m, "subPath") == nil {
						kc.mounts[len(kc.mounts)-1].subPath = ""
					}
				}
				p.containers = append(p.containers, kc)
			}
		}
		pods = append(pods, p)
	}
	return pods
}

// mountOf returns the mount of c that holds file path p, the deepest one.
func (c deployContainer) mountOf(p string) (deployMount, bool) {
	var best deployMount
	found := false
	for _, m := range c.mounts {
		if (p == m.path || strings.HasPrefix(p, strings.TrimSuffix(m.path, "/")+"/")) && (!found || len(m.path) > len(best.path)) {
			best, found = m, true
		}
	}
	return best, found
}

// shared fails unless containers a and b see file p on the same volume at
// the same path: what one writes there, the other reads under that name.
func (p deployPod) shared(t *testing.T, what, file string, a, b deployContainer) {
	t.Helper()
	ma, okA := a.mountOf(file)
	mb, okB := b.mountOf(file)
	switch {
	case !okA || !okB:
		t.Errorf("%s: %s %s: containers %s and %s must both mount it (%s: %v, %s: %v)", p.file, what, file, a.name, b.name, a.name, okA, b.name, okB)
	case ma.volume != mb.volume || ma.path != mb.path || ma.subPath != mb.subPath:
		t.Errorf("%s: %s %s: containers %s and %s see it through different mounts (%+v, %+v)", p.file, what, file, a.name, b.name, ma, mb)
	}
}

// probe fails unless some container declares kind (livenessProbe,
// readinessProbe) as an HTTP GET of path on port 9253.
func (p deployPod) probe(t *testing.T, kind, wantPath string) {
	t.Helper()
	for _, c := range p.containers {
		pr := deployMap(c.raw[kind])
		if pr == nil {
			continue
		}
		if got := deployDig(pr, "httpGet", "path"); got != wantPath {
			t.Errorf("%s: container %s: %s path %v, want %s", p.file, c.name, kind, got, wantPath)
			continue
		}
		if port := fmt.Sprint(deployDig(pr, "httpGet", "port")); port != "9253" && p.portNumber(port) != "9253" {
			t.Errorf("%s: container %s: %s port %s, want fpmguard's 9253", p.file, c.name, kind, port)
			continue
		}
		return
	}
	t.Errorf("%s: no container has a %s on %s, port 9253", p.file, kind, wantPath)
}

// portNumber resolves a named container port.
func (p deployPod) portNumber(name string) string {
	for _, c := range p.containers {
		for _, port := range deployList(c.raw["ports"]) {
			if fmt.Sprint(deployDig(port, "name")) == name {
				return fmt.Sprint(deployDig(port, "containerPort"))
			}
		}
	}
	return ""
}

// render writes the ConfigMap files container c sees into root, at their
// mount paths, and makes its emptyDir mount points, for fpmconf to read.
func (p deployPod) render(t *testing.T, c deployContainer, root string) {
	t.Helper()
	for _, m := range c.mounts {
		dst := filepath.Join(root, m.path)
		vol := p.volumes[m.volume]
		if vol == nil {
			t.Errorf("%s: container %s mounts volume %s, which the pod does not have", p.file, c.name, m.volume)
			continue
		}
		cmName, ok := deployDig(vol, "configMap", "name").(string)
		if !ok {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, ok := p.configMaps[cmName]
		if !ok {
			t.Errorf("%s: volume %s: ConfigMap %s is not in the file", p.file, m.volume, cmName)
			continue
		}
		files := map[string]string{} // path in the volume -> content
		if items := deployList(deployDig(vol, "configMap", "items")); items != nil {
			for _, it := range items {
				key := fmt.Sprint(deployDig(it, "key"))
				if _, ok := data[key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %s", p.file, m.volume, cmName, key)
				}
				files[fmt.Sprint(deployDig(it, "path"))] = data[key]
			}
		} else {
			for k, v := range data {
				files[k] = v
			}
		}
		if m.subPath != "" {
			content, ok := files[m.subPath]
			if !ok {
				t.Errorf("%s: container %s: subPath %s is not in volume %s", p.file, c.name, m.subPath, m.volume)
				continue
			}
			files = map[string]string{"": content}
		}
		for name, content := range files {
			f := filepath.Join(dst, name)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// fpmConfigOf reads the php-fpm config container c runs or watches, as c
// sees it.
func (p deployPod) fpmConfigOf(t *testing.T, c deployContainer, conf string) *fpmconf.Config {
	t.Helper()
	root := t.TempDir()
	p.render(t, c, root)
	cfg, err := fpmconf.Load(conf, fpmconf.Options{Root: root, Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("%s: container %s: php-fpm config %s: %v", p.file, c.name, conf, err)
	}
	if len(cfg.Pools) == 0 {
		t.Fatalf("%s: container %s: php-fpm config %s has no pool", p.file, c.name, conf)
	}
	return cfg
}

// deployPHPFPMArgv is php-fpm's command line in c: its own, or the one after
// `fpmguard run ... --`.
func deployPHPFPMArgv(c deployContainer) []string {
	argv := c.argv
	if i := slices.Index(argv, "--"); i >= 0 && len(argv) > 0 && path.Base(argv[0]) == "fpmguard" {
		argv = argv[i+1:]
	}
	if len(argv) > 0 && path.Base(argv[0]) == "php-fpm" {
		return argv
	}
	return nil
}

func deployArgAfter(argv []string, flag string) string {
	if i := slices.Index(argv, flag); i >= 0 && i+1 < len(argv) {
		return argv[i+1]
	}
	return ""
}

var deployLabelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-z_]+\)$`)

var (
	deployFastCGIPass   = regexp.MustCompile(`fastcgi_pass\s+unix:([^;\s]+);`)
	deployNginxErrorLog = regexp.MustCompile(`(?m)^\s*error_log\s+(/[^;\s]+)`)
)

func TestDeployKubernetesExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sidecar.yaml", "entrypoint.yaml"} {
		if !slices.Contains(files, filepath.Join(dir, want)) {
			t.Errorf("%s is missing from %s", want, dir)
		}
	}
	help := deployHelpCache(buildBinary(t))

	for _, file := range files {
		if deployNoPod[filepath.Base(file)] {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			pods := deployPods(file, deployReadManifest(t, file))
			if len(pods) != 1 {
				t.Fatalf("%s: %d pod specs, want 1", file, len(pods))
			}
			p := pods[0]

			for k, want := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9253", "prometheus.io/path": "/metrics"} {
				if got, ok := p.annotations[k].(string); !ok || got != want {
					t.Errorf("%s: pod annotation %s = %v, want the string %q", file, k, p.annotations[k], want)
				}
			}
			p.probe(t, "livenessProbe", "/healthz")
			p.probe(t, "readinessProbe", "/readyz")

			// Every fpmguard command line, checked against its --help.
			var guard *deployCommand
			var guardC, phpC, nginxC deployContainer
			for _, c := range p.containers {
				if deployPHPFPMArgv(c) != nil {
					phpC = c
				}
				if strings.HasPrefix(fmt.Sprint(deployDig(c.raw, "image")), "nginx") {
					nginxC = c
				}
				if len(c.argv) == 0 || path.Base(c.argv[0]) != "fpmguard" {
					continue
				}
				if guard != nil {
					t.Errorf("%s: more than one container runs fpmguard", file)
				}
				g := deployParseFpmguard(t, file+": container "+c.name, c.argv, help)
				guard, guardC = &g, c
			}
			if guard == nil {
				t.Fatalf("%s: no container runs fpmguard", file)
			}
			if phpC.name == "" || nginxC.name == "" {
				t.Fatalf("%s: want a php-fpm and an nginx container", file)
			}
			if _, ok := guard.flags["kill-hung-after"]; !ok {
				t.Errorf("%s: fpmguard %s without --kill-hung-after", file, guard.cmd)
			}

			// php-fpm's config, as php-fpm reads it.
			conf := deployArgAfter(deployPHPFPMArgv(phpC), "-y")
			if conf == "" {
				t.Fatalf("%s: php-fpm is not started with -y CONF: %q", file, phpC.argv)
			}
			cfg := p.fpmConfigOf(t, phpC, conf)
			for _, pool := range cfg.Pools {
				if pool.StatusPath == "" || pool.StatusListen == "" || pool.PingPath == "" || pool.Slowlog == "" {
					t.Errorf("%s: pool %s: want pm.status_path, pm.status_listen, ping.path and slowlog, got %q %q %q %q",
						file, pool.Name, pool.StatusPath, pool.StatusListen, pool.PingPath, pool.Slowlog)
				}
			}

			// nginx reaches a pool's socket, and fpmguard follows nginx's
			// error log.
			var nginxConf string
			for _, data := range p.configMaps {
				if s, ok := data["nginx.conf"]; ok {
					nginxConf = s
				}
			}
			passes := deployFastCGIPass.FindAllStringSubmatch(nginxConf, -1)
			if len(passes) == 0 {
				t.Errorf("%s: nginx.conf has no fastcgi_pass unix:...", file)
			}
			for _, m := range passes {
				if !slices.ContainsFunc(cfg.Pools, func(pool fpmconf.Pool) bool { return pool.Listen == m[1] }) {
					t.Errorf("%s: nginx's fastcgi_pass unix:%s is no pool's listen", file, m[1])
				}
				p.shared(t, "socket", m[1], nginxC, phpC)
			}
			if logPath, ok := guard.flags["nginx-error-log"]; ok {
				var logs []string
				for _, m := range deployNginxErrorLog.FindAllStringSubmatch(nginxConf, -1) {
					logs = append(logs, m[1])
				}
				if !slices.Contains(logs, logPath) {
					t.Errorf("%s: --nginx-error-log %s, but nginx logs errors to %q", file, logPath, logs)
				}
				p.shared(t, "nginx error log", logPath, nginxC, guardC)
			}

			switch filepath.Base(file) {
			case "sidecar.yaml":
				if p.spec["shareProcessNamespace"] != true {
					t.Errorf("%s: want shareProcessNamespace: true, got %v", file, p.spec["shareProcessNamespace"])
				}
				if guard.cmd != "serve" {
					t.Errorf("%s: the sidecar runs fpmguard %s, want serve", file, guard.cmd)
				}
				// fpmguard reads what php-fpm runs, at the paths php-fpm
				// uses: the config, the sockets, the pid file, the
				// slowlog and the opcache script.
				if fc := guard.flags["fpm-config"]; fc != "" {
					if fc != conf {
						t.Errorf("%s: --fpm-config %s, but php-fpm runs %s", file, fc, conf)
					}
					mine := p.fpmConfigOf(t, guardC, fc)
					if !slices.Equal(mine.Files, cfg.Files) {
						t.Errorf("%s: fpmguard reads %q, php-fpm %q", file, mine.Files, cfg.Files)
					}
					p.shared(t, "pid file", cfg.PIDFile, phpC, guardC)
				}
				for _, pool := range cfg.Pools {
					p.shared(t, "pool "+pool.Name+" listen", pool.Listen, phpC, guardC)
					if strings.HasPrefix(pool.StatusListen, "/") {
						p.shared(t, "pool "+pool.Name+" pm.status_listen", pool.StatusListen, phpC, guardC)
					}
					p.shared(t, "pool "+pool.Name+" slowlog", pool.Slowlog, phpC, guardC)
				}
				// fpmguard's opcache scripts: written on fpmguard's side of
				// a volume, read-only in php-fpm's container.
				if script := guard.flags["opcache-script"]; script != "" {
					p.shared(t, "opcache script", script, phpC, guardC)
				}
				dir := guard.flags["opcache-dir"]
				if dir == "" {
					dir = "/var/lib/fpmguard"
				}
				p.shared(t, "opcache directory", dir, phpC, guardC)
				if m, ok := phpC.mountOf(dir); ok && !m.readOnly {
					t.Errorf("%s: php-fpm's container mounts the opcache directory %s writable: PHP code could change fpmguard's scripts", file, dir)
				}
				if m, ok := guardC.mountOf(dir); ok && m.readOnly {
					t.Errorf("%s: fpmguard's container mounts the opcache directory %s read-only: it cannot write its scripts", file, dir)
				}
			case "entrypoint.yaml":
				if guard.cmd != "run" {
					t.Errorf("%s: php-fpm's entrypoint is fpmguard %s, want run", file, guard.cmd)
				}
				if guardC.name != phpC.name {
					t.Errorf("%s: fpmguard runs in %s, php-fpm in %s", file, guardC.name, phpC.name)
				}
				if !slices.Contains(guard.rest, "-F") {
					t.Errorf("%s: php-fpm under fpmguard run needs -F (foreground): %q", file, guard.rest)
				}
			}
		})
	}
}
