package fpmconf

// Tests of reading a config through a root.

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestRoot reads a config through a root the way the supervisor reads a
// master in another container: symbolic links resolve inside the root.
func TestRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/fpm/php-fpm.conf"), "[global]\npid = /run/php/fpm.pid\n; .. cannot climb out of the root\ninclude = /../../etc/fpm/pool.d/*.conf\n")
	writeFile(t, filepath.Join(root, "srv/conf/www.conf"), "[www]\nlisten = /var/run/php/www.sock\npm = static\npm.max_children = 2\n")
	// Outside a root this would be the host's /etc/passwd.
	writeFile(t, filepath.Join(root, "etc/passwd"), "[inside]\nlisten = 9000\npm = ondemand\npm.max_children = 2\n")
	if err := os.MkdirAll(filepath.Join(root, "run/php"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"etc/fpm/pool.d/www.conf":    "/srv/conf/www.conf",                    // absolute: inside the root
		"etc/fpm/pool.d/escape.conf": "../../../../../../../../../etc/passwd", // climbs, but stops at the root
		"var/run":                    "/run",                                  // as in Debian images
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Load("/../etc/fpm/php-fpm.conf", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"/../etc/fpm/php-fpm.conf", "/etc/fpm/pool.d/escape.conf", "/etc/fpm/pool.d/www.conf"}
	if !reflect.DeepEqual(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	comparePools(t, cfg.Pools, []Pool{{
		Name: "inside", Listen: "9000", ListenAddress: "tcp://127.0.0.1:9000", PM: "ondemand", MaxChildren: 2,
		Line: 1, File: "/etc/fpm/pool.d/escape.conf",
	}, {
		Name: "www", Listen: "/var/run/php/www.sock", ListenAddress: "unix://" + root + "/run/php/www.sock",
		PM: "static", MaxChildren: 2, Line: 1, File: "/etc/fpm/pool.d/www.conf",
	}})
	if cfg.PIDFile != "/run/php/fpm.pid" {
		t.Errorf("PIDFile = %q", cfg.PIDFile)
	}
}

// TestRootHostileFiles: what a hostile root puts where its config is read
// neither blocks, nor exhausts memory, nor leads out of the root.
func TestRootHostileFiles(t *testing.T) {
	host := filepath.Join(t.TempDir(), "host.conf")
	writeFile(t, host, "[host]\nlisten = /run/host.sock\npm = static\npm.max_children = 1\n")
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/php-fpm.conf"), "include = /etc/pool.d/*.conf\n")
	if err := os.MkdirAll(filepath.Join(root, "etc/pool.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"zero.conf": "/dev/zero", "host.conf": host} {
		link := filepath.Join(root, "etc/pool.d", name)
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load("/etc/php-fpm.conf", Options{Root: root})
		if err == nil {
			t.Errorf("%s -> %s: read %+v", name, target, cfg.Pools)
		}
		os.Remove(link)
	}
}
