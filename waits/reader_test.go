package waits

import (
	"context"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/sockdiag"
)

func newFakes() (*fakeProc, *fakeDiag) {
	return newFakeProc(), &fakeDiag{inet: map[inetKey][]sockdiag.InetSocket{}, unix: map[uint32]sockdiag.UnixSocket{}}
}

// TestReadChangedBetweenReadings: a worker that ran between the two
// readings of its state (its run count moved), or whose call changed, is
// read again; one that keeps changing is unknown, never the wait read in
// between. An fd closed and reused in between needs the worker to run.
func TestReadChangedBetweenReadings(t *testing.T) {
	p, d := newFakes()
	p.worker(100, 'S', sysLine(t, "read", 4, 0x1000, 8192))
	p.socket(100, 4, 11, "TCP")
	d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{tcp(11, "10.0.0.2:50000", "10.0.0.5:3306", sockdiag.StateEstablished)}
	// It runs between every two readings.
	p.files["100/schedstat"] = []string{"1 1 1", "1 1 2", "1 1 3", "1 1 4", "1 1 5", "1 1 6", "1 1 7"}
	w := read1(t, fakeReader(p, d, nil), 100)
	if w.Kind != KindUnknown || w.Peer != nil || !strings.Contains(w.Reason, "changed while being read") {
		t.Errorf("read %+v: want unknown, changed while read", w)
	}
	if p.reads["100/stat"] != 2*attempts {
		t.Errorf("stat read %d times, want %d", p.reads["100/stat"], 2*attempts)
	}

	// Its call changed once, then it stayed: the second attempt counts.
	p, d = newFakes()
	p.worker(100, 'S', sysLine(t, "read", 4, 0x1000, 8192))
	p.files["100/syscall"] = []string{sysLine(t, "read", 4, 0x1000, 8192), sysLine(t, "clock_nanosleep", 0, 0, 0x1000)}
	p.socket(100, 4, 11, "TCP")
	d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{tcp(11, "10.0.0.2:50000", "10.0.0.5:3306", sockdiag.StateEstablished)}
	if w := read1(t, fakeReader(p, d, nil), 100); w.Kind != KindSleep {
		t.Errorf("read %+v: want the sleep it settled in", w)
	}
}

// TestReadDenied: when the system call cannot be read, the wait is named
// from the kernel function where it can be, and the Reader warns once,
// naming the capability, however many workers it reads.
func TestReadDenied(t *testing.T) {
	p, d := newFakes()
	for _, pid := range []int{100, 101} {
		p.worker(pid, 'S', "")
		p.errs[strconv.Itoa(pid)+"/syscall"] = &fs.PathError{Op: "open", Path: "/proc/" + strconv.Itoa(pid) + "/syscall", Err: fs.ErrPermission}
	}
	p.files["100/wchan"] = []string{"hrtimer_nanosleep"}
	p.files["101/wchan"] = []string{"poll_schedule_timeout.constprop.0"}
	p.errs["101/fd"] = &fs.PathError{Op: "open", Path: "/proc/101/fd", Err: fs.ErrPermission}
	var warnings []string
	r := fakeReader(p, d, nil)
	r.Warn = func(msg string) { warnings = append(warnings, msg) }
	ws := r.Read(context.Background(), []Target{{PID: 100}, {PID: 101}})
	if ws[0].Kind != KindSleep || !strings.Contains(ws[0].Reason, "kernel function") {
		t.Errorf("worker 100: %+v, want a sleep named from wchan", ws[0])
	}
	if ws[1].Kind != KindUnknown || ws[1].Peer != nil || !strings.Contains(ws[1].Reason, "could not be listed") {
		t.Errorf("worker 101: %+v, want unknown: its fds could not be listed", ws[1])
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "CAP_SYS_PTRACE") || !strings.Contains(warnings[0], "CAP_DAC_READ_SEARCH") {
		t.Errorf("warnings %q: want one naming the capabilities", warnings)
	}
	r.Read(context.Background(), []Target{{PID: 100}})
	if len(warnings) != 1 {
		t.Errorf("warned again: %q", warnings)
	}
}

// TestReadSharesTables: the workers of one Read share one dump of each
// socket table and one reading of /proc/locks; a socket younger than the
// dump is looked for in one more.
func TestReadSharesTables(t *testing.T) {
	p, d := newFakes()
	var targets []Target
	var socks []sockdiag.InetSocket
	for i := range 10 {
		pid := 100 + i
		p.worker(pid, 'S', sysLine(t, "read", 4, 0x1000, 8192))
		p.socket(pid, 4, uint32(11+i), "TCP")
		socks = append(socks, tcp(uint32(11+i), "10.0.0.2:5000"+strconv.Itoa(i), "10.0.0.5:3306", sockdiag.StateEstablished))
		targets = append(targets, Target{PID: pid})
	}
	d.inet[inetKey{sockdiag.TCP, false}] = socks
	var opened []string
	ws := fakeReader(p, d, &opened).Read(context.Background(), targets)
	for _, w := range ws {
		if w.Kind != KindNetRead {
			t.Errorf("%+v", w)
		}
	}
	if d.dumps != 1 || len(opened) != 1 || opened[0] != "" {
		t.Errorf("%d dumps in namespaces %q, want one in our own", d.dumps, opened)
	}
	if g := GroupWaits(ws); len(g) != 1 || len(g[0].PIDs) != 10 {
		t.Errorf("groups %+v: want one of 10", g)
	}

	p.worker(200, 'S', sysLine(t, "read", 4, 0x1000, 8192))
	p.socket(200, 4, 99, "TCP")
	d.dumps = 0
	w := fakeReader(p, d, nil).Read(context.Background(), []Target{{PID: 100}, {PID: 200}})[1]
	if d.dumps != 2 || w.Kind != KindUnknown || !strings.Contains(w.Reason, "no table") {
		t.Errorf("%d dumps, %+v: want a second dump, then unknown", d.dumps, w)
	}
}

// TestReadCanceled: workers not read when the context ends are unknown.
func TestReadCanceled(t *testing.T) {
	p, d := newFakes()
	p.worker(100, 'S', sysLine(t, "clock_nanosleep", 0, 0, 0x1000))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := fakeReader(p, d, nil).Read(ctx, []Target{{PID: 100}})[0]
	if w.Kind != KindUnknown || !strings.Contains(w.Reason, "canceled") {
		t.Errorf("%+v", w)
	}
}

// TestReadAgain: a worker that has not run since its wait was proved, and
// sleeps in the same call, is not read again past three small files; one
// that ran is read again whole.
func TestReadAgain(t *testing.T) {
	p, d := newFakes()
	p.worker(100, 'S', sysLine(t, "read", 4, 0x1000, 8192))
	p.socket(100, 4, 11, "TCP")
	d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{tcp(11, "10.0.0.2:50000", "10.0.0.5:3306", sockdiag.StateEstablished)}
	r := fakeReader(p, d, nil)
	first := read1(t, r, 100)
	if first.Kind != KindNetRead || d.dumps != 1 {
		t.Fatalf("%+v after %d dumps", first, d.dumps)
	}
	if again := read1(t, r, 100); !again.Same(first) || d.dumps != 1 || p.reads["100/stat"] != 3 {
		t.Errorf("read again: %+v, %d dumps, stat read %d times: want the proved wait, no dump, one more stat", again, d.dumps, p.reads["100/stat"])
	}
	p.files["100/schedstat"] = []string{"1000 2000 43"} // it ran
	if again := read1(t, r, 100); !again.Same(first) || d.dumps != 2 {
		t.Errorf("read after it ran: %+v, %d dumps: want a whole reading", again, d.dumps)
	}
}
