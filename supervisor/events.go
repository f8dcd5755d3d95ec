package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Event is one thing a person may want to know happened: a verdict change,
// a detection, an action and its result.
type Event struct {
	Time    time.Time `json:"time"`
	Pool    string    `json:"pool,omitempty"`
	Master  int       `json:"master,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
	// Worker holds what was known of the worker an action touched,
	// recorded before the action.
	Worker *WorkerRecord `json:"worker,omitempty"`
}

// WorkerRecord is a worker as seen before fpmguard acted on it.
type WorkerRecord struct {
	State      string  `json:"state"` // php-fpm's word for it: never Idle
	URI        string  `json:"request_uri"`
	Script     string  `json:"script"`
	Method     string  `json:"request_method"`
	AgeSeconds float64 `json:"request_age_seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   uint64  `json:"rss_bytes"`
	OSState    OSState `json:"os_state"`
	HungKind   string  `json:"hung_kind,omitempty"`
	Slowlog    string  `json:"slowlog,omitempty"` // the pool's slowlog entry for this pid
}

// LogValue logs the record as a group.
func (w *WorkerRecord) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("state", w.State), slog.String("request_method", w.Method), slog.String("request_uri", w.URI), slog.String("script", w.Script),
		slog.Float64("request_age_seconds", w.AgeSeconds), slog.Float64("cpu_seconds", w.CPUSeconds),
		slog.Uint64("rss_bytes", w.RSSBytes), slog.String("os_state", string(w.OSState)),
	}
	if w.HungKind != "" {
		attrs = append(attrs, slog.String("hung_kind", w.HungKind))
	}
	if w.Slowlog != "" {
		attrs = append(attrs, slog.String("slowlog", w.Slowlog))
	}
	return slog.GroupValue(attrs...)
}

// Event kinds.
const (
	EventHealth        = "health"         // a pool's verdict changed
	EventHung          = "hung"           // a worker became hung
	EventStopped       = "stopped"        // a worker is stopped (T)
	EventZombie        = "zombie"         // a worker is a zombie
	EventDiskSleep     = "disk_sleep"     // a worker stays in D state
	EventHeartbeat     = "heartbeat"      // the heartbeat failed N times in a row
	EventMaster        = "master"         // the master is gone, stopped, or its children do not match
	EventMaxChildren   = "max_children"   // max children reached rose
	EventListenQueue   = "listen_queue"   // requests wait in the listen queue
	EventRecovered     = "recovered"      // a pool is ok again
	EventAction        = "action"         // fpmguard acted, or would have under --dry-run
	EventActionRefused = "action_refused" // a safety rule stopped an action
	EventBudget        = "budget"         // the action budget is spent: report only
	EventOpcache       = "opcache"        // an opcache verdict changed
	EventMasterRestart = "master_restart" // run restarted php-fpm
	EventNginxUpstream = "nginx_upstream" // nginx logged upstream failures
	EventStarved       = "starved"        // fpmguard is starved of CPU and probes less often, or has CPU again
	EventConfig        = "config"         // SIGHUP reloaded the configuration
	maxEventsKept      = 1000
)

// EventLog keeps the recent events in memory and logs each as it comes.
type EventLog struct {
	mu     sync.Mutex
	events []Event
	logger *slog.Logger
}

// NewEventLog logs events to logger; nil logs nothing.
func NewEventLog(logger *slog.Logger) *EventLog {
	return &EventLog{logger: logger}
}

// Add records an event, stamping its time when unset.
func (l *EventLog) Add(e Event) {
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
		attrs := []slog.Attr{slog.String("kind", e.Kind)}
		if e.Pool != "" {
			attrs = append(attrs, slog.String("pool", e.Pool))
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
		if e.Kind != EventRecovered && e.Kind != EventHealth {
			level = slog.LevelWarn
		}
		l.logger.LogAttrs(context.Background(), level, e.Message, attrs...)
	}
}

// Recent returns up to n of the newest events, oldest first.
func (l *EventLog) Recent(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n <= 0 || n > len(l.events) {
		n = len(l.events)
	}
	return append([]Event(nil), l.events[len(l.events)-n:]...)
}
