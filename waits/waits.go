// Package waits names what a hung php-fpm worker waits for: the database
// at 10.0.0.5:3306, a lock held by another worker, DNS, sleep(), the disk.
// It reads it from /proc/PID/{stat,schedstat,wchan,syscall,fd,fdinfo},
// /proc/locks, the memory a worker's poll() points into, and the kernel's
// socket tables through sock_diag; it never attaches to a worker, never
// stops it, and never guesses silently: a wait that cannot be proved is
// KindUnknown with the reason, and an fd chosen by a heuristic says so.
//
// Reading costs a few small files per worker, so callers read it only for
// workers already hung or slow, never for idle ones or short requests.
//
// It imports only the standard library, x/sys/unix, sockdiag (the kernel's
// socket tables) and termsafe; it must not import fastcgi, supervisor or
// anything above them: the supervisor imports it.
package waits

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/fpmguard/fpmguard/termsafe"
)

// Kind is what a worker waits for. The set is closed: it is a metric label.
type Kind string

// The kinds of wait.
const (
	KindNetRead  Kind = "network-read"  // waiting for a peer to send
	KindNetWrite Kind = "network-write" // waiting for a peer to take what it sends
	KindConnect  Kind = "connect"       // a connection not yet answered
	KindDNS      Kind = "dns"           // a name server (port 53, UDP or TCP)
	KindLock     Kind = "lock"          // flock() or fcntl() on a file another process holds
	KindSleep    Kind = "sleep"         // sleep(), usleep()
	KindDisk     Kind = "disk"          // uninterruptible (D state), usually disk or NFS I/O
	KindFutex    Kind = "futex"         // a futex: a lock or condition shared with threads or processes
	KindChild    Kind = "child"         // waiting for a child process (exec, proc_open)
	KindStopped  Kind = "stopped"       // stopped by a signal or a tracer (the slowlog's)
	KindRunning  Kind = "running"       // on a CPU, or ready for one: spinning
	KindUnknown  Kind = "unknown"       // not proved; Wait.Reason says why
)

// Kinds lists every kind, for metrics that show each.
var Kinds = []Kind{KindNetRead, KindNetWrite, KindConnect, KindDNS, KindLock, KindSleep, KindDisk, KindFutex, KindChild, KindStopped, KindRunning, KindUnknown}

// Service is a well-known service a worker talks to, named by the peer's
// port or its unix socket's name. The set is closed: it is a metric label.
type Service string

// The services named.
const (
	ServiceNone       Service = ""           // no peer
	ServiceMySQL      Service = "mysql"      // MySQL or MariaDB: 3306, mysqld.sock
	ServicePostgreSQL Service = "postgresql" // 5432, .s.PGSQL.5432
	ServiceRedis      Service = "redis"      // 6379, redis.sock
	ServiceMemcached  Service = "memcached"  // 11211, memcached.sock
	ServiceDNS        Service = "dns"        // 53
	ServiceHTTP       Service = "http"       // 80
	ServiceHTTPS      Service = "https"      // 443
	ServiceFastCGI    Service = "fastcgi"    // the worker's own FastCGI connection: its client
	ServiceOther      Service = "other"      // any other peer
)

// Services lists every service but ServiceNone, for metrics.
var Services = []Service{ServiceMySQL, ServicePostgreSQL, ServiceRedis, ServiceMemcached, ServiceDNS, ServiceHTTP, ServiceHTTPS, ServiceFastCGI, ServiceOther}

// Title is the service's name for people.
func (s Service) Title() string {
	switch s {
	case ServiceMySQL:
		return "MySQL"
	case ServicePostgreSQL:
		return "PostgreSQL"
	case ServiceRedis:
		return "Redis"
	case ServiceMemcached:
		return "memcached"
	case ServiceDNS:
		return "DNS"
	case ServiceHTTP:
		return "HTTP"
	case ServiceHTTPS:
		return "HTTPS"
	case ServiceFastCGI:
		return "FastCGI client"
	}
	return ""
}

// Transport is a peer's socket type.
type Transport string

// The transports.
const (
	TransportTCP  Transport = "tcp"
	TransportUDP  Transport = "udp"
	TransportUnix Transport = "unix"
)

// Peer is the other end of the socket a worker waits on.
type Peer struct {
	Transport Transport      `json:"transport"`
	Remote    netip.AddrPort `json:"remote,omitzero"` // TCP and UDP
	Local     netip.AddrPort `json:"local,omitzero"`
	// Path is a unix peer's name: the path its listener is bound to, ""
	// for an unnamed socket. Whoever bound it chose it: untrusted text.
	Path    string  `json:"path,omitempty"`
	State   string  `json:"state,omitempty"` // TCP state, e.g. established, syn-sent
	Service Service `json:"service,omitempty"`
}

// Addr is the peer's address as people read it, escaped for a terminal:
// `127.0.0.1:3306`, `127.0.0.53:53 over UDP`, `/run/mysqld/mysqld.sock`.
func (p Peer) Addr() string {
	switch {
	case p.Transport == TransportUnix && p.Path != "":
		return termsafe.String(p.Path)
	case p.Transport == TransportUnix:
		return "an unnamed unix socket"
	case p.Transport == TransportUDP:
		return p.Remote.String() + " over UDP"
	}
	return p.Remote.String()
}

// String is the address and the service: `127.0.0.1:3306 (MySQL)`.
func (p Peer) String() string {
	if t := p.Service.Title(); t != "" {
		return p.Addr() + " (" + t + ")"
	}
	return p.Addr()
}

// Lock is a file lock a worker waits for.
type Lock struct {
	// Path is the locked file as the worker names it (in its own root);
	// the worker's code chose it: untrusted text.
	Path string `json:"path"`
	Type string `json:"type"` // FLOCK, POSIX or OFDLCK, as /proc/locks says
	// Holder is the pid holding the lock, 0 when unknown (an OFD lock
	// names none); HolderStart its start time in clock ticks since boot,
	// which with the pid names one process.
	Holder      int    `json:"holder,omitempty"`
	HolderStart uint64 `json:"holder_start,omitempty"`
}

// Wait is what one worker waits for, at one instant.
type Wait struct {
	PID int `json:"pid"`
	// Start is the worker's start time in clock ticks since boot: with
	// the pid it names one process. 0 when it could not be read.
	Start uint64 `json:"start,omitempty"`
	Kind  Kind   `json:"kind"`
	// Syscall is the system call it sleeps in, "" when not read.
	Syscall string `json:"syscall,omitempty"`
	// FD is the descriptor waited on, -1 for none. FDGuessed: it was not
	// read from the call's arguments but chosen as the worker's newest
	// socket that is not its FastCGI connection, which is the connection
	// of the request in flight unless the code keeps an older one open.
	FD        int   `json:"fd"`
	FDGuessed bool  `json:"fd_guessed,omitempty"`
	Peer      *Peer `json:"peer,omitempty"`
	Lock      *Lock `json:"lock,omitempty"`
	// File is the file of a disk wait, when its fd is known.
	File string `json:"file,omitempty"`
	// Reason says why the wait is unknown, or what else was seen.
	Reason string `json:"reason,omitempty"`
	// Since is when it was first seen waiting on the same thing (Tracker);
	// zero when not tracked.
	Since time.Time `json:"since,omitzero"`
}

// Same reports whether w and o wait on the same thing: the kind, the peer
// or the lock, and the fd.
func (w Wait) Same(o Wait) bool {
	if w.Kind != o.Kind || w.FD != o.FD || w.File != o.File || (w.Peer == nil) != (o.Peer == nil) || (w.Lock == nil) != (o.Lock == nil) {
		return false
	}
	if w.Peer != nil && *w.Peer != *o.Peer {
		return false
	}
	if w.Lock != nil && (w.Lock.Path != o.Lock.Path || w.Lock.Holder != o.Lock.Holder) {
		return false
	}
	return w.Kind != KindUnknown || w.Reason == o.Reason
}

// Service is the service of the wait's peer, ServiceNone without one.
func (w Wait) Service() Service {
	if w.Peer == nil {
		return ServiceNone
	}
	return w.Peer.Service
}

// What says what the worker does, for people, as it reads after "N
// workers": "blocked reading from 127.0.0.1:3306 (MySQL)". Paths and names
// are escaped for a terminal.
func (w Wait) What() string {
	switch w.Kind {
	case KindNetRead:
		return "blocked reading from " + w.peer()
	case KindNetWrite:
		return "blocked writing to " + w.peer()
	case KindConnect:
		return "connecting to " + w.peer()
	case KindDNS:
		if w.Peer != nil {
			return "waiting for DNS from " + w.Peer.Addr()
		}
		return "waiting for DNS"
	case KindLock:
		s := "waiting for the lock on " + termsafe.String(w.Lock.Path)
		if w.Lock.Holder > 0 {
			s += fmt.Sprintf(" held by pid %d", w.Lock.Holder)
		}
		return s
	case KindSleep:
		return "sleeping"
	case KindDisk:
		if w.File != "" {
			return "in disk I/O on " + termsafe.String(w.File)
		}
		return "in disk I/O (D state)"
	case KindFutex:
		return "waiting on a futex"
	case KindChild:
		return "waiting for a child process"
	case KindStopped:
		return "stopped"
	case KindRunning:
		return "running on a CPU"
	}
	if w.Reason != "" {
		return "waiting on something unknown: " + termsafe.String(w.Reason)
	}
	return "waiting on something unknown"
}

func (w Wait) peer() string {
	if w.Peer == nil {
		return "an unknown peer"
	}
	return w.Peer.String()
}

// Group is the workers that wait on the same thing.
type Group struct {
	Wait Wait  // the first worker's wait: the thing waited on
	PIDs []int // every worker waiting on it, in the order given
}

// GroupWaits groups waits by what they wait on, the largest group first,
// then in the order first seen.
func GroupWaits(ws []Wait) []Group {
	var out []Group
	for _, w := range ws {
		found := false
		for i := range out {
			if out[i].Wait.sameThing(w) {
				out[i].PIDs = append(out[i].PIDs, w.PID)
				found = true
				break
			}
		}
		if !found {
			out = append(out, Group{Wait: w, PIDs: []int{w.PID}})
		}
	}
	// A stable insertion sort: groups are few.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j].PIDs) > len(out[j-1].PIDs); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// sameThing: the same kind, peer address (not the local end) or lock file
// and holder: workers with connections of their own to one database wait
// on the same thing.
func (w Wait) sameThing(o Wait) bool {
	if w.Kind != o.Kind {
		return false
	}
	switch {
	case w.Peer != nil || o.Peer != nil:
		return w.Peer != nil && o.Peer != nil && w.Peer.Transport == o.Peer.Transport && w.Peer.Remote == o.Peer.Remote && w.Peer.Path == o.Peer.Path
	case w.Lock != nil || o.Lock != nil:
		return w.Lock != nil && o.Lock != nil && w.Lock.Path == o.Lock.Path && w.Lock.Holder == o.Lock.Holder
	case w.Kind == KindUnknown:
		return w.Reason == o.Reason
	}
	return w.File == o.File
}
