package waits

import (
	"strconv"
	"strings"
)

// lockLine is one line of /proc/locks.
type lockLine struct {
	id      string // the lock's number; a waiter carries its blocker's
	waiting bool   // "->": blocked on the lock numbered id
	typ     string // FLOCK, POSIX, OFDLCK, LEASE, ...
	pid     int    // -1 or 0 when the kernel names none
	file    fileID
}

// parseLocks reads /proc/locks:
//
//	1: FLOCK  ADVISORY  WRITE 29180 08:01:1234 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 29181 08:01:1234 0 EOF
//
// The device is major:minor in hex, the inode in decimal. Lines it cannot
// read are skipped.
func parseLocks(b []byte) []lockLine {
	var out []lockLine
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || len(f[0]) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		l := lockLine{id: strings.TrimSuffix(f[0], ":")}
		f = f[1:]
		if f[0] == "->" {
			l.waiting = true
			f = f[1:]
		}
		// TYPE MODE RW PID DEV:INO START END
		if len(f) < 5 {
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		file, ok := parseLockFile(f[4])
		if !ok {
			continue
		}
		l.typ, l.pid, l.file = f[0], pid, file
		out = append(out, l)
	}
	return out
}

func parseLockFile(s string) (fileID, bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return fileID{}, false
	}
	major, err1 := strconv.ParseUint(parts[0], 16, 32)
	minor, err2 := strconv.ParseUint(parts[1], 16, 32)
	ino, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return fileID{}, false
	}
	return fileID{major: uint32(major), minor: uint32(minor), ino: ino}, true
}

// lockWaitedBy finds the lock pid is blocked on, on file (when known), and
// the line of the lock that blocks it. ok is false when /proc/locks shows
// pid waiting for no lock.
func lockWaitedBy(locks []lockLine, pid int, file *fileID) (waiter, holder lockLine, ok bool) {
	for _, l := range locks {
		if !l.waiting || l.pid != pid || (file != nil && l.file != *file) {
			continue
		}
		for _, h := range locks {
			if !h.waiting && h.id == l.id && h.file == l.file {
				return l, h, true
			}
		}
		return l, lockLine{}, true
	}
	return lockLine{}, lockLine{}, false
}

// lockHeldOn finds which of pid's descriptors is open on file.
func lockHeldOn(p procFS, pid int, file fileID) (int, bool) {
	fds, err := listFDs(p, pid)
	if err != nil {
		return -1, false
	}
	for _, fd := range fds {
		id, err := p.fileID(strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
		if err == nil && id == file {
			return fd, true
		}
	}
	return -1, false
}
