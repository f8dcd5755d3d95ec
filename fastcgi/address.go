package fastcgi

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/safefile"
	"golang.org/x/sys/unix"
)

// Address is where a FastCGI server listens: a unix socket path or a TCP
// host:port.
type Address struct {
	Network string // "unix" or "tcp"
	Addr    string // socket path, or host:port
	// Root, for a unix socket of a process in another root (another
	// container, through /proc/PID/root), is that root: Addr starts with
	// it, and the rest of Addr is resolved inside it at every connect, as
	// the root's own processes resolve it. Links swapped in there never
	// lead out of it.
	Root string
}

// String gives the canonical form, the one ParseAddress reads back.
func (a Address) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Addr
	}
	return "tcp://" + a.Addr
}

// socketPath is the path to connect to, and what to do once connected:
// for a socket inside a root, a descriptor of the socket found there.
func (a Address) socketPath() (string, func(), error) {
	if a.Root == "" {
		return a.Addr, func() {}, nil
	}
	fd, err := a.OpenInRoot()
	if err != nil {
		return "", nil, err
	}
	return safefile.FDPath(fd), func() { unix.Close(fd) }, nil
}

// OpenInRoot opens the unix socket a names inside its root, as the root's
// own processes resolve it (safefile.OpenSocket): an O_PATH descriptor,
// for the caller to close.
func (a Address) OpenInRoot() (int, error) {
	in := a.InRoot()
	if in.Addr == a.Addr || !strings.HasPrefix(in.Addr, "/") {
		return -1, fmt.Errorf("socket %s is not inside root %s", a.Addr, a.Root)
	}
	return safefile.OpenSocket(a.Root, in.Addr)
}

// InRoot is a as the processes of its root see it: a unix socket's path
// without the root. Others are as they are.
func (a Address) InRoot() Address {
	if a.Network != "unix" || a.Root == "" {
		return a
	}
	if in, ok := strings.CutPrefix(a.Addr, strings.TrimSuffix(a.Root, "/")); ok && strings.HasPrefix(in, "/") {
		return Address{Network: a.Network, Addr: in}
	}
	return a
}

// IsZero reports whether the address was never set.
func (a Address) IsZero() bool { return a.Addr == "" }

// ParseAddress reads the forms operators write for a php-fpm listener:
// unix:///run/php/www.sock, /run/php/www.sock, unix:/run/php/www.sock (as
// nginx writes it), tcp://127.0.0.1:9000, 127.0.0.1:9000 and [::1]:9000.
func ParseAddress(s string) (Address, error) {
	raw := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(raw, "unix://"):
		return unixAddress(s, strings.TrimPrefix(raw, "unix://"))
	case strings.HasPrefix(raw, "unix:"):
		return unixAddress(s, strings.TrimPrefix(raw, "unix:"))
	case strings.HasPrefix(raw, "/"):
		return unixAddress(s, raw)
	case strings.HasPrefix(raw, "tcp://"):
		return tcpAddress(s, strings.TrimPrefix(raw, "tcp://"))
	}
	return tcpAddress(s, raw)
}

func unixAddress(orig, path string) (Address, error) {
	if !strings.HasPrefix(path, "/") || path == "/" {
		return Address{}, badAddress(orig, "a unix socket needs an absolute path")
	}
	if strings.ContainsRune(path, 0) {
		return Address{}, badAddress(orig, "the path holds a NUL byte")
	}
	return Address{Network: "unix", Addr: path}, nil
}

func tcpAddress(orig, hostport string) (Address, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Address{}, badAddress(orig, "expected host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Address{}, badAddress(orig, "the port must be a number from 1 to 65535")
	}
	if host == "" {
		return Address{}, badAddress(orig, "the host is missing")
	}
	// A literal IP is the common case; a host name is allowed too, since
	// php-fpm in another container is often reached by name.
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return Address{}, badAddress(orig, "the host is neither an IP address nor a host name")
	}
	// The port as a number: 09000 and 9000 are one listener.
	return Address{Network: "tcp", Addr: net.JoinHostPort(host, strconv.Itoa(n))}, nil
}

func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return !strings.HasPrefix(h, "-") && !strings.HasPrefix(h, ".")
}

func badAddress(value, why string) error {
	return fmt.Errorf("bad FastCGI address %q: %s; use unix:///run/php/www.sock, /run/php/www.sock, 127.0.0.1:9000 or [::1]:9000", value, why)
}
