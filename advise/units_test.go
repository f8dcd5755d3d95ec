package advise

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"512M": 512 << 20, "2G": 2 << 30, "2g": 2 << 30, "1.5GiB": 3 << 29, "2GB": 2 << 30, "1048576": 1 << 20, " 64k ": 64 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1G", "0", "G", "1e30T"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestNiceRounding(t *testing.T) {
	for in, want := range map[float64]float64{0.3: 1, 1: 1, 1.2: 2, 11: 15, 100: 120, 4000: 7200} {
		if got := niceSeconds(in); got != want {
			t.Errorf("niceSeconds(%v) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[int]int{7: 7, 51: 50, 199: 100, 260: 200, 999: 500, 1000: 1000} {
		if got := niceDown(in); got != want {
			t.Errorf("niceDown(%d) = %d, want %d", in, got, want)
		}
	}
}
