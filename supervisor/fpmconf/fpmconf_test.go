package fpmconf

// Tests of the API, shared helpers, the fuzzer, and the checks against php-fpm itself.

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// fixtureEnv is the environment the fixtures expect, for ${VAR}.
var fixtureEnv = map[string]string{
	"FPMCONF_TEST_API_PORT": "9100",
	"FPMCONF_X":             "1",
}

func getenv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func abs(t testing.TB, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func comparePools(t *testing.T, got, want []Pool) {
	t.Helper()
	if len(got) != len(want) {
		names := func(ps []Pool) (n []string) {
			for _, p := range ps {
				n = append(n, p.Name)
			}
			return n
		}
		t.Fatalf("pools %q, want %q", names(got), names(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, w := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
			for f := 0; f < g.NumField(); f++ {
				if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
					t.Errorf("pool %q %s = %#v, want %#v", want[i].Name, g.Type().Field(f).Name, g.Field(f).Interface(), w.Field(f).Interface())
				}
			}
		}
	}
}

func TestDebian82(t *testing.T) {
	root := abs(t, "testdata/debian-8.2")
	cfg, err := Load("/etc/php/8.2/fpm/php-fpm.conf", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"/etc/php/8.2/fpm/php-fpm.conf", "/etc/php/8.2/fpm/pool.d/www.conf"}
	if !reflect.DeepEqual(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	if cfg.Path != "/etc/php/8.2/fpm/php-fpm.conf" || cfg.PIDFile != "/run/php/php8.2-fpm.pid" || cfg.ErrorLog != "/var/log/php8.2-fpm.log" {
		t.Errorf("Path, PIDFile, ErrorLog = %q, %q, %q", cfg.Path, cfg.PIDFile, cfg.ErrorLog)
	}
	comparePools(t, cfg.Pools, []Pool{{
		Name:          "www",
		Listen:        "/run/php/php8.2-fpm.sock",
		ListenAddress: "unix://" + root + "/run/php/php8.2-fpm.sock",
		ListenOwner:   "www-data", ListenGroup: "www-data",
		User: "www-data", Group: "www-data",
		PM: "dynamic", MaxChildren: 5, StartServers: 2, MinSpareServers: 1, MaxSpareServers: 3,
		Line: 4, File: "/etc/php/8.2/fpm/pool.d/www.conf",
	}})
	if n := cfg.Pools[0].MinWorkers(); n != 1 {
		t.Errorf("MinWorkers = %d, want 1", n)
	}
}

func TestMinWorkers(t *testing.T) {
	for _, c := range []struct {
		p    Pool
		want int
	}{
		{Pool{PM: "static", MaxChildren: 8}, 8},
		{Pool{PM: "dynamic", MaxChildren: 8, MinSpareServers: 3}, 3},
		{Pool{PM: "dynamic", MaxChildren: 8}, 1},
		{Pool{PM: "ondemand", MaxChildren: 8}, 0},
	} {
		if got := c.p.MinWorkers(); got != c.want {
			t.Errorf("%s: MinWorkers = %d, want %d", c.p.PM, got, c.want)
		}
	}
}

// fpm runs php-fpm -t (or -tt) on a config and reports whether it passed.
func fpm(t *testing.T, prefix, conf string, env map[string]string, dump bool) (bool, string) {
	t.Helper()
	bin, err := fpmtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	flag := "-t"
	if dump {
		flag = "-tt"
	}
	args := []string{flag, "-y", conf}
	if prefix != "" {
		args = append(args, "-p", prefix)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("php-fpm %s -y %s: %v", flag, conf, ctx.Err())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("php-fpm %s -y %s: %v", flag, conf, err)
	}
	return err == nil, string(out)
}

// copyDir copies a testdata directory, since php-fpm -t writes its error
// log and opens slowlogs under the prefix.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "c")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestAgainstPHPFPM checks the fixtures with the real php-fpm: it passes
// what Load accepts and refuses what Load refuses.
func TestAgainstPHPFPM(t *testing.T) {
	if _, err := fpmtest.Binary(); err != nil {
		t.Fatal(err) // integration tests must not pass by skipping
	}
	for _, fx := range validFixtures {
		t.Run(fx.dir, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", fx.dir))
			if ok, out := fpm(t, dir, filepath.Join(dir, "php-fpm.conf"), fixtureEnv, false); !ok {
				t.Errorf("php-fpm refuses %s:\n%s", fx.dir, out)
			}
		})
	}
	t.Run("syntax with CRLF", func(t *testing.T) {
		dir := copyDir(t, "testdata/syntax")
		main := filepath.Join(dir, "php-fpm.conf")
		text, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, main, strings.ReplaceAll(string(text), "\n", "\r\n"))
		cfg, err := Load(main, Options{Prefix: dir})
		if err != nil {
			t.Fatal(err)
		}
		comparePools(t, cfg.Pools, validFixtures[1].want(dir).Pools)
		if ok, out := fpm(t, dir, main, nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	t.Run("debian-8.2", func(t *testing.T) {
		// The Debian config names absolute paths; php-fpm has no root
		// option, so point them into a copy.
		dir := copyDir(t, "testdata/debian-8.2")
		main := filepath.Join(dir, "etc/php/8.2/fpm/php-fpm.conf")
		text, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(text), "include=/etc/", "include="+dir+"/etc/", 1)
		s = strings.Replace(s, "error_log = /var/log/", "error_log = "+dir+"/", 1)
		if s == string(text) {
			t.Fatal("the Debian config no longer has its include and error_log lines")
		}
		writeFile(t, main, s)
		if ok, out := fpm(t, "", main, nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	t.Run("nested 5 deep", func(t *testing.T) {
		dir := t.TempDir()
		if ok, out := fpm(t, dir, nested(t, dir, 5), nil, false); !ok {
			t.Errorf("php-fpm refuses it:\n%s", out)
		}
	})
	bad := copyDir(t, "testdata/bad")
	for _, c := range badFixtures {
		t.Run(c.file, func(t *testing.T) {
			main := filepath.Join(bad, c.file)
			ok, out := fpm(t, filepath.Dir(main), main, nil, false)
			if ok != c.phpPasses {
				t.Errorf("php-fpm -t passes: %v, want %v\n%s", ok, c.phpPasses, out)
			}
		})
	}
	for _, c := range generatedBad(t) {
		if !c.phpRefuses {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			if ok, out := fpm(t, c.dir, c.main, nil, false); ok {
				t.Errorf("php-fpm passes it:\n%s", out)
			}
		})
	}
	t.Run("values", func(t *testing.T) {
		dir := t.TempDir()
		main := filepath.Join(dir, "php-fpm.conf")
		for _, c := range valueCases {
			writeFile(t, main, conf("ping.response = "+c.value))
			ok, out := fpm(t, dir, main, fixtureEnv, true)
			switch {
			case ok != (c.err == ""):
				t.Errorf("%s: php-fpm passes: %v, want %v\n%s", c.value, ok, c.err == "", out)
			case ok && !strings.Contains(out, "\tping.response = "+c.want+"\n"):
				t.Errorf("%s: php-fpm does not make it %q:\n%s", c.value, c.want, out)
			}
		}
	})
}

// FuzzParse feeds Parse arbitrary configs: it must not panic or hang, and
// its errors must stay on one line.
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".conf") {
			return err
		}
		b, err := os.ReadFile(path)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range valueCases {
		f.Add([]byte(conf("ping.response = " + c.value)))
	}
	// Includes resolve inside a small root of their own.
	root := f.TempDir()
	writeFile(f, filepath.Join(root, "etc/pool.d/www.conf"), testPool)
	writeFile(f, filepath.Join(root, "prefix/self.conf"), "include = self.conf\n")
	opts := Options{Root: root, Prefix: "/prefix", Getenv: getenv(fixtureEnv)}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(bytes.NewReader(data), "fuzz.conf", opts)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if len(cfg.Pools) == 0 || cfg.Files[0] != "fuzz.conf" {
			t.Fatalf("accepted without pools: %+v", cfg)
		}
		for _, p := range cfg.Pools {
			if _, err := fastcgi.ParseAddress(p.ListenAddress); err != nil || p.Listen == "" {
				t.Fatalf("pool %q: Listen %q, ListenAddress %q: %v", p.Name, p.Listen, p.ListenAddress, err)
			}
			if p.MinWorkers() < 0 || p.MaxChildren < 1 {
				t.Fatalf("pool %q: MinWorkers %d, MaxChildren %d", p.Name, p.MinWorkers(), p.MaxChildren)
			}
		}
	})
}
