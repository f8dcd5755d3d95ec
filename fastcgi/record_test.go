package fastcgi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestRecordRoundTrip: every record type, at content lengths on both sides
// of the 8-byte padding boundary and at the most a record carries, reads
// back as it was written, padded with zeros to a multiple of 8.
func TestRecordRoundTrip(t *testing.T) {
	types := []RecordType{BeginRequest, AbortRequest, EndRequest, Params, Stdin, Stdout, Stderr, Data, GetValues, GetValuesResult, UnknownType}
	tests := []struct {
		name    string
		n       int
		padding uint8
	}{
		{"empty", 0, 0},
		{"one", 1, 7},
		{"seven", 7, 1},
		{"eight", 8, 0},
		{"nine", 9, 7},
		{"max", 65535, 1},
	}
	for i, typ := range types {
		if want := RecordType(i + 1); typ != want {
			t.Fatalf("type %d is %d, want %d as the spec numbers them", i, typ, want)
		}
		for _, tt := range tests {
			content := bytes.Repeat([]byte{'a' + byte(i)}, tt.n)
			id := uint16(0x1234 + i)
			rec := AppendRecord([]byte("prefix"), typ, id, content)
			if !bytes.HasPrefix(rec, []byte("prefix")) {
				t.Fatalf("type %d, %s: AppendRecord overwrote what it appends to", typ, tt.name)
			}
			rec = rec[len("prefix"):]
			if want := headerLen + tt.n + int(tt.padding); len(rec) != want || len(rec)%8 != 0 {
				t.Fatalf("type %d, %s: record of %d bytes, want %d", typ, tt.name, len(rec), want)
			}
			r := bytes.NewReader(rec)
			h, err := ReadRecordHeader(r)
			if err != nil {
				t.Fatalf("type %d, %s: %v", typ, tt.name, err)
			}
			if want := (RecordHeader{Type: typ, ID: id, ContentLength: uint16(tt.n), PaddingLength: tt.padding}); h != want {
				t.Errorf("type %d, %s: header %+v, want %+v", typ, tt.name, h, want)
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest[:tt.n], content) || !bytes.Equal(rest[tt.n:], make([]byte, tt.padding)) {
				t.Errorf("type %d, %s: content or padding changed", typ, tt.name)
			}
		}
	}
}

func TestEndRequestRoundTrip(t *testing.T) {
	for _, body := range []EndRequestBody{
		{0, RequestComplete},
		{255, RequestComplete},
		{0xdeadbeef, CantMultiplexConn},
		{0, Overloaded},
		{1, UnknownRole},
	} {
		rec := AppendEndRequest(nil, 1, body)
		h, err := ReadRecordHeader(bytes.NewReader(rec))
		if err != nil {
			t.Fatal(err)
		}
		if want := (RecordHeader{Type: EndRequest, ID: 1, ContentLength: endRequestLen}); h != want {
			t.Errorf("header %+v, want %+v", h, want)
		}
		if got := parseEndRequest((*[endRequestLen]byte)(rec[headerLen:])); got != body {
			t.Errorf("body %+v, want %+v", got, body)
		}
		if reserved := rec[headerLen+5:]; !bytes.Equal(reserved, make([]byte, 3)) {
			t.Errorf("reserved bytes %x, want zeros", reserved)
		}
	}
}

// TestReadRecordHeaderRejects: a header of another version is not FastCGI
// (an HTTP answer's 'H' reads as version 72), and a header cut short is the
// reader's error, not a record.
func TestReadRecordHeaderRejects(t *testing.T) {
	good := AppendRecord(nil, Stdout, 1, []byte("x"))
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"version0", append([]byte{0}, good[1:]...), errBadRecord, "FastCGI version 0, want 1"},
		{"version2", append([]byte{2}, good[1:]...), errBadRecord, "FastCGI version 2, want 1"},
		{"http", []byte("HTTP/1.1 200 OK\r\n"), errBadRecord, "FastCGI version 72, want 1"},
		{"empty", nil, io.EOF, ""},
		{"short", good[:headerLen-1], io.ErrUnexpectedEOF, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadRecordHeader(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
			if h != (RecordHeader{}) {
				t.Errorf("header %+v returned with the error", h)
			}
		})
	}
}

// TestRecordHeaderAppendLies: a header is encoded as given, whatever
// follows it, so that a test peer can promise content it never sends.
func TestRecordHeaderAppendLies(t *testing.T) {
	got := RecordHeader{Type: Stdout, ID: 1, ContentLength: 1000, PaddingLength: 3}.Append(nil)
	if want := []byte{1, 6, 0, 1, 0x03, 0xe8, 3, 0}; !bytes.Equal(got, want) {
		t.Errorf("header %x, want %x", got, want)
	}
}

func TestAppendRecordTooLong(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for 65536 bytes of content")
		}
	}()
	AppendRecord(nil, Stdout, 1, make([]byte, 65536))
}
