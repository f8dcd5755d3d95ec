// Package event records what a person may want to know happened: verdict
// changes, detections, actions and their results, kept in memory and
// logged. It imports supervisor for the vocabularies of a worker's record;
// it must not import watch, runner or web, which all write events.
package event

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

// Event is one thing a person may want to know happened: a verdict change,
// a detection, an action and its result.
type Event struct {
	Time time.Time `json:"time"`
	Pool string    `json:"pool,omitempty"`
	// MasterName names the pool's master, or the master the event is
	// about (supervisor.Target.MasterName): with Pool, it tells a pool
	// from one of the same name under another master.
	MasterName string `json:"master_name,omitempty"`
	Master     int    `json:"master,omitempty"` // the master's pid
	PID        int    `json:"pid,omitempty"`
	Kind       Kind   `json:"kind"`
	Message    string `json:"message"`
	// Worker holds what was known of the worker an action touched,
	// recorded before the action.
	Worker *WorkerRecord `json:"worker,omitempty"`
}

// WorkerRecord is a worker as seen before fpmguard acted on it.
type WorkerRecord struct {
	State      string              `json:"state"` // php-fpm's word for it: never Idle
	URI        string              `json:"request_uri"`
	Script     string              `json:"script"`
	Method     string              `json:"request_method"`
	AgeSeconds float64             `json:"request_age_seconds"`
	CPUSeconds float64             `json:"cpu_seconds"`
	RSSBytes   uint64              `json:"rss_bytes"`
	OSState    supervisor.OSState  `json:"os_state"`
	HungKind   supervisor.HungKind `json:"hung_kind,omitempty"`
	Slowlog    string              `json:"slowlog,omitempty"` // the pool's slowlog entry for this pid
	// Wait is what the worker waited for, as last read (package waits).
	Wait string `json:"wait,omitempty"`
	// Stack is its PHP stack read as fpmguard decided to act, innermost
	// first: "wait_db (/var/www/db.php:4)". StackError says why it is
	// missing, or that it is an older one.
	Stack      []string `json:"stack,omitempty"`
	StackError string   `json:"stack_error,omitempty"`
}

// LogValue logs the record as a group.
func (w *WorkerRecord) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("state", w.State), slog.String("request_method", w.Method), slog.String("request_uri", w.URI), slog.String("script", w.Script),
		slog.Float64("request_age_seconds", w.AgeSeconds), slog.Float64("cpu_seconds", w.CPUSeconds),
		slog.Uint64("rss_bytes", w.RSSBytes), slog.String("os_state", string(w.OSState)),
	}
	if w.HungKind != "" {
		attrs = append(attrs, slog.String("hung_kind", string(w.HungKind)))
	}
	if w.Slowlog != "" {
		attrs = append(attrs, slog.String("slowlog", w.Slowlog))
	}
	if w.Wait != "" {
		attrs = append(attrs, slog.String("wait", w.Wait))
	}
	if len(w.Stack) > 0 {
		attrs = append(attrs, slog.Any("stack", w.Stack))
	}
	if w.StackError != "" {
		attrs = append(attrs, slog.String("stack_error", w.StackError))
	}
	return slog.GroupValue(attrs...)
}

// Kind says what an event is about. It reaches JSON and logs as its text.
type Kind string

// Event kinds.
const (
	KindHealth        Kind = "health"         // a pool's verdict changed
	KindHung          Kind = "hung"           // a worker became hung
	KindStopped       Kind = "stopped"        // a worker is stopped (T)
	KindZombie        Kind = "zombie"         // a worker is a zombie
	KindDiskSleep     Kind = "disk_sleep"     // a worker stays in D state
	KindHeartbeat     Kind = "heartbeat"      // the heartbeat failed N times in a row
	KindMaster        Kind = "master"         // the master is gone, stopped, or its children do not match
	KindMaxChildren   Kind = "max_children"   // max children reached rose
	KindListenQueue   Kind = "listen_queue"   // requests wait in the listen queue
	KindRecovered     Kind = "recovered"      // a pool is ok again
	KindAction        Kind = "action"         // fpmguard acted, or would have under --dry-run
	KindActionRefused Kind = "action_refused" // a safety rule stopped an action
	KindBudget        Kind = "budget"         // the action budget is spent: report only
	KindOpcache       Kind = "opcache"        // an opcache verdict changed
	KindMasterRestart Kind = "master_restart" // run restarted php-fpm
	KindNginxUpstream Kind = "nginx_upstream" // nginx logged upstream failures
	KindStarved       Kind = "starved"        // fpmguard is starved of CPU and probes less often, or has CPU again
	KindConfig        Kind = "config"         // SIGHUP reloaded the configuration
	KindDiagnosis     Kind = "diagnosis"      // fpmguard cannot read what workers wait for, their stacks or a log, and how to let it
	KindWorkerExit    Kind = "worker_exit"    // a worker died, not as php-fpm retires workers: why, mid-request or not, and nginx's failures then
	KindPools         Kind = "pools"          // the pools watched changed: php-fpm reloaded or restarted, or a master came
)

// maxEventsKept bounds the memory of the log.
const maxEventsKept = 1000

// Log keeps the recent events in memory and logs each as it comes.
type Log struct {
	mu     sync.Mutex
	events []Event
	logger *slog.Logger
}

// NewLog logs events to logger; nil logs nothing.
func NewLog(logger *slog.Logger) *Log {
	return &Log{logger: logger}
}

// Add records an event, stamping its time when unset.
func (l *Log) Add(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	l.mu.Lock()
	l.events = append(l.events, e)
	if over := len(l.events) - maxEventsKept; over > 0 {
		l.events = append(l.events[:0:0], l.events[over:]...)
	}
	l.mu.Unlock()
	if l.logger != nil {
		attrs := []slog.Attr{slog.String("kind", string(e.Kind))}
		if e.Pool != "" {
			attrs = append(attrs, slog.String("pool", e.Pool))
		}
		if e.MasterName != "" {
			attrs = append(attrs, slog.String("master_name", e.MasterName))
		}
		if e.PID != 0 {
			attrs = append(attrs, slog.Int("pid", e.PID))
		}
		if e.Master != 0 {
			attrs = append(attrs, slog.Int("master", e.Master))
		}
		if w := e.Worker; w != nil {
			attrs = append(attrs, slog.Any("worker", w))
		}
		level := slog.LevelInfo
		if e.Kind != KindRecovered && e.Kind != KindHealth {
			level = slog.LevelWarn
		}
		l.logger.LogAttrs(context.Background(), level, e.Message, attrs...)
	}
}

// Recent returns up to n of the newest events, oldest first: never nil,
// so that JSON shows no event as [], not null.
func (l *Log) Recent(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n <= 0 || n > len(l.events) {
		n = len(l.events)
	}
	return append(make([]Event, 0, n), l.events[len(l.events)-n:]...)
}
