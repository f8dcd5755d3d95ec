package runner

import (
	"bytes"
	"os"

	"golang.org/x/sys/unix"
)

// php-fpm's stderr under run: when Config.StderrLines is set, php-fpm
// writes it into a pipe fpmguard reads. Every byte goes on to
// Config.Stderr as it comes, as php-fpm wrote it; each complete line also
// goes to StderrLines, where fpmguard reads php-fpm's error log when
// error_log names stderr (/proc/self/fd/2, as containers set it), to tell
// why workers die. The pipe's buffer is enlarged, so that a reader a
// moment late never makes the master wait on its own log.

// stderrPipeBytes is the pipe's buffer: minutes of php-fpm's log.
const stderrPipeBytes = 1 << 20

// maxStderrLine bounds a line handed on; a longer one is handed on cut.
const maxStderrLine = 64 << 10

// stderrPipe makes the pipe php-fpm's stderr goes into, and starts the
// goroutine that reads it until every writer (the master and its workers)
// has closed it. The caller gives w to php-fpm and closes its own copy
// once php-fpm started.
func (rn *Runner) stderrPipe() (w *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Best effort: the default 64 KiB still works.
	_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, stderrPipeBytes)
	go copyLines(r, rn.cfg.Stderr, rn.cfg.StderrLines)
	return w, nil
}

// copyLines copies r to out and hands each complete line to line.
func copyLines(r, out *os.File, line func(string)) {
	defer r.Close()
	buf := make([]byte, 64<<10)
	var partial []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = out.Write(buf[:n])
			data := buf[:n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					partial = append(partial, data[:min(len(data), maxStderrLine-len(partial))]...)
					break
				}
				partial = append(partial, data[:min(i, maxStderrLine-len(partial))]...)
				line(string(partial))
				partial = partial[:0]
				data = data[i+1:]
			}
		}
		if err != nil {
			return
		}
	}
}
