package supervisor

import (
	"testing"
)

func TestStripQuery(t *testing.T) {
	for in, want := range map[string]string{
		"/a.php?token=x": "/a.php",
		"/a.php#frag":    "/a.php",
		"/a.php":         "/a.php",
		"-":              "-",
		"/?":             "/",
	} {
		if got := StripQuery(in); got != want {
			t.Errorf("StripQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
