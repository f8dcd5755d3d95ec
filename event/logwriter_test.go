package event

import (
	"log/slog"
	"os"
	"testing"
)

// TestLogWriterDropsAndCounts: lines written to a pipe nobody reads are
// dropped and counted, and the logger carries on.
func TestLogWriterDropsAndCounts(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	logger := slog.New(slog.NewTextHandler(NewLogWriter(w), nil))
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
	if got := DroppedLogLines() - before; got != 2 {
		t.Errorf("%d lines dropped after the reader closed, want 2", got)
	}
}
