package fpmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Tree writes files (path below the root → content) below a new temporary
// directory, removed with the test, and returns that directory: a fake
// /proc or /sys for the readers that take their root as an argument.
func Tree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
