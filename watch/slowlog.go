package watch

import (
	"bytes"
	"io"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/safefile"
	"github.com/fpmguard/fpmguard/supervisor"
)

// What is read of a slowlog: its tail, and of the entry found, its start.
const (
	maxSlowlogRead = 256 << 10
	maxSlowlogKept = 4 << 10
)

// slowlogEntry returns the pool's newest slowlog entry for pid, or "". The
// slowlog is read inside the master's root, as a regular file (a
// container's slowlog is often /proc/self/fd/2, from here fpmguard's own
// stderr, where a read would never end) that is no link, owned by a user
// whose masters tr trusts: the master writes it, and the pool user may own
// its directory. Its entries reach /slowlog and the events.
func slowlogEntry(t supervisor.Target, pid int, tr supervisor.Trust) string {
	if t.Slowlog == "" {
		return ""
	}
	// The bound is on what is read, not on the file: a slowlog grows.
	f, fi, err := safefile.Open(t.Root, t.Slowlog, safefile.Rules{MaxBytes: 1 << 62, Owners: tr.FileOwners()})
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi.Size() > maxSlowlogRead {
		_, _ = f.Seek(fi.Size()-maxSlowlogRead, io.SeekStart)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSlowlogRead))
	if err != nil {
		return ""
	}
	marker := []byte("] pid " + strconv.Itoa(pid) + "\n")
	at := bytes.LastIndex(data, marker)
	if at < 0 {
		return ""
	}
	start := bytes.LastIndexByte(data[:at], '\n') + 1
	entry := data[start:]
	if end := bytes.Index(entry, []byte("\n\n")); end >= 0 {
		entry = entry[:end]
	}
	if len(entry) > maxSlowlogKept {
		entry = entry[:maxSlowlogKept]
	}
	return strings.TrimSpace(string(entry))
}
