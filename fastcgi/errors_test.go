package fastcgi

import "testing"

// TestClassText: every class reads back from the name it is written as,
// and a name this version does not know reads as 0, "unknown".
func TestClassText(t *testing.T) {
	for c := range classNames {
		b, err := c.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got Class
		if err := got.UnmarshalText(b); err != nil || got != c {
			t.Errorf("%q read back as %v (%v), want %v", b, got, err, c)
		}
	}
	got := ClassTimeout
	if err := got.UnmarshalText([]byte("a class from a later version")); err != nil || got != 0 {
		t.Errorf("an unknown name read as %v (%v), want 0", got, err)
	}
}
