package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// deployDefaultsArgs is an ARGS line of the defaults file, commented out
// or not.
var deployDefaultsArgs = regexp.MustCompile(`^(#?)ARGS="([^"\\$` + "`" + `]*)"$`)

// TestDeploySystemdUnit holds the shipped systemd unit and its defaults
// file to what fpmguard accepts and promises: flags it knows, actions off.
func TestDeploySystemdUnit(t *testing.T) {
	file := filepath.Join("..", "..", "examples", "systemd", "fpmguard.service")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Errorf("%s:%d: not a setting: %q", file, n+1, line)
				continue
			}
			settings[section+k] = append(settings[section+k], v)
		}
	}
	one := func(key string) string {
		vs := settings[key]
		if len(vs) != 1 {
			t.Errorf("%s: want one %s, got %q", file, key, vs)
			return ""
		}
		return vs[0]
	}

	// Any PHP version: no php-fpm unit is named, discovery finds the
	// masters.
	for _, key := range []string{"[Unit]Wants", "[Unit]Requires", "[Unit]BindsTo", "[Unit]After", "[Unit]PartOf"} {
		if v := strings.Join(settings[key], " "); strings.Contains(v, "php") {
			t.Errorf("%s: %s=%s names a php-fpm unit: the unit must fit every PHP version", file, key, v)
		}
	}
	if got := one("[Service]Restart"); got != "on-failure" {
		t.Errorf("%s: Restart=%s, want on-failure", file, got)
	}
	if got := one("[Service]StateDirectory"); got != "fpmguard" {
		t.Errorf("%s: StateDirectory=%s, want fpmguard (/var/lib/fpmguard, the default --opcache-dir)", file, got)
	}
	families := strings.Fields(one("[Service]RestrictAddressFamilies"))
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} {
		if !slices.Contains(families, f) {
			t.Errorf("%s: RestrictAddressFamilies lacks %s", file, f)
		}
	}
	caps := strings.Fields(one("[Service]CapabilityBoundingSet"))
	for _, c := range []string{"CAP_KILL", "CAP_DAC_OVERRIDE"} {
		if !slices.Contains(caps, c) {
			t.Errorf("%s: CapabilityBoundingSet lacks %s", file, c)
		}
	}

	// The flags come from the defaults file the packages install, Debian's
	// or RPM's, as ARGS.
	envFiles := settings["[Service]EnvironmentFile"]
	for _, want := range []string{"-/etc/default/fpmguard", "-/etc/sysconfig/fpmguard"} {
		if !slices.Contains(envFiles, want) {
			t.Errorf("%s: no EnvironmentFile=%s, got %q", file, want, envFiles)
		}
	}
	const execStart = "/usr/bin/fpmguard serve $ARGS"
	if got := one("[Service]ExecStart"); got != execStart {
		t.Fatalf("%s: ExecStart=%s, want %s", file, got, execStart)
	}
	// The defaults file: its ARGS, and every ARGS it shows commented out,
	// use only flags serve has. The one in force only reads.
	defaults := filepath.Join("..", "..", "packaging", "fpmguard.default")
	data, err = os.ReadFile(defaults)
	if err != nil {
		t.Fatal(err)
	}
	help := deployHelpCache(buildBinary(t))
	active := 0
	for n, line := range strings.Split(string(data), "\n") {
		m := deployDefaultsArgs.FindStringSubmatch(line)
		if m == nil {
			if strings.Contains(line, "ARGS=") {
				t.Errorf("%s:%d: cannot read %q: want ARGS=\"...\" (or #ARGS=\"...\")", defaults, n+1, line)
			}
			continue
		}
		where := fmt.Sprintf("%s:%d", defaults, n+1)
		c := deployParseFpmguard(t, where, append([]string{"/usr/bin/fpmguard", "serve"}, strings.Fields(m[2])...), help)
		if len(c.rest) > 0 {
			t.Errorf("%s: fpmguard serve takes no command: %q", where, c.rest)
		}
		if dir, ok := c.flags["opcache-dir"]; ok && dir != "/var/lib/fpmguard" {
			t.Errorf("%s: --opcache-dir %s is not the StateDirectory", where, dir)
		}
		if m[1] == "#" {
			continue
		}
		active++
		for _, action := range []string{"kill-hung-after", "reload-unhealthy", "web.enable-kill"} {
			if _, ok := c.flags[action]; ok {
				t.Errorf("%s: --%s is on by default: actions are off unless switched on", where, action)
			}
		}
	}
	if active != 1 {
		t.Errorf("%s: %d ARGS lines in force, want 1", defaults, active)
	}
}
