package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// TestSlowlogHostile: a slowlog the pool user replaced by a link to a
// root-only file, on the host or from inside another root, is not read:
// its entries would reach /slowlog and the events.
func TestSlowlogHostile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "root-only.log")
	entry := "[26-Nov-2026 09:00:00]  [pool www] pid 42\nscript_filename = /SECRET"
	if err := os.WriteFile(secret, []byte(entry+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// On the host: the pool user's directory holds the slowlog.
	dir := fpmtest.Dir(t)
	if err := os.Chown(dir, fpmtest.PoolUser, fpmtest.PoolUser); err != nil {
		t.Fatal(err)
	}
	hostLink := filepath.Join(dir, "www-slow.log")
	if err := os.Symlink(secret, hostLink); err != nil {
		t.Fatal(err)
	}
	// In another root: an absolute link names the host's file, which the
	// root's own processes never see.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "var/log/www-slow.log")); err != nil {
		t.Fatal(err)
	}
	for name, tg := range map[string]supervisor.Target{
		"host":       {Slowlog: hostLink},
		"other root": {Root: root, Slowlog: "/var/log/www-slow.log"},
	} {
		if got := slowlogEntry(tg, 42, supervisor.Trust{}); strings.Contains(got, "SECRET") {
			t.Errorf("%s: read %q", name, got)
		}
	}
}
