package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/watch"
	"go.yaml.in/yaml/v3"
)

// Controller is what the kill and slowlog endpoints ask: the watcher.
type Controller interface {
	KillWorker(ctx context.Context, pool string, pid int, who string) (watch.KillResult, error)
	Slowlog(pool string, pid int) (string, error)
}

// KillPolicy says who may ask for a kill over HTTP.
type KillPolicy struct {
	// Enabled is --web.enable-kill. Off, POST /kill is refused.
	Enabled bool
	// Authenticated is true when --web.config.file authenticates every
	// client (basic_auth_users, or client certificates required and
	// verified). Only then may a client that is not on loopback kill.
	Authenticated bool
}

// KillRequest is the body of POST /kill.
type KillRequest struct {
	Pool string `json:"pool"`
	PID  int    `json:"pid"`
}

const maxKillBody = 4 << 10

// WithControl adds to h, the read-only handler, the two endpoints that
// `fpmguard top --from` uses: GET /slowlog?pool=P&pid=N, read-only like
// the rest, and POST /kill, the one endpoint that acts, refused unless
// policy allows it (see KillPolicy and the README's security section).
func WithControl(h http.Handler, current func() Controller, policy KillPolicy) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("/slowlog", readOnly(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c := current()
		if c == nil {
			http.Error(rw, "not watching any pool: see fpmguard's log", http.StatusServiceUnavailable)
			return
		}
		pid, err := strconv.Atoi(r.URL.Query().Get("pid"))
		if err != nil || pid <= 0 {
			http.Error(rw, "slowlog needs ?pool=NAME&pid=N", http.StatusBadRequest)
			return
		}
		entry, err := c.Slowlog(r.URL.Query().Get("pool"), pid)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(rw, struct {
			Slowlog string `json:"slowlog"`
		}{entry})
	})))
	mux.HandleFunc("/kill", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Content-Type-Options", "nosniff")
		rw.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", "POST")
			http.Error(rw, "kill takes POST with a JSON body {\"pool\": NAME, \"pid\": N}", http.StatusMethodNotAllowed)
			return
		}
		if why := policy.refuse(r); why != "" {
			http.Error(rw, why, http.StatusForbidden)
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			// A browser cannot send this type across origins without
			// asking first, which fpmguard never allows.
			http.Error(rw, "kill takes Content-Type: application/json", http.StatusUnsupportedMediaType)
			return
		}
		var req KillRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxKillBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.Pool == "" || req.PID <= 0 {
			http.Error(rw, "kill takes a JSON body {\"pool\": NAME, \"pid\": N}", http.StatusBadRequest)
			return
		}
		c := current()
		if c == nil {
			http.Error(rw, "not watching any pool: see fpmguard's log", http.StatusServiceUnavailable)
			return
		}
		res, err := c.KillWorker(r.Context(), req.Pool, req.PID, asker(r))
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, watch.ErrUnknownPool) {
				code = http.StatusNotFound
			}
			http.Error(rw, err.Error(), code)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		switch {
		case res.Done():
		case res.Result == watch.ResultError:
			rw.WriteHeader(http.StatusInternalServerError)
		default: // refused, capped, budget: a rule said no
			rw.WriteHeader(http.StatusConflict)
		}
		_ = json.NewEncoder(rw).Encode(res)
	})
	return mux
}

// refuse says why the policy turns r away, "" when it may ask.
func (p KillPolicy) refuse(r *http.Request) string {
	if !p.Enabled {
		return "killing over HTTP is off: start fpmguard serve (or run) with --web.enable-kill to allow it"
	}
	if p.Authenticated {
		return ""
	}
	if !loopbackAddr(r.RemoteAddr) {
		return fmt.Sprintf("kill refused for %s: without basic_auth_users or verified client certificates in --web.config.file, only a client on this machine (loopback) may kill", r.RemoteAddr)
	}
	// A web page can make a browser on this machine send requests to
	// loopback under a name of its own (DNS rebinding); such a request
	// carries that name in Host.
	if !loopbackHost(r.Host) {
		return fmt.Sprintf("kill refused: Host %q is not a loopback address or localhost", r.Host)
	}
	return ""
}

// asker names who asked for a kill, for the event.
func asker(r *http.Request) string {
	who := "HTTP client " + r.RemoteAddr
	if user, _, ok := r.BasicAuth(); ok {
		who += " (user " + user + ")"
	}
	return who
}

func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AuthenticatesClients reads the exporter-toolkit web config at path and
// reports whether it authenticates every client: basic_auth_users, or TLS
// with client_auth_type RequireAndVerifyClientCert. TLS alone encrypts but
// lets anyone in. An empty path authenticates nobody.
func AuthenticatesClients(path string) (bool, error) {
	if path == "" {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("reading --web.config.file: %w", err)
	}
	var cfg struct {
		TLS struct {
			ClientAuth string `yaml:"client_auth_type"`
		} `yaml:"tls_server_config"`
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return false, fmt.Errorf("reading --web.config.file %s: %w", path, err)
	}
	return len(cfg.Users) > 0 || cfg.TLS.ClientAuth == "RequireAndVerifyClientCert", nil
}
