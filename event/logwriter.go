package event

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"
)

// droppedLogLines counts log lines that could not be written, for every
// logger of the process: there is one stderr.
var droppedLogLines atomic.Uint64

// DroppedLogLines is how many log lines fpmguard could not write (a closed
// pipe, a full disk, a reader that stopped reading) since it started.
func DroppedLogLines() uint64 { return droppedLogLines.Load() }

// logQueueLines is how many lines may wait for a slow reader: minutes of
// events at any rate fpmguard logs them.
const logQueueLines = 4096

// LogWriter is where fpmguard's logger writes. A line that cannot be
// written is dropped and counted: losing a log line is better than
// stopping, and fpmguard must keep supervising php-fpm when whatever reads
// its output has gone away. Lines are written by a goroutine of their own,
// through a queue: a reader that stops reading without closing (a stalled
// journald, a pipe to a stopped process) fills the queue, and further lines
// are dropped, instead of blocking the probe loop that logged them.
type LogWriter struct {
	w       io.Writer
	lines   chan []byte
	queued  atomic.Uint64 // lines handed to the queue
	written atomic.Uint64 // lines the goroutine is done with, written or not
}

// NewLogWriter wraps w, and starts the goroutine that writes to it.
func NewLogWriter(w io.Writer) *LogWriter {
	lw := &LogWriter{w: w, lines: make(chan []byte, logQueueLines)}
	go lw.loop()
	return lw
}

// Write queues p, one log line: slog handlers write each record with one
// call. It never fails, and never waits for the reader.
func (lw *LogWriter) Write(p []byte) (int, error) {
	select {
	case lw.lines <- bytes.Clone(p):
		lw.queued.Add(1)
	default:
		droppedLogLines.Add(1)
	}
	return len(p), nil
}

func (lw *LogWriter) loop() {
	for p := range lw.lines {
		if _, err := lw.w.Write(p); err != nil {
			droppedLogLines.Add(1)
		}
		lw.written.Add(1)
	}
}

// Flush waits up to d for the lines queued so far to be written, and
// reports whether they were: before fpmguard exits, its last lines say
// why. A reader that does not read makes it wait d, no more.
func (lw *LogWriter) Flush(d time.Duration) bool {
	want := lw.queued.Load()
	for deadline := time.Now().Add(d); lw.written.Load() < want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
