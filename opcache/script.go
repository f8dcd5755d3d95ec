// Package opcache reads and manages php-fpm's opcache from outside PHP. The
// opcache lives in the shared memory of the php-fpm master, which only PHP
// code inside php-fpm can see, so fpmguard runs small embedded PHP scripts
// through FastCGI and judges what they return. It imports fastcgi only: it
// must not import supervisor, watch or anything above them.
package opcache

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"

	_ "embed"
)

// Script is the PHP probe, the same file as examples/php/fpmguard-opcache.php.
// It only reads: anyone who can reach a pool's socket can run it.
//
//go:embed fpmguard-opcache.php
var Script []byte

// actionTemplate is the script of one reset or invalidate: fpmguard writes
// it with its request for one call, under a random name, and removes it
// after (see Place.action).
//
//go:embed fpmguard-opcache-action.php
var actionTemplate []byte

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

// actionRequest is what one action script does. It is written into the
// script itself: the script takes nothing from whoever calls it.
type actionRequest struct {
	Action string   `json:"action"` // reset or invalidate
	Paths  []string `json:"paths,omitempty"`
	Glob   string   `json:"glob,omitempty"`
}

// actionScript is the PHP of one action. The request travels as base64 of
// JSON: no byte of a path can end the PHP string it sits in.
func actionScript(req actionRequest) []byte {
	js, err := json.Marshal(req)
	if err != nil {
		panic(err) // strings and a list of strings always encode
	}
	return bytes.Replace(actionTemplate, []byte("@REQUEST@"), []byte(base64.StdEncoding.EncodeToString(js)), 1)
}

// actionPrefix starts the name of every action script, so that a leftover
// one (fpmguard killed mid-call) is recognised and removed.
const actionPrefix = "fpmguard-opcache-action-"

// actionName is a fresh, unguessable name: 128 random bits.
func actionName() string { return actionPrefix + rand.Text() + ".php" }
