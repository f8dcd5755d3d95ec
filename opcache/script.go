// Package opcache reads and manages php-fpm's opcache from outside PHP. The
// opcache lives in the shared memory of the php-fpm master, which only PHP
// code inside php-fpm can see, so fpmguard runs a small embedded PHP script
// through FastCGI and judges what it returns.
package opcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	_ "embed"
)

// Script is the PHP probe, the same file as examples/php/fpmguard-opcache.php.
//
//go:embed fpmguard-opcache.php
var Script []byte

// ScriptHash is the hex SHA-256 of Script.
var ScriptHash = func() string {
	sum := sha256.Sum256(Script)
	return hex.EncodeToString(sum[:])
}()

// ScriptName is the installed file's name. It holds part of the hash, so a
// new fpmguard gets a new opcache key instead of a stale compiled copy
// (with opcache.validate_timestamps=0 php-fpm would never look again), while
// one fpmguard keeps one key for every call.
func ScriptName() string { return "fpmguard-opcache-" + ScriptHash[:12] + ".php" }

// DefaultDir is where fpmguard installs the script when it runs as root:
// a directory only root can write, readable by every pool user.
const DefaultDir = "/var/lib/fpmguard"

// Install writes the script into dir, creating dir when missing, and
// returns the script's path. dir must not be writable by anyone but root or
// this process's user: a script placed there runs inside php-fpm.
func Install(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("opcache script directory %q must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating opcache script directory: %w", err)
	}
	if err := checkPrivate(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, ScriptName())
	if Verify(path) == nil {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".fpmguard-opcache-*.tmp")
	if err != nil {
		return "", fmt.Errorf("installing opcache script: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(Script); err != nil {
		tmp.Close()
		return "", fmt.Errorf("installing opcache script: %w", err)
	}
	// Readable by the pool's user, whoever it is.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("installing opcache script: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("installing opcache script: %w", err)
	}
	// rename replaces atomically: a worker never sees half a file.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("installing opcache script: %w", err)
	}
	return path, nil
}

// checkPrivate refuses a directory that is a symlink, or that someone other
// than root or us could write into.
func checkPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking opcache script directory: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("opcache script directory %s is not a plain directory; use a directory of fpmguard's own such as %s", dir, DefaultDir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("opcache script directory %s belongs to uid %d; use a directory owned by root or by fpmguard's user", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("opcache script directory %s is writable by others (mode %o); chmod go-w it or use another directory", dir, fi.Mode().Perm())
	}
	return nil
}

// ErrScriptMismatch says the file at a script path is not fpmguard's.
var ErrScriptMismatch = errors.New("the opcache script differs from this fpmguard's")

// Verify checks that path holds exactly the embedded script. fpmguard checks
// before each use: the file runs inside php-fpm.
func Verify(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("verifying opcache script: %w", err)
	}
	if !bytes.Equal(data, Script) {
		sum := sha256.Sum256(data)
		return fmt.Errorf("verifying opcache script %s: %w (sha256 %s, want %s); copy examples/php/fpmguard-opcache.php of this version there",
			path, ErrScriptMismatch, hex.EncodeToString(sum[:])[:12], ScriptHash[:12])
	}
	return nil
}
