package fastcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Class names a failure the way nginx users meet it: each class maps to the
// answer nginx would give for the same failure of its upstream.
type Class int

// The failure classes. The first ones are transport failures (nginx answers
// 502 or 504); the last ones are answers from php-fpm itself.
const (
	ClassRefused     Class = iota + 1 // nothing listens on the address
	ClassMissing                      // the unix socket does not exist
	ClassPermission                   // the socket exists but we may not connect
	ClassBacklog                      // the listen backlog is full (EAGAIN)
	ClassReset                        // connection reset or closed before the response ended
	ClassTimeout                      // no complete response in time
	ClassBadResponse                  // not a valid FastCGI/CGI response
	ClassNotFound                     // php-fpm answered 404 (unknown script or path)
	ClassForbidden                    // php-fpm answered 403 (security.limit_extensions)
	ClassHTTPStatus                   // php-fpm answered another non-200 status
)

var classNames = map[Class]string{
	ClassRefused:     "connection refused",
	ClassMissing:     "socket missing",
	ClassPermission:  "permission denied",
	ClassBacklog:     "listen backlog full",
	ClassReset:       "connection closed early",
	ClassTimeout:     "timeout",
	ClassBadResponse: "bad response",
	ClassNotFound:    "not found",
	ClassForbidden:   "access denied",
	ClassHTTPStatus:  "error status",
}

func (c Class) String() string {
	if s, ok := classNames[c]; ok {
		return s
	}
	return "unknown"
}

// MarshalText writes the class as its name, as reports show it.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads a name MarshalText wrote, so that a report read back
// from JSON (a remote's /snapshot) keeps its classes. A name this version
// does not know reads as 0, "unknown", as an error that is not FastCGI's.
func (c *Class) UnmarshalText(b []byte) error {
	*c = 0
	for k, name := range classNames {
		if name == string(b) {
			*c = k
		}
	}
	return nil
}

// Reason is the short, fixed label of a failure used in metrics.
type Reason string

// The reasons, each covering one or more classes.
const (
	ReasonRefused     Reason = "refused" // refused, or the socket missing
	ReasonPermission  Reason = "permission"
	ReasonBacklog     Reason = "backlog"
	ReasonReset       Reason = "reset"
	ReasonTimeout     Reason = "timeout"
	ReasonBadResponse Reason = "bad_response" // anything else
)

// Reasons lists every reason, for metrics that show each from the start.
var Reasons = []Reason{ReasonRefused, ReasonPermission, ReasonBacklog, ReasonReset, ReasonTimeout, ReasonBadResponse}

// Reason is the class's reason.
func (c Class) Reason() Reason {
	switch c {
	case ClassRefused, ClassMissing:
		return ReasonRefused
	case ClassPermission:
		return ReasonPermission
	case ClassBacklog:
		return ReasonBacklog
	case ClassReset:
		return ReasonReset
	case ClassTimeout:
		return ReasonTimeout
	}
	return ReasonBadResponse
}

// Transport reports whether the failure happened before php-fpm could answer
// at all, as opposed to php-fpm answering with an error.
func (c Class) Transport() bool { return c < ClassNotFound }

// Error is a classified FastCGI failure.
type Error struct {
	Op     string  // what was being done, e.g. "GET /status?json&full"
	Addr   Address // where
	Class  Class
	Status int    // the HTTP status php-fpm answered, for the answer classes
	Hint   string // what a person can do about it
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s on %s: %v", e.Op, e.Addr, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NginxStatus is what nginx would answer a client for the same failure.
func (e *Error) NginxStatus() int {
	switch e.Class {
	case ClassTimeout:
		return http.StatusGatewayTimeout
	case ClassNotFound, ClassForbidden, ClassHTTPStatus:
		return e.Status
	}
	return http.StatusBadGateway
}

// AsError returns the classified error inside err, if any.
func AsError(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}

// ClassOf returns the class of err, or 0 when err is not a FastCGI failure.
func ClassOf(err error) Class {
	if fe, ok := AsError(err); ok {
		return fe.Class
	}
	return 0
}

// errTooLarge and friends are protocol failures found while reading.
var (
	errTooLarge   = errors.New("response larger than the limit")
	errEndedEarly = errors.New("connection closed before the response ended")
)

// classify turns a dial, read or write error into an Error with a hint.
func classify(op string, addr Address, timeout time.Duration, err error) *Error {
	e := &Error{Op: op, Addr: addr, Err: err}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.Class = ClassTimeout
		e.Err = fmt.Errorf("timeout after %s", timeout)
		e.Hint = "no answer in time: every worker may be busy or hung (nginx answers 504); see the worker table of `fpmguard status`"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Class = ClassRefused
		e.Hint = "nothing listens there (nginx answers 502): php-fpm is stopped, or the pool's `listen` is elsewhere"
	case errors.Is(err, syscall.ENOENT):
		e.Class = ClassMissing
		e.Hint = "the socket file does not exist (nginx answers 502): php-fpm is not running, or the pool's `listen` names another path"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		e.Class = ClassPermission
		e.Hint = "run fpmguard as root or as the pool's listen.owner (or a member of listen.group), or widen listen.mode"
	case errors.Is(err, syscall.EAGAIN):
		e.Class = ClassBacklog
		e.Hint = "the listen backlog is full (nginx answers 502): every worker is busy and the queue overflowed; find what holds the workers, or raise pm.max_children or listen.backlog"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errEndedEarly):
		e.Class = ClassReset
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			e.Err = errEndedEarly
		}
		e.Hint = "php-fpm closed the connection before the response ended (nginx answers 502): a worker crashed or was killed; see php-fpm's error log"
	default:
		e.Class = ClassBadResponse
		e.Hint = "the peer does not speak FastCGI as php-fpm does (nginx answers 502): check that the address is php-fpm's listen socket"
	}
	return e
}
