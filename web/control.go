package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
	"go.yaml.in/yaml/v3"
)

// Policy says which clients may reach what over HTTP. The reasoning is in
// docs/security-surface.md ("HTTP").
//
//   - Every answer needs a Host header that is an IP address, localhost or
//     a name of Hosts: a web page whose own name an attacker points at
//     fpmguard's address (DNS rebinding) sends that name, and is refused.
//   - Worker details (/status, /snapshot, /events, /slowlog, /stack:
//     request URIs, scripts, slowlog and PHP stacks) go to clients on
//     loopback that name a
//     loopback Host, or to any client when the web config authenticates
//     every client. /metrics, /healthz, /readyz and /advice hold none; the
//     status page (/ and /fragment) shows them to the same clients only,
//     and a kill button only to a client that may kill.
//   - POST /kill needs Kill, and authenticated clients, or KillFromLoopback
//     and a client on loopback.
type Policy struct {
	// Hosts are the names a request's Host may carry besides IP
	// addresses and localhost: --web.allowed-host and the names in
	// --web.listen-address. A leading dot (".example.com") allows the
	// domain and every name below it.
	Hosts []string
	// Authenticated is true when --web.config.file authenticates every
	// client (basic_auth_users, or client certificates required and
	// verified): every request that reaches fpmguard's handlers is then
	// a known client's.
	Authenticated bool
	// Kill is --web.enable-kill. Off, POST /kill is refused.
	Kill bool
	// KillFromLoopback is --web.kill-from-loopback: without
	// authentication, a client on loopback may kill. On a host that is any
	// local user; in a pod, any of its containers, the PHP application's
	// included.
	KillFromLoopback bool
	// Log, when set, hears once of each Host refused, so that an operator
	// whose scrapes fail learns why.
	Log *slog.Logger
}

// KillRequest is the body of POST /kill. Pool names the pool as
// supervisor.FindPool reads it: its name alone when no other pool has it,
// else NAME@MASTER.
type KillRequest struct {
	Pool string `json:"pool"`
	PID  int    `json:"pid"`
}

const maxKillBody = 4 << 10

// sameOrigin refuses a POST a browser makes for another site's page.
var sameOrigin = http.NewCrossOriginProtection()

// detailPaths are the answers that carry worker details: request URIs
// and scripts (in reports, reasons and events), slowlog and PHP stacks.
var detailPaths = []string{"/status", "/snapshot", "/events", "/slowlog", "/stack"}

// WithControl serves h, the read-only handler, under policy, and adds the
// endpoints that `fpmguard top --from` uses besides /snapshot: GET
// /slowlog?pool=P&pid=N and GET /stack?pool=P&pid=N, read-only like the
// rest, and POST /kill, the one endpoint that acts. It is what fpmguard
// serves: the policy's checks (Host, worker details, kill) are made here,
// around every route.
func WithControl(h http.Handler, current func() watch.Control, policy Policy) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	// worker reads pool and pid of a GET, and asks the watcher.
	worker := func(what string, ask func(ctx context.Context, c watch.Control, pool string, pid int) (any, error)) http.Handler {
		return readOnly(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			c := current()
			if c == nil {
				http.Error(rw, "not watching any pool: see fpmguard's log", http.StatusServiceUnavailable)
				return
			}
			pid, err := strconv.Atoi(r.URL.Query().Get("pid"))
			if err != nil || pid <= 0 {
				http.Error(rw, what+" needs ?pool=NAME&pid=N", http.StatusBadRequest)
				return
			}
			v, err := ask(r.Context(), c, r.URL.Query().Get("pool"), pid)
			if err != nil {
				http.Error(rw, err.Error(), controlStatus(err))
				return
			}
			writeJSON(rw, v)
		}))
	}
	mux.Handle("/slowlog", worker("slowlog", func(ctx context.Context, c watch.Control, pool string, pid int) (any, error) {
		entry, err := c.Slowlog(ctx, pool, pid)
		return struct {
			Slowlog string `json:"slowlog"`
		}{entry}, err
	}))
	mux.Handle("/stack", worker("stack", func(ctx context.Context, c watch.Control, pool string, pid int) (any, error) {
		st, err := c.Stack(ctx, pool, pid)
		return struct {
			Stack *supervisor.Stack `json:"stack"`
		}{st}, err
	}))
	mux.HandleFunc("/kill", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Content-Type-Options", "nosniff")
		rw.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", "POST")
			http.Error(rw, "kill takes POST with a JSON body {\"pool\": NAME, \"pid\": N}", http.StatusMethodNotAllowed)
			return
		}
		if why := policy.refuseKill(r); why != "" {
			http.Error(rw, why, http.StatusForbidden)
			return
		}
		if err := sameOrigin.Check(r); err != nil {
			// A browser says where a request comes from (Sec-Fetch-Site,
			// Origin): only the status page's own may kill. top --from
			// and curl send neither.
			http.Error(rw, "kill refused: the request comes from another site's page ("+err.Error()+")", http.StatusForbidden)
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
			http.Error(rw, err.Error(), poolErrorCode(err, http.StatusInternalServerError))
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
	return policy.guard(mux)
}

// controlStatus is the HTTP status of an error of a worker's read: 400
// for a pool name more than one pool has, 404 for what does not exist (a
// pool, a worker, a slowlog or its entry), 500 for what fpmguard could not
// read.
func controlStatus(err error) int {
	var se *supervisor.SlowlogError
	if errors.Is(err, watch.ErrNotAWorker) || errors.As(err, &se) && se.Reason != supervisor.SlowlogUnreadable {
		return http.StatusNotFound
	}
	return poolErrorCode(err, http.StatusInternalServerError)
}

// poolErrorCode is the status of a request that failed with err: a pool
// not watched is 404, a name more than one pool has (www under two
// masters) 400, as the client must name one; else code.
func poolErrorCode(err error, code int) int {
	switch {
	case errors.Is(err, watch.ErrUnknownPool):
		return http.StatusNotFound
	case errors.Is(err, watch.ErrAmbiguousPool):
		return http.StatusBadRequest
	}
	return code
}

// guard makes the checks every route shares: the Host, then worker
// details.
func (p Policy) guard(h http.Handler) http.Handler {
	refused := newOnce(64)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, p.Hosts) {
			if p.Log != nil && refused.first(r.Host) {
				p.Log.Warn("HTTP request refused for its Host header: fpmguard answers to IP addresses, localhost and the names of --web.allowed-host",
					"host", r.Host, "client", r.RemoteAddr)
			}
			rw.Header().Set("X-Content-Type-Options", "nosniff")
			http.Error(rw, fmt.Sprintf("Host %q is not one fpmguard answers to: it answers to IP addresses, localhost and the names given with --web.allowed-host, so that a web page on another site cannot read it by pointing its own name at this address (DNS rebinding)", r.Host), http.StatusForbidden)
			return
		}
		if slices.Contains(detailPaths, r.URL.Path) && !p.local(r) && !p.Authenticated {
			rw.Header().Set("X-Content-Type-Options", "nosniff")
			http.Error(rw, r.URL.Path+" holds worker details (request URIs, scripts, slowlog stacks): fpmguard serves them to clients on this machine (loopback), or to clients --web.config.file authenticates (basic_auth_users, or verified client certificates). /metrics, /healthz, /readyz and /advice are open", http.StatusForbidden)
			return
		}
		if isPagePath(r.URL.Path) {
			r = withAccess(r, access{details: p.local(r) || p.Authenticated, kill: p.refuseKill(r) == ""})
		}
		h.ServeHTTP(rw, r)
	})
}

// local reports a client on loopback that names a loopback Host. A web
// page can make a browser on this machine send requests to loopback under
// a name of its own (DNS rebinding); such a request carries that name.
func (p Policy) local(r *http.Request) bool {
	return loopbackAddr(r.RemoteAddr) && loopbackHost(r.Host)
}

// refuseKill says why the policy turns r away, "" when it may kill.
func (p Policy) refuseKill(r *http.Request) string {
	switch {
	case !p.Kill:
		return "killing over HTTP is off: start fpmguard serve (or run) with --web.enable-kill to allow it"
	case p.Authenticated:
		return ""
	case !p.KillFromLoopback:
		return "kill refused: --web.config.file authenticates no client (basic_auth_users, or verified client certificates), and --web.kill-from-loopback is not given"
	case !loopbackAddr(r.RemoteAddr):
		return fmt.Sprintf("kill refused for %s: without basic_auth_users or verified client certificates in --web.config.file, only a client on this machine (loopback) may kill", r.RemoteAddr)
	case !loopbackHost(r.Host):
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
	host := hostName(hostport)
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
