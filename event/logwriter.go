package event

import (
	"io"
	"sync/atomic"
)

// droppedLogLines counts log lines that could not be written, for every
// logger of the process: there is one stderr.
var droppedLogLines atomic.Uint64

// DroppedLogLines is how many log lines fpmguard could not write (a closed
// pipe, a full disk) since it started.
func DroppedLogLines() uint64 { return droppedLogLines.Load() }

// LogWriter is where fpmguard's logger writes. A line that cannot be
// written is dropped and counted: losing a log line is better than
// stopping, and fpmguard must keep supervising php-fpm when whatever reads
// its output has gone away.
type LogWriter struct{ w io.Writer }

// NewLogWriter wraps w.
func NewLogWriter(w io.Writer) *LogWriter { return &LogWriter{w: w} }

// Write writes p, one log line: slog handlers write each record with one
// call. It never fails.
func (lw *LogWriter) Write(p []byte) (int, error) {
	if _, err := lw.w.Write(p); err != nil {
		droppedLogLines.Add(1)
	}
	return len(p), nil
}
