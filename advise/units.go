package advise

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/human"
)

// size and seconds print sizes and durations as every output of fpmguard
// does: 48.2MiB, 250ms.
var (
	size    = human.FormatBytes
	seconds = human.FormatSeconds
)

func percent(share float64) string { return fmt.Sprintf("%.0f%%", 100*share) }

// niceSteps are the values a timeout is rounded up to, in seconds.
var niceSteps = []float64{1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800, 3600}

// niceSeconds rounds s up to a value a person would write.
func niceSeconds(s float64) float64 {
	for _, v := range niceSteps {
		if s <= v {
			return v
		}
	}
	return math.Ceil(s/3600) * 3600
}

// niceDown rounds n down to 1, 2 or 5 times a power of ten.
func niceDown(n int) int {
	if n < 10 {
		return n
	}
	p := int(math.Pow(10, math.Floor(math.Log10(float64(n)))))
	for _, m := range []int{5, 2, 1} {
		if n >= m*p {
			return m * p
		}
	}
	return p
}

// mib is n bytes in whole MiB, rounded up.
func mib(n int64) int64 { return (n + 1<<20 - 1) >> 20 }

// ParseSize reads a size as people write it: 512M, 2G, 1.5GiB, 1073741824.
func ParseSize(s string) (uint64, error) {
	u := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := 1.0
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGT", u[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			u = u[:n-1]
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*mult >= 1<<62 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes with an optional K, M, G or T, e.g. 2G", s)
	}
	return uint64(f * mult), nil
}
