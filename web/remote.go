package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// maxSnapshotBytes bounds what a remote snapshot may take in memory.
const maxSnapshotBytes = 32 << 20

// Remote is a running `fpmguard serve` or `run` seen over HTTP: its
// snapshot, the slowlog entries it reads, and the kills it may be asked
// for. It is what `fpmguard top --from` reads.
type Remote struct {
	base   *url.URL
	client *http.Client
}

// NewRemote reads the serve at base (http://HOST:9253, or https://). A
// user and password in base, or password alone from the environment
// (FPMGUARD_PASSWORD, kept out of the process list), answer its basic auth.
// Each request ends within timeout.
func NewRemote(base, password string, timeout time.Duration) (*Remote, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("--from %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--from %q: want http://HOST:PORT or https://HOST:PORT of a running fpmguard serve", base)
	}
	if password != "" && u.User != nil {
		u.User = url.UserPassword(u.User.Username(), password)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Remote{base: u, client: &http.Client{Timeout: timeout}}, nil
}

// String names the remote without its password.
func (r *Remote) String() string { return r.base.Redacted() }

func (r *Remote) url(path string, q url.Values) string {
	u := *r.base
	u.Path += path
	u.RawQuery = q.Encode()
	return u.String()
}

// Snapshot reads GET /snapshot.
func (r *Remote) Snapshot(ctx context.Context) (*watch.Snapshot, error) {
	body, code, err := r.do(ctx, http.MethodGet, r.url("/snapshot", nil), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s/snapshot answered %d: %s", r, code, oneLine(body))
	}
	return DecodeSnapshot(bytes.NewReader(body))
}

var _ watch.Control = (*Remote)(nil)

// Slowlog reads the newest slowlog entry of worker pid of pool. An error
// is the remote's word on why there is none.
func (r *Remote) Slowlog(ctx context.Context, pool string, pid int) (string, error) {
	var out struct {
		Slowlog string `json:"slowlog"`
	}
	err := r.getWorker(ctx, "/slowlog", pool, pid, &out)
	return out.Slowlog, err
}

// Stack asks the remote to read the PHP stack of worker pid of pool now.
func (r *Remote) Stack(ctx context.Context, pool string, pid int) (*supervisor.Stack, error) {
	var out struct {
		Stack *supervisor.Stack `json:"stack"`
	}
	if err := r.getWorker(ctx, "/stack", pool, pid, &out); err != nil {
		return nil, err
	}
	if out.Stack == nil {
		return nil, fmt.Errorf("%s/stack answered no stack", r)
	}
	return out.Stack, nil
}

// getWorker reads one of the remote's answers on a worker into out.
func (r *Remote) getWorker(ctx context.Context, path, pool string, pid int, out any) error {
	body, code, err := r.do(ctx, http.MethodGet, r.url(path, url.Values{"pool": {pool}, "pid": {strconv.Itoa(pid)}}), nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s (HTTP %d from %s)", oneLine(body), code, r)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("reading %s's answer to %s: %w", r, path, err)
	}
	return nil
}

// KillWorker asks the remote to kill worker pid of pool with POST /kill.
// The remote names the asker itself, by its HTTP client: who is not
// sent. A refusal, the remote's rules' or its policy's, is a result in
// plain words; an error means the remote could not be asked.
func (r *Remote) KillWorker(ctx context.Context, pool string, pid int, _ string) (watch.KillResult, error) {
	req, _ := json.Marshal(KillRequest{Pool: pool, PID: pid})
	body, code, err := r.do(ctx, http.MethodPost, r.url("/kill", nil), req)
	if err != nil {
		return watch.KillResult{}, err
	}
	var res watch.KillResult
	if json.Unmarshal(body, &res) == nil && res.Result != "" {
		return res, nil
	}
	result := watch.ResultRefused
	if code >= 500 {
		result = watch.ResultError
	}
	return watch.KillResult{Result: result, Message: fmt.Sprintf("%s (HTTP %d from %s)", oneLine(body), code, r)}, nil
}

func (r *Remote) do(ctx context.Context, method, target string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("asking %s: %w", r, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL may hold a password
		}
		return nil, 0, fmt.Errorf("asking %s: %w", r, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSnapshotBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s's answer: %w", r, err)
	}
	if len(data) > maxSnapshotBytes {
		return nil, 0, fmt.Errorf("%s answered more than %d MiB", r, maxSnapshotBytes>>20)
	}
	return data, resp.StatusCode, nil
}

func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
