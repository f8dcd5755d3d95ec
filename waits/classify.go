package waits

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/fpmguard/fpmguard/sockdiag"
)

// direction is which way a socket wait goes.
type direction uint8

const (
	dirUnknown direction = iota
	dirRead
	dirWrite
)

// poll event bits, the same for poll and epoll.
const (
	pollIn  = 0x1
	pollPri = 0x2
	pollOut = 0x4
)

// maxPolled bounds the descriptors read from a poll's or select's
// arguments.
const (
	maxPolled   = 64
	maxSelected = 1024
)

// classify names the wait of a worker sleeping in call sc, in state st.
func (b *batch) classify(pid int, st procStat, sc sysCall) Wait {
	w := Wait{Kind: KindUnknown, FD: -1, Start: st.start}
	if sc.running {
		w.Kind = KindRunning
		return w
	}
	info, known := syscalls[sc.nr]
	if sc.user {
		info, known = sysInfo{}, false
	}
	w.Syscall = info.name
	if st.state == 'D' {
		w.Kind = KindDisk
		if known && (info.class == callRead || info.class == callWrite || info.class == callSync) {
			w.FD = int(int32(sc.args[0]))
			if target, err := fdTarget(b.r.proc, pid, w.FD); err == nil {
				w.File = inRoot(b.root(pid), target)
			}
		}
		return w
	}
	if !known {
		w = b.fromWchan(pid, st, nil)
		if sc.user {
			w.Reason = "blocked outside a system call" + wchanNote(w.Reason)
		} else if w.Kind == KindUnknown {
			w.Reason = fmt.Sprintf("in system call %d%s", sc.nr, wchanNote(w.Reason))
		}
		return w
	}
	fd := int(int32(sc.args[0]))
	switch info.class {
	case callSleep:
		w.Kind = KindSleep
	case callFutex:
		w.Kind = KindFutex
	case callWait:
		w.Kind = KindChild
	case callAccept:
		w.Reason = "waiting for its next request (accept): the request is over"
	case callFlock:
		b.lockWait(pid, &w, fd)
	case callFcntl:
		if cmd := sc.args[1]; cmd == fSetLkW || cmd == fOFDSetLkW {
			b.lockWait(pid, &w, fd)
		} else {
			w.Reason = fmt.Sprintf("in fcntl command %d", cmd)
		}
	case callRead:
		b.fdWait(pid, &w, fd, dirRead)
	case callWrite:
		b.fdWait(pid, &w, fd, dirWrite)
	case callConnect:
		b.fdWait(pid, &w, fd, dirWrite)
	case callSync:
		w.Kind, w.FD = KindDisk, fd
		if target, err := fdTarget(b.r.proc, pid, fd); err == nil {
			w.File = inRoot(b.root(pid), target)
		}
	case callPoll:
		b.pollWait(pid, &w, sc)
	case callSelect:
		b.selectWait(pid, &w, sc)
	case callEpoll:
		b.epollWait(pid, &w, fd)
	case callRestart:
		w = b.fromWchan(pid, st, nil)
		w.Syscall = info.name
	}
	return w
}

func wchanNote(fn string) string {
	if fn == "" {
		return ""
	}
	return " (sleeping in the kernel's " + fn + ")"
}

// fromWchan names a wait from the kernel function the worker sleeps in,
// when its system call is unknown, was resumed (restart_syscall), or could
// not be read (scErr). An unknown wait's Reason then holds the function.
func (b *batch) fromWchan(pid int, st procStat, scErr error) Wait {
	w := Wait{Kind: KindUnknown, FD: -1, Start: st.start}
	if st.state == 'D' {
		w.Kind = KindDisk
		return w
	}
	fn := wchan(b.r.proc, pid)
	switch fn {
	case "hrtimer_nanosleep", "do_nanosleep", "clock_nanosleep":
		w.Kind = KindSleep
	case "futex_wait_queue", "futex_wait_queue_me", "futex_wait":
		w.Kind = KindFutex
	case "do_wait":
		w.Kind = KindChild
	case "locks_lock_inode_wait", "flock_lock_inode_wait", "posix_lock_inode_wait", "fcntl_setlk", "locks_lock_file_wait":
		b.lockWait(pid, &w, -1)
	case "poll_schedule_timeout", "do_sys_poll", "do_select", "core_sys_select", "ep_poll", "do_epoll_wait":
		b.guessSocket(pid, &w, dirUnknown, "its poll's descriptors are not known")
	default:
		w.Reason = fn
	}
	if scErr != nil {
		why := scErr.Error()
		if denied(scErr) {
			// Without the worker's own path: the workers refused alike
			// wait on something unknown for one reason, and group as one.
			why = "permission denied"
		}
		note := fmt.Sprintf("its system call could not be read (%s): named from the kernel function it sleeps in", why)
		if w.Kind == KindUnknown {
			note = fmt.Sprintf("its system call could not be read (%s)%s", why, wchanNote(fn))
		}
		w.Reason = joinReason(w.Reason, note)
	}
	return w
}

func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// lockWait names a lock wait on fd (-1: not known) from /proc/locks.
func (b *batch) lockWait(pid int, w *Wait, fd int) {
	p := b.r.proc
	w.Kind = KindLock
	var file *fileID
	if fd >= 0 {
		w.FD = fd
		if id, err := p.fileID(strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)); err == nil {
			file = &id
		}
	}
	lock := &Lock{}
	w.Lock = lock
	waiter, holder, ok := lockWaitedBy(b.procLocks(), pid, file)
	if !ok {
		if fd >= 0 {
			if target, err := fdTarget(p, pid, fd); err == nil {
				lock.Path = inRoot(b.root(pid), target)
			}
		}
		w.Reason = "/proc/locks shows it waiting for no lock"
		return
	}
	lock.Type = waiter.typ
	if holder.pid > 0 {
		lock.Holder = holder.pid
		if hs, err := readStat(p, holder.pid); err == nil {
			lock.HolderStart = hs.start
		}
	}
	// The path: from the worker's own fd on the file, else from the
	// holder's.
	switch {
	case fd >= 0:
	case lock.Holder > 0:
		if hfd, found := lockHeldOn(p, pid, waiter.file); found {
			w.FD = hfd
		} else if hfd, found := lockHeldOn(p, lock.Holder, waiter.file); found {
			if target, err := fdTarget(p, lock.Holder, hfd); err == nil {
				lock.Path = inRoot(b.root(lock.Holder), target)
			}
		}
	}
	if w.FD >= 0 {
		if target, err := fdTarget(p, pid, w.FD); err == nil {
			lock.Path = inRoot(b.root(pid), target)
		}
	}
	if lock.Path == "" {
		lock.Path = fmt.Sprintf("inode %d on device %d:%d", waiter.file.ino, waiter.file.major, waiter.file.minor)
	}
}

// fdWait names a wait on one descriptor, read from the call's arguments.
func (b *batch) fdWait(pid int, w *Wait, fd int, dir direction) {
	w.FD = fd
	s, err := b.views.resolve(pid, fd)
	switch {
	case errors.Is(err, errNotSocket):
		target, _ := fdTarget(b.r.proc, pid, fd)
		w.Reason = fmt.Sprintf("%s %s", verb(dir), inRoot(b.root(pid), target))
		return
	case err != nil:
		w.Reason = fmt.Sprintf("its socket %d could not be looked up: %v", fd, err)
		return
	}
	b.socketWait(pid, w, s, dir)
}

func verb(dir direction) string {
	if dir == dirWrite {
		return "writing to"
	}
	return "reading from"
}

// polled is a descriptor a poll waits on, and for what.
type polled struct {
	fd  int
	dir direction
}

func dirOfEvents(ev uint32) direction {
	switch {
	case ev&(pollIn|pollPri) != 0:
		return dirRead
	case ev&pollOut != 0:
		return dirWrite
	}
	return dirUnknown
}

// pollWait reads the pollfd array a poll() or ppoll() points to: with the
// worker stopped in the call it holds what it waits on.
func (b *batch) pollWait(pid int, w *Wait, sc sysCall) {
	n := sc.args[1]
	if n == 0 {
		w.Kind = KindSleep // poll(NULL, 0, ms): a sleep
		return
	}
	buf := make([]byte, 8*min(n, maxPolled))
	if err := b.r.proc.readMem(pid, sc.args[0], buf); err != nil {
		if denied(err) {
			b.r.warnDenied(pid, "/proc/PID/mem", err)
		}
		b.guessSocket(pid, w, dirUnknown, fmt.Sprintf("its poll's descriptors could not be read (%v)", err))
		return
	}
	var fds []polled
	for i := 0; i+8 <= len(buf); i += 8 {
		fd := int32(binary.NativeEndian.Uint32(buf[i:]))
		ev := uint32(binary.NativeEndian.Uint16(buf[i+4:]))
		if fd >= 0 {
			fds = append(fds, polled{fd: int(fd), dir: dirOfEvents(ev)})
		}
	}
	b.pickPolled(pid, w, fds)
}

// selectWait reads the fd_sets a select() or pselect6() points to.
func (b *batch) selectWait(pid int, w *Wait, sc sysCall) {
	n := min(sc.args[0], maxSelected)
	if n == 0 || sc.args[1] == 0 && sc.args[2] == 0 {
		w.Kind = KindSleep // select(0, NULL, NULL, NULL, tv): a sleep
		return
	}
	var fds []polled
	for i, dir := range []direction{dirRead, dirWrite} {
		addr := sc.args[1+i]
		if addr == 0 {
			continue
		}
		set := make([]byte, (n+63)/64*8)
		if err := b.r.proc.readMem(pid, addr, set); err != nil {
			if denied(err) {
				b.r.warnDenied(pid, "/proc/PID/mem", err)
			}
			b.guessSocket(pid, w, dirUnknown, fmt.Sprintf("its select's descriptors could not be read (%v)", err))
			return
		}
		for fd := 0; fd < int(n); fd++ {
			if set[fd/8]&(1<<(fd%8)) != 0 {
				fds = append(fds, polled{fd: fd, dir: dir})
			}
		}
	}
	b.pickPolled(pid, w, fds)
}

// epollWait reads what an epoll instance watches from its fdinfo.
func (b *batch) epollWait(pid int, w *Wait, epfd int) {
	data, err := b.r.proc.readFile(strconv.Itoa(pid) + "/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		b.guessSocket(pid, w, dirUnknown, fmt.Sprintf("its epoll's descriptors could not be read (%v)", err))
		return
	}
	var fds []polled
	for fd, ev := range epollTargets(data) {
		fds = append(fds, polled{fd: fd, dir: dirOfEvents(ev)})
	}
	slices.SortFunc(fds, func(a, b polled) int { return a.fd - b.fd })
	b.pickPolled(pid, w, fds)
}

// rank orders the sockets a worker may wait on, best first: a connection
// of its own to a peer, then its FastCGI connection (reading the request
// or writing the answer), then unnamed unix sockets (a library's wakeup
// pair, as curl's).
func rank(s socket, serverSide bool) int {
	switch {
	case s.listening():
		return -1 // the pool's socket: never what a request waits on
	case serverSide:
		return 1
	case s.unix != nil && s.peerName == "" && s.unix.Name == "":
		return 0
	}
	return 2
}

// pickPolled names the wait among the descriptors a poll waits on: the
// best-ranked socket, the one if only one has that rank, else the newest
// of them, said to be a guess.
func (b *batch) pickPolled(pid int, w *Wait, fds []polled) {
	var best []socket
	var dirs []direction
	bestRank := -1
	for _, p := range fds {
		s, err := b.views.resolve(pid, p.fd)
		if err != nil {
			continue
		}
		r := rank(s, b.serverSide(pid, s))
		switch {
		case r > bestRank:
			best, dirs, bestRank = []socket{s}, []direction{p.dir}, r
		case r == bestRank && r >= 0:
			best, dirs = append(best, s), append(dirs, p.dir)
		}
	}
	if len(best) == 0 || bestRank < 0 {
		w.Reason = fmt.Sprintf("polling %d descriptors, none a socket it could name", len(fds))
		return
	}
	i := newest(best)
	if len(best) > 1 {
		w.FDGuessed = true
		w.Reason = fmt.Sprintf("polling %d sockets: named the newest", len(best))
	}
	w.FD = best[i].fd
	b.socketWait(pid, w, best[i], dirs[i])
}

func newest(ss []socket) int {
	i := 0
	for j, s := range ss {
		if s.inode > ss[i].inode {
			i = j
		}
	}
	return i
}

// guessSocket names the wait of a poll whose descriptors are not known by
// the worker's newest socket that is not its pool's: socket inodes grow
// with time, and a request's connection to its database or API is younger
// than the worker. It is a guess, and says so.
func (b *batch) guessSocket(pid int, w *Wait, dir direction, why string) {
	w.FDGuessed = true
	w.Reason = why
	fds, err := listFDs(b.r.proc, pid)
	if err != nil {
		if denied(err) {
			b.r.warnDenied(pid, "/proc/PID/fd", err)
		}
		w.Reason = joinReason(why, fmt.Sprintf("its descriptors could not be listed (%v)", err))
		return
	}
	var candidates []polled
	for _, fd := range fds {
		candidates = append(candidates, polled{fd: fd, dir: dir})
	}
	slices.SortFunc(candidates, func(a, b polled) int { return a.fd - b.fd })
	b.pickPolled(pid, w, candidates)
	w.FDGuessed = true
	if w.Peer != nil {
		w.Reason = joinReason(why, "named its newest socket")
	} else {
		w.Reason = joinReason(why, w.Reason)
	}
}

// serverSide reports whether s is the worker's end of a connection it
// accepted: its FastCGI connection. A unix socket that is not a listener
// but carries a name has it from its listener; a TCP socket is on the
// server's side when its local address is a listener's.
func (b *batch) serverSide(pid int, s socket) bool {
	switch {
	case s.unix != nil:
		return s.unix.State != sockdiag.StateListen && s.unix.Name != ""
	case s.inet != nil && s.inet.Protocol == sockdiag.TCP:
		v := b.views.of(pid)
		k := inetKey{protocol: sockdiag.TCP, v6: s.inet.Local.Addr().Is6()}
		for _, l := range v.inet[k] {
			if l.State == sockdiag.StateListen && l.Local.Port() == s.inet.Local.Port() &&
				(l.Local.Addr() == s.inet.Local.Addr() || l.Local.Addr().IsUnspecified()) {
				return true
			}
		}
	}
	return false
}

// socketWait names a wait on socket s: its peer, its service and the kind.
func (b *batch) socketWait(pid int, w *Wait, s socket, dir direction) {
	ports := b.r.Ports
	if ports == nil {
		ports = Ports
	}
	w.FD = s.fd
	p := &Peer{}
	serverSide := b.serverSide(pid, s)
	switch {
	case s.unix != nil:
		p.Transport = TransportUnix
		p.Path = s.peerName
		if serverSide {
			p.Path = s.unix.Name // the pool's socket
		}
		p.Service = ServiceOther
		if p.Path != "" {
			p.Service = serviceOfPath(p.Path)
		}
	case s.inet != nil:
		p.Transport = TransportTCP
		if s.inet.Protocol == sockdiag.UDP {
			p.Transport = TransportUDP
		}
		p.Remote, p.Local = s.inet.Remote, s.inet.Local
		if p.Transport == TransportTCP {
			p.State = sockdiag.StateName(s.inet.State)
		}
		p.Service = ServiceOther
		if svc, ok := ports[p.Remote.Port()]; ok {
			p.Service = svc
		}
	}
	w.Peer = p
	if serverSide {
		p.Service = ServiceFastCGI
	}
	switch {
	case s.inet != nil && s.inet.Protocol == sockdiag.TCP && s.inet.State == sockdiag.StateSynSent:
		w.Kind = KindConnect
	case p.Service == ServiceDNS:
		w.Kind = KindDNS
	case dir == dirWrite:
		w.Kind = KindNetWrite
	default:
		w.Kind = KindNetRead
	}
}
