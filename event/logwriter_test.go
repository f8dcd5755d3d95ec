package event

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLogWriterDropsAndCounts: lines written to a pipe nobody reads are
// dropped and counted, and the logger carries on.
func TestLogWriterDropsAndCounts(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lw := NewLogWriter(w)
	logger := slog.New(slog.NewTextHandler(lw, nil))
	before := DroppedLogLines()
	logger.Info("read")
	buf := make([]byte, 512)
	if n, err := r.Read(buf); err != nil || n == 0 {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if got := DroppedLogLines() - before; got != 0 {
		t.Errorf("%d lines dropped while the pipe was read", got)
	}
	r.Close()
	logger.Info("lost")
	logger.Warn("lost too")
	if !lw.Flush(time.Minute) {
		t.Fatal("lines to a closed pipe still queued after a minute")
	}
	if got := DroppedLogLines() - before; got != 2 {
		t.Errorf("%d lines dropped after the reader closed, want 2", got)
	}
}

// TestLogWriterNeverWaitsForAReader: a reader that stops reading without
// closing fills the pipe and then the queue; the logger goes on, the lines
// beyond them are dropped and counted, and Flush gives up at its deadline.
// 10,000 lines of 200 bytes are 30 times what the pipe holds: a logger that
// waited for the reader would never end.
func TestLogWriterNeverWaitsForAReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	lw := NewLogWriter(w)
	logger := slog.New(slog.NewTextHandler(lw, nil))
	before := DroppedLogLines()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			logger.Info(strings.Repeat("x", 150))
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the logger waits for a reader that does not read")
	}
	if got := DroppedLogLines() - before; got < 10000-logQueueLines-(64<<10)/150 {
		t.Errorf("%d lines dropped, want the lines beyond the queue and the pipe", got)
	}
	if lw.Flush(10 * time.Millisecond) {
		t.Error("Flush says the lines are written while nobody reads them")
	}
}
