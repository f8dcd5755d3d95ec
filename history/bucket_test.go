package history

import (
	"math"
	"testing"
)

// TestQuantiles: both histograms answer with the upper bound of the bin
// that holds the nearest rank, through one function.
func TestQuantiles(t *testing.T) {
	var busy BusyHistogram
	for _, n := range []int{0, 0, 1, 2, 2, 2, 5, 5, 20, 100} {
		busy.add(n)
	}
	var d DurationHistogram
	for _, s := range []float64{0.01, 0.02, 0.2, 0.3, 3, 700} {
		d.add(s)
	}
	for _, tc := range []struct {
		q       float64
		busy    int     // of 10 samples
		seconds float64 // of 6; past the last bound, the slowest
	}{
		{0, 0, 0.05},
		{0.2, 0, 0.05},
		{0.5, 2, 0.25},
		{0.9, 32, 700},
		{0.95, math.MaxInt, 700},
		{1, math.MaxInt, 700},
	} {
		if got := busy.quantile(tc.q); got != tc.busy {
			t.Errorf("busy q%v = %d, want %d", tc.q, got, tc.busy)
		}
		if got := d.quantile(tc.q); got != tc.seconds {
			t.Errorf("durations q%v = %v, want %v", tc.q, got, tc.seconds)
		}
	}
	if (&BusyHistogram{}).quantile(0.5) != 0 || (&DurationHistogram{}).quantile(0.5) != 0 {
		t.Error("an empty histogram has a quantile")
	}
}
