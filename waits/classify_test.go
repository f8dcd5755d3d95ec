package waits

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpmguard/fpmguard/sockdiag"
	"golang.org/x/sys/unix"
)

// sysLine writes a /proc/PID/syscall line for the call named, by this
// architecture's number.
func sysLine(t *testing.T, name string, args ...uint64) string {
	t.Helper()
	for nr, s := range syscalls {
		if s.name == name {
			a := make([]uint64, 6)
			copy(a, args)
			return fmt.Sprintf("%d %#x %#x %#x %#x %#x %#x 0x7ffc00000000 0x7f0000000000", nr, a[0], a[1], a[2], a[3], a[4], a[5])
		}
	}
	t.Skipf("no %s on this architecture", name)
	return ""
}

func read1(t *testing.T, r *Reader, pid int) Wait {
	t.Helper()
	return r.Read(context.Background(), []Target{{PID: pid, StartTicks: 500, PPID: 1}})[0]
}

// TestClassify reads captured /proc files of workers in each kind of wait.
func TestClassify(t *testing.T) {
	const pid = 100
	mysql := tcp(11, "10.0.0.2:50000", "10.0.0.5:3306", sockdiag.StateEstablished)
	cases := []struct {
		name  string
		setup func(p *fakeProc, d *fakeDiag)
		want  string // Wait.What()
		check func(t *testing.T, w Wait)
	}{
		{"ppoll on one socket, read from its pollfd", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 1, 0, 8))
			p.socket(pid, 7, 11, "TCP")
			p.pollfds(0x1000, [2]int{7, pollIn})
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked reading from 10.0.0.5:3306 (MySQL)", func(t *testing.T, w Wait) {
			if w.FD != 7 || w.FDGuessed || w.Syscall != "ppoll" || w.Peer.Local.String() != "10.0.0.2:50000" || w.Peer.State != "established" {
				t.Errorf("%+v %+v", w, w.Peer)
			}
		}},
		{"writing: POLLOUT", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 1, 0, 8))
			p.socket(pid, 7, 11, "TCP")
			p.pollfds(0x1000, [2]int{7, pollOut})
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked writing to 10.0.0.5:3306 (MySQL)", nil},
		{"connecting: SYN_SENT", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 1, 0, 8))
			p.socket(pid, 7, 11, "TCPv6")
			p.pollfds(0x1000, [2]int{7, pollOut})
			d.inet[inetKey{sockdiag.TCP, true}] = []sockdiag.InetSocket{tcp(11, "[2001:db8::2]:50000", "[2001:db8::5]:443", sockdiag.StateSynSent)}
		}, "connecting to [2001:db8::5]:443 (HTTPS)", nil},
		{"a wakeup pair and a connection: the connection, exactly", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 2, 0, 8))
			p.socket(pid, 3, 20, "UNIX-STREAM")
			p.socket(pid, 5, 11, "TCP")
			p.pollfds(0x1000, [2]int{3, pollIn}, [2]int{5, pollIn})
			d.unix[20] = sockdiag.UnixSocket{Inode: 20, State: sockdiag.StateEstablished, Peer: 21}
			d.unix[21] = sockdiag.UnixSocket{Inode: 21, State: sockdiag.StateEstablished, Peer: 20}
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked reading from 10.0.0.5:3306 (MySQL)", func(t *testing.T, w Wait) {
			if w.FD != 5 || w.FDGuessed {
				t.Errorf("%+v", w)
			}
		}},
		{"two connections polled: the newest, said to be a guess", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 2, 0, 8))
			p.socket(pid, 5, 11, "TCP")
			p.socket(pid, 6, 12, "TCP")
			p.pollfds(0x1000, [2]int{5, pollIn}, [2]int{6, pollIn})
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql, tcp(12, "10.0.0.2:50001", "10.0.0.6:6379", sockdiag.StateEstablished)}
		}, "blocked reading from 10.0.0.6:6379 (Redis)", func(t *testing.T, w Wait) {
			if w.FD != 6 || !w.FDGuessed || !strings.Contains(w.Reason, "newest") {
				t.Errorf("%+v", w)
			}
		}},
		{"poll's memory unreadable: the newest socket not the pool's, a guess", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 1, 0, 8))
			p.socket(pid, 0, 1, "UNIX-STREAM") // the pool's listener
			p.socket(pid, 3, 2, "UNIX-STREAM") // the FastCGI connection
			p.socket(pid, 4, 11, "TCP")
			p.errs["100/mem"] = fs.ErrPermission
			d.unix[1] = sockdiag.UnixSocket{Inode: 1, State: sockdiag.StateListen, Name: "/run/php/www.sock"}
			d.unix[2] = sockdiag.UnixSocket{Inode: 2, State: sockdiag.StateEstablished, Name: "/run/php/www.sock", Peer: 3}
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked reading from 10.0.0.5:3306 (MySQL)", func(t *testing.T, w Wait) {
			if w.FD != 4 || !w.FDGuessed || !strings.Contains(w.Reason, "could not be read") {
				t.Errorf("%+v", w)
			}
		}},
		{"reading the request from the web server", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "read", 3, 0x1000, 8192))
			p.socket(pid, 3, 2, "UNIX-STREAM")
			d.unix[2] = sockdiag.UnixSocket{Inode: 2, State: sockdiag.StateEstablished, Name: "/run/php/www.sock", Peer: 3}
		}, "blocked reading from /run/php/www.sock (FastCGI client)", nil},
		{"a unix peer named by its listener's path", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "recvfrom", 4, 0x1000, 8192))
			p.socket(pid, 4, 30, "UNIX-STREAM")
			d.unix[30] = sockdiag.UnixSocket{Inode: 30, State: sockdiag.StateEstablished, Peer: 31}
			d.unix[31] = sockdiag.UnixSocket{Inode: 31, State: sockdiag.StateEstablished, Name: "/run/mysqld/mysqld.sock", Peer: 30}
		}, "blocked reading from /run/mysqld/mysqld.sock (MySQL)", nil},
		{"a hostile socket name is escaped", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "read", 4, 0x1000, 8192))
			p.socket(pid, 4, 30, "UNIX-STREAM")
			d.unix[30] = sockdiag.UnixSocket{Inode: 30, State: sockdiag.StateEstablished, Peer: 31}
			d.unix[31] = sockdiag.UnixSocket{Inode: 31, State: sockdiag.StateEstablished, Name: "/tmp/\x1b]0;owned\a", Peer: 30}
		}, `blocked reading from /tmp/\x1b]0;owned\x07`, nil},
		{"epoll: the watched fds from fdinfo", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "epoll_pwait", 9, 0x1000, 8, 1000))
			p.files["100/fdinfo/9"] = []string{"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\ntfd:        7 events:       19 data:                7  pos:0 ino:b sdev:8\n"}
			p.socket(pid, 7, 11, "TCP")
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked reading from 10.0.0.5:3306 (MySQL)", nil},
		{"select: the fd_set", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "pselect6", 8, 0x2000, 0, 0, 0x3000))
			p.mem[0x2000] = []byte{1 << 7, 0, 0, 0, 0, 0, 0, 0}
			p.socket(pid, 7, 11, "TCP")
			d.inet[inetKey{sockdiag.TCP, false}] = []sockdiag.InetSocket{mysql}
		}, "blocked reading from 10.0.0.5:3306 (MySQL)", nil},
		{"DNS over UDP", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0x1000, 1, 0, 8))
			p.socket(pid, 6, 40, "UDP")
			p.pollfds(0x1000, [2]int{6, pollIn})
			d.inet[inetKey{sockdiag.UDP, false}] = []sockdiag.InetSocket{{Inode: 40, Protocol: sockdiag.UDP, State: 1, Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.0.53:53")}}
		}, "waiting for DNS from 10.0.0.53:53 over UDP", nil},
		{"a sleep", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "clock_nanosleep", 0, 0, 0x1000, 0x1010))
		}, "sleeping", nil},
		{"a sleep resumed after a signal", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "restart_syscall"))
			p.files["100/wchan"] = []string{"hrtimer_nanosleep"}
		}, "sleeping", nil},
		{"ppoll of nothing: a sleep", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "ppoll", 0, 0, 0x1000, 0))
		}, "sleeping", nil},
		{"disk: D state, the file of its fd", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'D', sysLine(t, "read", 3, 0x1000, 65536))
			p.file(pid, 3, "/srv/chroot/var/www/export.csv", fileID{8, 1, 77})
			p.links["100/root"] = "/srv/chroot"
		}, "in disk I/O on /var/www/export.csv", nil},
		{"a futex", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "futex", 0x1000, 0, 0))
		}, "waiting on a futex", nil},
		{"a child", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "wait4", 200, 0x1000))
		}, "waiting for a child process", nil},
		{"stopped", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 't', "running")
		}, "stopped", nil},
		{"running", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'R', "running")
		}, "running on a CPU", nil},
		{"between requests", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "accept4", 0, 0, 0, 0x80000))
		}, "waiting on something unknown: waiting for its next request (accept): the request is over", nil},
		{"an unknown call", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', "9999 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc00000000 0x7f0000000000")
			p.files["100/wchan"] = []string{"pipe_read"}
		}, "waiting on something unknown: in system call 9999 (sleeping in the kernel's pipe_read)", nil},
		{"a pipe", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "read", 5, 0x1000, 4096))
			p.links["100/fd/5"] = "pipe:[123]"
		}, "waiting on something unknown: reading from pipe:[123]", nil},
		{"its system call refused: unknown, without the worker's own path", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', "")
			p.errs["100/syscall"] = &fs.PathError{Op: "open", Path: "/proc/100/syscall", Err: fs.ErrPermission}
		}, "waiting on something unknown: its system call could not be read (permission denied)", nil},
		{"fcntl F_SETLKW: the POSIX lock and its holder", func(p *fakeProc, d *fakeDiag) {
			p.worker(28753, 'S', sysLine(t, "fcntl", 4, fSetLkW, 0x1000))
			p.file(28753, 4, "/var/www/cache/app.lock", fileID{0xfe, 0, 9978592})
			p.worker(28680, 'S', sysLine(t, "clock_nanosleep", 0, 0, 0x1000))
			p.files["locks"] = []string{lockFile(t)}
		}, "waiting for the lock on /var/www/cache/app.lock held by pid 28680", func(t *testing.T, w Wait) {
			if w.Lock.Type != "POSIX" || w.Lock.HolderStart != 500 || w.FD != 4 {
				t.Errorf("%+v %+v", w, w.Lock)
			}
		}},
		{"a lock from the kernel function alone: the file from the holder's fd", func(p *fakeProc, d *fakeDiag) {
			p.worker(28678, 'S', sysLine(t, "restart_syscall"))
			p.files["28678/wchan"] = []string{"locks_lock_inode_wait"}
			p.worker(28636, 'S', sysLine(t, "clock_nanosleep", 0, 0, 0x1000))
			p.file(28636, 3, "/var/www/cache/cron.lock", fileID{0xfe, 0, 9978591})
			p.files["locks"] = []string{lockFile(t)}
		}, "waiting for the lock on /var/www/cache/cron.lock held by pid 28636", nil},
		{"another network namespace it may not enter", func(p *fakeProc, d *fakeDiag) {
			p.worker(pid, 'S', sysLine(t, "read", 4, 0x1000, 8192))
			p.socket(pid, 4, 11, "TCP")
			p.links["100/ns/net"] = "net:[2]"
		}, "", func(t *testing.T, w Wait) {
			if w.Kind != KindUnknown || !strings.Contains(w.Reason, "another network namespace") || !strings.Contains(w.Reason, "CAP_SYS_ADMIN") {
				t.Errorf("%+v", w)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, d := newFakeProc(), &fakeDiag{inet: map[inetKey][]sockdiag.InetSocket{}, unix: map[uint32]sockdiag.UnixSocket{}}
			c.setup(p, d)
			r := fakeReader(p, d, nil)
			r.open = func(ns string) (diagConn, error) {
				if ns != "" {
					return nil, fmt.Errorf("setns: %w", unix.EPERM)
				}
				return d, nil
			}
			w := read1(t, r, waiterOf(p))
			if c.want != "" && w.What() != c.want {
				t.Errorf("What() = %q, want %q (%+v)", w.What(), c.want, w)
			}
			if c.check != nil {
				c.check(t, w)
			}
		})
	}
}

// waiterOf is the pid of a case's waiting worker: 100, or for locks a
// waiter of testdata/locks.txt.
func lockFile(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "locks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waiterOf(p *fakeProc) int {
	for _, pid := range []int{100, 28753, 28678} {
		if _, ok := p.files[fmt.Sprint(pid)+"/stat"]; ok {
			return pid
		}
	}
	return 0
}
