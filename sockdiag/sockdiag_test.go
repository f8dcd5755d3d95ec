package sockdiag

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// inode returns the inode of a connection's socket, as /proc/self/fd
// shows it.
func inode(t *testing.T, c syscall.Conn) uint32 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ino uint32
	if err := raw.Control(func(fd uintptr) {
		link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 32)
		if err != nil {
			t.Fatalf("%s: %v", link, err)
		}
		ino = uint32(n)
	}); err != nil {
		t.Fatal(err)
	}
	return ino
}

func open(t *testing.T) *Conn {
	t.Helper()
	c, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestUnixPeer: a client's socket leads, through its peer, to the server's
// end of the connection, which carries the listener's path; the listener's
// queue counts a connection not yet accepted, whose peer has no inode yet.
func TestUnixPeer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mysqld.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cl, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := open(t)

	listeners, err := c.UnixSockets(States(StateListen))
	if err != nil {
		t.Fatal(err)
	}
	var ours *UnixSocket
	for i := range listeners {
		if listeners[i].Name == path {
			ours = &listeners[i]
		}
	}
	if ours == nil || !ours.HasQueue || ours.Queue.Recv != 1 || ours.Queue.Send == 0 {
		t.Fatalf("listener %+v: want one connection waiting and a backlog", ours)
	}

	me, err := c.UnixSocket(inode(t, cl.(*net.UnixConn)))
	if err != nil {
		t.Fatal(err)
	}
	if me.Peer != 0 {
		t.Errorf("client socket %+v: a peer before the server accepted", me)
	}
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if me, err = c.UnixSocket(me.Inode); err != nil {
		t.Fatal(err)
	}
	if me.Name != "" || me.Peer == 0 || me.State != StateEstablished {
		t.Fatalf("client socket %+v: want unnamed, connected, with a peer", me)
	}
	peer, err := c.UnixSocket(me.Peer)
	if err != nil {
		t.Fatal(err)
	}
	if peer.Name != path || peer.Peer != me.Inode {
		t.Errorf("peer %+v: want %s, pointing back at %d", peer, path, me.Inode)
	}
	if _, err := c.UnixSocket(1); err == nil {
		t.Error("inode 1 is no socket, but was found")
	}
}

// TestInetByInode: a TCP connection and a connected UDP socket are found
// in the dumps by their inodes, with both ends' addresses.
func TestInetByInode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cl, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	u, err := net.Dial("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	c := open(t)

	find := func(proto uint8, ino uint32) InetSocket {
		t.Helper()
		socks, err := c.InetSockets(proto, false, AllStates)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Inode == ino {
				return s
			}
		}
		t.Fatalf("socket %d not in the dump of %d sockets", ino, len(socks))
		return InetSocket{}
	}
	tcp := find(TCP, inode(t, cl.(*net.TCPConn)))
	if tcp.Remote.String() != l.Addr().String() || tcp.Local.String() != cl.LocalAddr().String() || tcp.State != StateEstablished {
		t.Errorf("tcp %+v: want %s -> %s established", tcp, cl.LocalAddr(), l.Addr())
	}
	udp := find(UDP, inode(t, u.(*net.UDPConn)))
	if udp.Remote != netip.MustParseAddrPort("127.0.0.1:53") || udp.Protocol != UDP {
		t.Errorf("udp %+v: want a socket connected to 127.0.0.1:53", udp)
	}
}

// TestOpenInOwnNamespace: a socket opened by entering a namespace answers
// for that namespace; entering our own sees our own sockets.
func TestOpenInOwnNamespace(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := OpenIn(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing namespace was entered")
	}
	c, err := OpenIn("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	socks, err := c.InetSockets(TCP, false, States(StateListen))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Local.String() == l.Addr().String() {
			return
		}
	}
	t.Errorf("listener %s not seen", l.Addr())
}

func TestStateName(t *testing.T) {
	for s, want := range map[uint8]string{StateEstablished: "established", StateSynSent: "syn-sent", StateCloseWait: "close-wait", 0: "state-0", 99: "state-99"} {
		if got := StateName(s); got != want {
			t.Errorf("StateName(%d) = %q, want %q", s, got, want)
		}
	}
}
