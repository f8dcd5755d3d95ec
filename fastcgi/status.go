package fastcgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Status is php-fpm's status page for one pool, as `?json&full` or `?full`
// give it. Counts are what php-fpm says; callers that need a reliable count
// derive it from Processes (php-fpm's "max active processes" can be wrong).
type Status struct {
	Pool               string
	ProcessManager     string
	StartTime          time.Time
	StartSince         int64 // seconds
	AcceptedConn       uint64
	ListenQueue        int64
	MaxListenQueue     int64
	ListenQueueLen     int64
	IdleProcesses      int64
	ActiveProcesses    int64
	TotalProcesses     int64
	MaxActiveProcesses int64
	MaxChildrenReached uint64
	SlowRequests       uint64
	MemoryPeak         int64 // bytes; PHP 8.4+, -1 when absent
	Processes          []Process
}

// Process is one worker's line on the full status page.
type Process struct {
	PID               int
	State             string // e.g. Idle, Running, Reading headers
	StartTime         time.Time
	StartSince        int64 // seconds
	Requests          uint64
	RequestDuration   time.Duration // the age of the request in flight when not Idle
	RequestMethod     string
	RequestURI        string // raw, query included: strip before output
	ContentLength     int64
	User              string
	Script            string
	LastRequestCPU    float64 // percent
	LastRequestMemory int64   // bytes

	// unforked: pid 0, the slot of a child php-fpm is starting (it fills
	// the slot before it forks, and the pid after). No process yet: the
	// reader leaves it out.
	unforked bool
}

// Idle reports whether php-fpm counts the worker as idle. For an idle worker
// RequestDuration is the length of its last request, not an age.
func (p Process) Idle() bool { return p.State == StateIdle }

// StateIdle is php-fpm's word for a worker waiting for a request.
const StateIdle = "Idle"

// The status page queries fpmguard sends: JSON, and plain text when a
// broken JSON document cannot be read.
const (
	StatusQuery     = "json&full"
	StatusTextQuery = "full"
)

// Status reads the full status page of the pool whose status listener is
// addr, at path (pm.status_path).
func (c Client) Status(ctx context.Context, addr Address, path string) (*Status, error) {
	// The fallback to plain text shares the one timeout.
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	st, err := c.statusPage(ctx, addr, Request{Path: path, Query: StatusQuery})
	if fe, ok := AsError(err); ok && fe.Class == ClassBadResponse && errors.Is(err, errSyntax) {
		// One URI php-fpm did not escape must not cost the whole pool.
		if text, terr := c.statusPage(ctx, addr, Request{Path: path, Query: StatusTextQuery}); terr == nil {
			return text, nil
		}
	}
	return st, err
}

func (c Client) statusPage(ctx context.Context, addr Address, req Request) (*Status, error) {
	resp, err := c.Do(ctx, addr, req)
	if err != nil {
		return nil, statusHint(err, req.Path)
	}
	st, err := ParseStatus(resp.Body)
	if err != nil {
		return nil, &Error{Op: req.describe(), Addr: addr, Class: ClassBadResponse, Err: err,
			Hint: fmt.Sprintf("%s does not answer with a php-fpm status page: check that pm.status_path is %s", addr, req.Path)}
	}
	return st, nil
}

func statusHint(err error, path string) error {
	if fe, ok := AsError(err); ok && fe.Class == ClassNotFound {
		fe.Hint = fmt.Sprintf("php-fpm has no status page at %s: add `pm.status_path = %s` to the pool (and `pm.status_listen` for a socket that answers when every worker is busy), or pass the pool's real status path", path, path)
	}
	return err
}

// Ping sends a GET to the pool's ping.path through addr and checks the
// answer against want (ping.response). The ping is served by a worker, so it
// fails exactly when nginx cannot get a worker either.
func (c Client) Ping(ctx context.Context, addr Address, path, want string) (time.Duration, error) {
	start := time.Now()
	req := Request{Path: path}
	resp, err := c.Do(ctx, addr, req)
	elapsed := time.Since(start)
	if fe, ok := AsError(err); ok && fe.Class == ClassNotFound {
		fe.Hint = fmt.Sprintf("php-fpm has no ping endpoint at %s: add `ping.path = %s` to the pool, or pass the pool's real ping path", path, path)
	}
	if err != nil {
		return elapsed, err
	}
	if got := strings.TrimSpace(string(resp.Body)); got != want {
		return elapsed, &Error{Op: req.describe(), Addr: addr, Class: ClassBadResponse, Status: resp.Status,
			Err:  pingMismatch{got: truncate(got, 40), want: want},
			Hint: fmt.Sprintf("set the expected answer to the pool's ping.response, or set `ping.response = %s` in the pool", want)}
	}
	return elapsed, nil
}

// ErrPingResponse is in the error of a ping that a worker answered with
// another text than ping.response: the pool serves; only the answer
// expected of it is wrong.
var ErrPingResponse = errors.New("the ping's answer is not ping.response")

type pingMismatch struct{ got, want string }

func (e pingMismatch) Error() string { return fmt.Sprintf("ping answered %q, want %q", e.got, e.want) }

func (pingMismatch) Is(target error) bool { return target == ErrPingResponse }

// answerError classifies a non-200 answer from php-fpm.
func answerError(req Request, addr Address, resp *Response) *Error {
	e := &Error{Op: req.describe(), Addr: addr, Status: resp.Status}
	detail := strings.TrimSpace(truncate(string(resp.Body), 80))
	if msg := strings.TrimSpace(truncate(string(resp.Stderr), 120)); msg != "" {
		detail += " (" + msg + ")"
	}
	e.Err = fmt.Errorf("php-fpm answered %d: %s", resp.Status, detail)
	switch resp.Status {
	case http.StatusNotFound:
		e.Class = ClassNotFound
		e.Hint = "php-fpm found no script at SCRIPT_FILENAME: check the path and the pool's chroot/chdir"
	case http.StatusForbidden:
		e.Class = ClassForbidden
		e.Hint = "php-fpm refused the script's extension: see security.limit_extensions in the pool"
	default:
		e.Class = ClassHTTPStatus
		e.Hint = "the script answered an error status; see php-fpm's error log"
	}
	return e
}

// ParseStatus reads a status page in php-fpm's JSON format, or in its
// plain-text format when the document does not start with '{'.
func ParseStatus(b []byte) (*Status, error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseStatusJSON(b)
	}
	return parseStatusText(b)
}
