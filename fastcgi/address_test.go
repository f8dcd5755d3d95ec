package fastcgi

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "unix:///run/php/www.sock", want: "unix:///run/php/www.sock"},
		{in: "/run/php/www.sock", want: "unix:///run/php/www.sock"},
		{in: "unix:/run/php/www.sock", want: "unix:///run/php/www.sock"},
		{in: "tcp://127.0.0.1:9000", want: "tcp://127.0.0.1:9000"},
		{in: "127.0.0.1:9000", want: "tcp://127.0.0.1:9000"},
		{in: "[::1]:9000", want: "tcp://[::1]:9000"},
		{in: "php:9000", want: "tcp://php:9000"},
		{in: " 127.0.0.1:9000 ", want: "tcp://127.0.0.1:9000"},
		{in: "", wantErr: `bad FastCGI address "": expected host:port`},
		{in: "9000", wantErr: "expected host:port"},
		{in: ":9000", wantErr: "the host is missing"},
		{in: "127.0.0.1:99999", wantErr: "port must be a number from 1 to 65535"},
		{in: "127.0.0.1:http", wantErr: "port must be a number"},
		{in: "unix://run/php.sock", wantErr: "absolute path"},
		{in: "unix:///", wantErr: "absolute path"},
		{in: "http://127.0.0.1:9000", wantErr: "expected host:port"},
		{in: "bad host:9000", wantErr: "neither an IP address nor a host name"},
		{in: "/run/a\x00b.sock", wantErr: "NUL byte"},
	}
	for _, tt := range tests {
		got, err := ParseAddress(tt.in)
		if tt.wantErr != "" {
			if err == nil {
				t.Errorf("ParseAddress(%q) = %v, want error containing %q", tt.in, got, tt.wantErr)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) || !strings.Contains(msg, "use unix:///run/php/www.sock") || strings.Contains(msg, "\n") {
				t.Errorf("ParseAddress(%q) error = %q, want one line with %q and a valid example", tt.in, msg, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("ParseAddress(%q) = %q, want %q", tt.in, got, tt.want)
		}
		again, err := ParseAddress(got.String())
		if err != nil || again != got {
			t.Errorf("ParseAddress(%q) does not read its own String() back: %v, %v", got, again, err)
		}
	}
}
