package sockdiag

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// UnixSocket is a unix socket as sock_diag describes it.
type UnixSocket struct {
	Inode uint32
	Type  uint8 // unix.SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	State uint8
	// Name is the path the socket is bound to; an abstract name starts
	// with "@". An accepted connection carries its listener's name. It is
	// written by whoever bound the socket: untrusted text.
	Name string
	// Peer is the inode of the socket at the other end, 0 for none.
	Peer uint32
	// Queue: for a listener, the connections waiting to be accepted and
	// the backlog; for others, the bytes queued to read and to send.
	Queue    Queue
	HasQueue bool
	// File is the socket file a bound socket made, as the kernel knows it
	// whatever root the binding process saw: Name is that process's path.
	File    File
	HasFile bool
}

// File is a socket file's device (the kernel's own encoding) and inode,
// as sock_diag gives them.
type File struct {
	Dev, Ino uint32
}

// FileOf is the File of the socket file whose stat(2) is st.
func FileOf(st *unix.Stat_t) File {
	// The kernel's dev_t holds the major in its top 12 bits, the minor in
	// the other 20; stat(2) encodes them otherwise.
	return File{Dev: unix.Major(st.Dev)<<20 | unix.Minor(st.Dev), Ino: uint32(st.Ino)}
}

// Queue is a socket's two queues as sock_diag gives them.
type Queue struct {
	Recv, Send uint32
}

// unix_diag constants missing from x/sys (linux/unix_diag.h).
const (
	udiagShowName  = 0x01
	udiagShowVFS   = 0x02
	udiagShowPeer  = 0x04
	udiagShowRQLen = 0x10
	unixDiagName   = 0
	unixDiagVFS    = 1
	unixDiagPeer   = 2
	unixDiagRQLen  = 4
	unixDiagMsgLen = 16
	unixDiagReqLen = 24
	noCookie       = ^uint32(0)
)

// UnixSockets dumps the unix sockets in states (a mask: States(...) or
// AllStates), with their names, peers and queues.
func (c *Conn) UnixSockets(states uint32) ([]UnixSocket, error) {
	req := unixReq(states, 0)
	var out []UnixSocket
	err := c.request(req, true, func(msg []byte) {
		if s, ok := parseUnix(msg); ok {
			out = append(out, s)
		}
	})
	return out, err
}

// UnixSocket looks up the unix socket with inode ino: one exact question,
// not a dump.
func (c *Conn) UnixSocket(ino uint32) (UnixSocket, error) {
	req := unixReq(AllStates, ino)
	var s UnixSocket
	found := false
	err := c.request(req, false, func(msg []byte) {
		s, found = parseUnix(msg)
	})
	if err != nil {
		return s, fmt.Errorf("looking up unix socket %d: %w", ino, err)
	}
	if !found || s.Inode != ino {
		return s, fmt.Errorf("looking up unix socket %d: %w", ino, unix.ENOENT)
	}
	return s, nil
}

// unixReq builds a struct unix_diag_req.
func unixReq(states, ino uint32) []byte {
	req := make([]byte, unixDiagReqLen)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], states)
	binary.NativeEndian.PutUint32(req[8:], ino)
	binary.NativeEndian.PutUint32(req[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowRQLen)
	binary.NativeEndian.PutUint32(req[16:], noCookie)
	binary.NativeEndian.PutUint32(req[20:], noCookie)
	return req
}

// parseUnix reads a struct unix_diag_msg and its attributes.
func parseUnix(msg []byte) (UnixSocket, bool) {
	var s UnixSocket
	if len(msg) < unixDiagMsgLen || msg[0] != unix.AF_UNIX {
		return s, false
	}
	s.Type, s.State = msg[1], msg[2]
	s.Inode = binary.NativeEndian.Uint32(msg[4:])
	attrs(msg[unixDiagMsgLen:], func(typ uint16, data []byte) {
		switch {
		case typ == unixDiagName:
			s.Name = unixName(data)
		case typ == unixDiagVFS && len(data) >= 8:
			s.File = File{Ino: binary.NativeEndian.Uint32(data), Dev: binary.NativeEndian.Uint32(data[4:])}
			s.HasFile = true
		case typ == unixDiagPeer && len(data) >= 4:
			s.Peer = binary.NativeEndian.Uint32(data)
		case typ == unixDiagRQLen && len(data) >= 8:
			s.Queue = Queue{Recv: binary.NativeEndian.Uint32(data), Send: binary.NativeEndian.Uint32(data[4:])}
			s.HasQueue = true
		}
	})
	return s, true
}

// unixName reads a sun_path: a path ends at its first NUL; an abstract
// name starts with one and is shown with "@", as ss does.
func unixName(b []byte) string {
	if len(b) > 0 && b[0] == 0 {
		return "@" + string(trimNUL(b[1:]))
	}
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
