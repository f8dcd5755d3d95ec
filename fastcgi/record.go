package fastcgi

// The FastCGI record layer: what a record looks like on the wire. gofast
// encodes fpmguard's requests; this is the one place that knows the framing
// for everything else: the recorder that checks what php-fpm answers, and the
// hostile peers of fpmtest that answer as php-fpm would, or wrongly on
// purpose. Modelled on net/http/fcgi's fcgi.go, but exported where the test
// peers need it, and built on byte slices because every peer composes its
// answer before sending it (whole, a byte at a time, or cut short).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RecordType is the type of a FastCGI record (the spec's section 8).
type RecordType uint8

// The record types. A responder such as php-fpm sends only Stdout, Stderr
// and EndRequest for a request, and GetValuesResult and UnknownType for
// management records.
const (
	BeginRequest RecordType = iota + 1
	AbortRequest
	EndRequest
	Params
	Stdin
	Stdout
	Stderr
	Data
	GetValues
	GetValuesResult
	UnknownType
)

// ProtocolStatus is how an EndRequest record says the request ended: a
// status other than RequestComplete means the application never ran it.
type ProtocolStatus uint8

// The protocol statuses.
const (
	RequestComplete   ProtocolStatus = iota // the request ran; AppStatus says how
	CantMultiplexConn                       // a second request on a connection that takes one at a time
	Overloaded                              // the application is out of some resource, e.g. workers
	UnknownRole                             // the role in BeginRequest is not one the application plays
)

const (
	// version is the only FastCGI version there is: any other in a header
	// means the peer does not speak FastCGI (an HTTP server answers "HTTP/",
	// whose 'H' is read as version 72).
	version = 1
	// headerLen is the size of a record header.
	headerLen = 8
	// maxContent is the most content one record can carry: its length is
	// a 16-bit field.
	maxContent = 65535
	// endRequestLen is the size of an EndRequest record's content.
	endRequestLen = 8
)

var errBadRecord = errors.New("bad FastCGI record")

// RecordHeader is a record header. The version is not a field: it is always
// 1 when written, and a header of any other version is rejected when read.
// The reserved byte is always 0 when written and ignored when read.
type RecordHeader struct {
	Type          RecordType
	ID            uint16 // the request id; 0 for management records
	ContentLength uint16
	PaddingLength uint8 // bytes after the content, to be skipped
}

// Append appends h encoded as it is, even when it does not match the content
// that follows: a test peer can lie about the length on purpose.
func (h RecordHeader) Append(b []byte) []byte {
	b = append(b, version, byte(h.Type))
	b = binary.BigEndian.AppendUint16(b, h.ID)
	b = binary.BigEndian.AppendUint16(b, h.ContentLength)
	return append(b, h.PaddingLength, 0)
}

// parseHeader decodes a header, rejecting any version but 1. It checks
// nothing else: which types and ids are acceptable is up to the reader.
func parseHeader(b *[headerLen]byte) (RecordHeader, error) {
	if b[0] != version {
		return RecordHeader{}, fmt.Errorf("%w: FastCGI version %d, want %d", errBadRecord, b[0], version)
	}
	return RecordHeader{
		Type:          RecordType(b[1]),
		ID:            binary.BigEndian.Uint16(b[2:4]),
		ContentLength: binary.BigEndian.Uint16(b[4:6]),
		PaddingLength: b[6],
	}, nil
}

// ReadRecordHeader reads one header from r. The caller reads or skips the
// ContentLength+PaddingLength bytes that follow it.
func ReadRecordHeader(r io.Reader) (RecordHeader, error) {
	var b [headerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return RecordHeader{}, err
	}
	return parseHeader(&b)
}

// padding is the padding after n bytes of content. The spec only recommends
// it, to keep records 8-byte aligned; php-fpm and gofast pad this way, so
// the test peers do too. Readers accept any padding the header declares.
func padding(n int) uint8 { return uint8(-n & 7) }

// AppendRecord appends one record of type t for request id carrying content,
// padded to a multiple of 8 bytes. A stream (Stdout, Stderr, Params, Stdin)
// is ended by a record with empty content. It panics if content is longer
// than 65535 bytes, the most one record can carry: splitting a stream into
// records is the caller's business.
func AppendRecord(b []byte, t RecordType, id uint16, content []byte) []byte {
	if len(content) > maxContent {
		panic(fmt.Sprintf("fastcgi: %d bytes of content in one record, the most is %d", len(content), maxContent))
	}
	pad := padding(len(content))
	b = RecordHeader{Type: t, ID: id, ContentLength: uint16(len(content)), PaddingLength: pad}.Append(b)
	b = append(b, content...)
	var zeros [7]byte
	return append(b, zeros[:pad]...)
}

// EndRequestBody is the content of an EndRequest record, the last record of
// every request.
type EndRequestBody struct {
	AppStatus      uint32 // the script's exit status; php-fpm always sends 0
	ProtocolStatus ProtocolStatus
}

// AppendEndRequest appends the EndRequest record of request id.
func AppendEndRequest(b []byte, id uint16, body EndRequestBody) []byte {
	var c [endRequestLen]byte // the last three bytes are reserved
	binary.BigEndian.PutUint32(c[:4], body.AppStatus)
	c[4] = byte(body.ProtocolStatus)
	return AppendRecord(b, EndRequest, id, c[:])
}

// parseEndRequest decodes an EndRequest record's content.
func parseEndRequest(c *[endRequestLen]byte) EndRequestBody {
	return EndRequestBody{AppStatus: binary.BigEndian.Uint32(c[:4]), ProtocolStatus: ProtocolStatus(c[4])}
}
