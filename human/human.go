// Package human prints durations and sizes for people, the one way every
// output of fpmguard prints them: status, check, top, advise, the events
// and the logs. It imports nothing of fpmguard's, so that every package
// that writes for people may use it.
package human

import (
	"fmt"
	"strings"
	"time"
)

// FormatDuration prints a duration the way people read it, and the one
// way every output of fpmguard prints one: 312µs, 4.2ms, 250ms, 3.4s, 45s,
// 4m05s, 2h03m. Under a second it is in ms, and in µs under a
// millisecond; the precision shrinks as the duration grows.
func FormatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	// Each case rounds first, so that a value rounding up to the next unit
	// is printed in it: 999.7ms is 1.0s, not 1000ms.
	if r := d.Round(time.Microsecond); r < time.Millisecond {
		if r == 0 && d == 0 {
			return "0s"
		}
		return fmt.Sprintf("%dµs", r/time.Microsecond)
	}
	if r := d.Round(100 * time.Microsecond); r < 10*time.Millisecond {
		return oneDecimal(float64(r)/float64(time.Millisecond)) + "ms"
	}
	if r := d.Round(time.Millisecond); r < time.Second {
		return fmt.Sprintf("%dms", r/time.Millisecond)
	}
	if r := d.Round(100 * time.Millisecond); r < 10*time.Second {
		return oneDecimal(float64(r)/float64(time.Second)) + "s"
	}
	if r := d.Round(time.Second); r < time.Minute {
		return fmt.Sprintf("%ds", r/time.Second)
	}
	if r := d.Round(time.Second); r < time.Hour {
		return fmt.Sprintf("%dm%02ds", r/time.Minute, r%time.Minute/time.Second)
	}
	r := d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", r/time.Hour, r%time.Hour/time.Minute)
}

// oneDecimal prints v with one decimal, none when it is 0: 4.2, 1.
func oneDecimal(v float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
}

// FormatSeconds is FormatDuration of a duration in seconds, as reports
// keep them.
func FormatSeconds(sec float64) string {
	return FormatDuration(time.Duration(sec * float64(time.Second)))
}

// Duration is a time.Duration that prints through FormatDuration, for
// the messages that format it with %s or %v.
type Duration time.Duration

func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// FormatBytes prints a size in IEC units, the one way every output of
// fpmguard prints one: 512B, 24.0MiB, 1.5GiB.
func FormatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v := float64(n) / unit
	exp := 0
	// 1023.96KiB would print as 1024.0KiB: move on to the next unit as
	// soon as the rounded figure reaches it.
	for v >= unit-0.05 && exp < len("KMGTPE")-1 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[exp])
}
