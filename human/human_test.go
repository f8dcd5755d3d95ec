package human

import (
	"fmt"
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{100 * time.Nanosecond, "0µs"},
		{312 * time.Microsecond, "312µs"},
		{999_600 * time.Nanosecond, "1ms"}, {time.Second, "1s"},
		{4210 * time.Microsecond, "4.2ms"},
		{9_960 * time.Microsecond, "10ms"},
		{250 * time.Millisecond, "250ms"},
		{999_700 * time.Microsecond, "1s"},
		{3400 * time.Millisecond, "3.4s"},
		{9_960 * time.Millisecond, "10s"},
		{45*time.Second + 200*time.Millisecond, "45s"},
		{59_600 * time.Millisecond, "1m00s"},
		{4*time.Minute + 5*time.Second, "4m05s"},
		{2*time.Hour + 3*time.Minute + 20*time.Second, "2h03m"},
		{-250 * time.Millisecond, "-250ms"},
	} {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if got := fmt.Sprint(Duration(tt.in)); got != tt.want {
			t.Errorf("Duration(%v) prints %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := FormatSeconds(0.0482); got != "48ms" {
		t.Errorf("FormatSeconds(0.0482) = %q", got)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		in   uint64
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1023, "1023B"},
		{1024, "1.0KiB"},
		{1536, "1.5KiB"},
		{1024*1024 - 20, "1.0MiB"},
		{50_541_363, "48.2MiB"},
		{3 << 30, "3.0GiB"},
		{1 << 62, "4.0EiB"},
	} {
		if got := FormatBytes(tt.in); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
