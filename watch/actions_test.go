package watch

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

// TestSlowlogEntryOnlyReadsFiles: a slowlog that is not a regular file (a
// container's /proc/self/fd/2, a pipe) is never read: the read would not
// end.
func TestSlowlogEntryOnlyReadsFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "slow.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() { done <- slowlogEntry(supervisor.Target{Slowlog: fifo}, 42) }()
	select {
	case got := <-done:
		if got != "" {
			t.Errorf("got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("reading a FIFO slowlog blocked")
	}
	file := filepath.Join(t.TempDir(), "slow.log")
	entry := "[26-Nov-2026 09:00:00]  [pool www] pid 42\nscript_filename = /var/www/a.php\n[0x1] sleep() /var/www/a.php:2"
	if err := os.WriteFile(file, []byte("[26-Nov-2026 08:59:00]  [pool www] pid 7\nscript_filename = /x.php\n\n"+entry+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := slowlogEntry(supervisor.Target{Slowlog: file}, 42); got != entry {
		t.Errorf("entry %q, want %q", got, entry)
	}
}
