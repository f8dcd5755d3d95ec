package history

import (
	"math"
	"time"

	"github.com/fpmguard/fpmguard/supervisor"
)

// Bucket is one pool over BucketWidth: what the advice needs, folded as it
// comes. Memory figures are in KiB to keep it small.
type Bucket struct {
	Samples      uint32
	IdleSamples  uint32 // samples with no worker serving a request
	Busy         BusyHistogram
	BusyMax      uint16
	WorkersMax   uint16
	QueueMax     uint32 // the larger of php-fpm's and the kernel's listen queue
	QueueSamples uint32 // samples with a request waiting
	// Increments of the status page's counters.
	MaxChildrenReached uint32
	Accepted           uint32

	Durations             DurationHistogram // requests finished
	SlowestRunningSeconds float32           // the oldest request seen running

	WorkerPSSMaxKiB  uint32
	WorkerRSSSumKiB  uint64 // the mean worker RSS of each sample, summed
	WorkerRSSSamples uint32
	MasterPSSMaxKiB  uint32

	// CPU time busy workers used against the time they were busy: near 1,
	// they spin; near 0, they wait.
	BusyCPUSeconds  float32
	BusyWallSeconds float32
}

// ring is a window of buckets, oldest first, at most Buckets long.
type ring[T any] struct {
	b      []T
	starts []int64 // each bucket's start, Unix seconds
}

// bucketStart is the start of the bucket holding t.
func bucketStart(t time.Time) int64 {
	w := int64(BucketWidth / time.Second)
	return t.Unix() / w * w
}

// at returns the bucket holding now, starting an empty one when now is
// past the newest. The pointer is good until the next call.
func (r *ring[T]) at(now time.Time) *T {
	start := bucketStart(now)
	if n := len(r.b); n > 0 && r.starts[n-1] >= start {
		return &r.b[n-1]
	}
	var zero T
	if len(r.b) == Buckets {
		copy(r.b, r.b[1:])
		copy(r.starts, r.starts[1:])
		r.b[Buckets-1], r.starts[Buckets-1] = zero, start
	} else {
		if len(r.b) == cap(r.b) {
			// Grow as append does, but never past the window: a full
			// window holds exactly Buckets.
			n := min(max(2*cap(r.b), 8), Buckets)
			r.b = append(make([]T, 0, n), r.b...)
			r.starts = append(make([]int64, 0, n), r.starts...)
		}
		r.b = append(r.b, zero)
		r.starts = append(r.starts, start)
	}
	return &r.b[len(r.b)-1]
}

// BusyHistogram counts samples by workers serving requests, in bins that
// are exact up to 4 and then double.
type BusyHistogram [busyBins]uint32

const busyBins = 12

// busyBinMax is the largest count each bin holds: 0, 1, 2, 3, 4, 6, 8, 12,
// 16, 32, 64, and anything above.
var busyBinMax = [busyBins]int{0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64, math.MaxInt}

func (h *BusyHistogram) add(busy int) {
	for i, m := range busyBinMax {
		if busy <= m {
			h[i]++
			return
		}
	}
}

// DurationHistogram counts finished requests by duration.
type DurationHistogram struct {
	Counts     [len(durationBounds) + 1]uint32
	MaxSeconds float32
}

// durationBounds are the upper bounds, in seconds, of every bin but the
// last.
var durationBounds = [...]float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

func (h *DurationHistogram) add(seconds float64) {
	i := 0
	for i < len(durationBounds) && seconds > durationBounds[i] {
		i++
	}
	h.Counts[i]++
	h.MaxSeconds = max(h.MaxSeconds, float32(seconds))
}

func (h *DurationHistogram) merge(o *DurationHistogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.MaxSeconds = max(h.MaxSeconds, o.MaxSeconds)
}

// count is the number of requests in h.
func (h *DurationHistogram) count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += uint64(c)
	}
	return n
}

// quantile is the upper bound of the bin holding the q-quantile, and never
// more than the slowest request.
func (h *DurationHistogram) quantile(q float64) float64 {
	i, ok := quantileBin(h.Counts[:], q)
	switch {
	case !ok:
		return 0
	case i < len(durationBounds):
		return min(durationBounds[i], float64(h.MaxSeconds))
	}
	return float64(h.MaxSeconds)
}

// quantile is the upper bound of the bin holding the q-quantile.
func (h *BusyHistogram) quantile(q float64) int {
	i, ok := quantileBin(h[:], q)
	if !ok {
		return 0
	}
	return busyBinMax[i]
}

// quantileBin is the index of the bin of counts that holds the q-quantile
// (its nearest rank), false when counts are all 0.
func quantileBin(counts []uint32, q float64) (int, bool) {
	var n uint64
	for _, c := range counts {
		n += uint64(c)
	}
	if n == 0 {
		return 0, false
	}
	rank := max(1, uint64(math.Ceil(q*float64(n))))
	var seen uint64
	for i, c := range counts {
		seen += uint64(c)
		if seen >= rank {
			return i, true
		}
	}
	return len(counts) - 1, true
}

// opcacheBucket is one master's opcache over BucketWidth.
type opcacheBucket struct {
	Samples         uint32
	UsedWastedMax   int64 // used plus wasted memory
	KeysMax         int64
	ScriptsMax      int64
	InternedUsedMax int64
	JITFillMax      float64
	OOMRestarts     int64 // increments
	HashRestarts    int64
	Hits, Misses    int64 // increments
}

// opcacheWindow is one master's opcache window and its latest report.
type opcacheWindow struct {
	buckets ring[opcacheBucket]
	last    supervisor.OpcacheReport
	seen    bool
	firstAt time.Time
	lastAt  time.Time
}

func (w *opcacheWindow) add(o *supervisor.OpcacheReport, now time.Time) {
	b := w.buckets.at(now)
	b.Samples++
	b.UsedWastedMax = max(b.UsedWastedMax, o.MemoryUsedBytes+o.MemoryWastedBytes)
	b.KeysMax = max(b.KeysMax, o.CachedKeys)
	b.ScriptsMax = max(b.ScriptsMax, o.CachedScripts)
	b.InternedUsedMax = max(b.InternedUsedMax, o.InternedStringsUsedBytes)
	b.JITFillMax = max(b.JITFillMax, o.JITBufferFill)
	if w.seen && o.MasterPID == w.last.MasterPID {
		b.OOMRestarts += max(0, o.OOMRestarts-w.last.OOMRestarts)
		b.HashRestarts += max(0, o.HashRestarts-w.last.HashRestarts)
		b.Hits += max(0, o.Hits-w.last.Hits)
		b.Misses += max(0, o.Misses-w.last.Misses)
	}
	if w.firstAt.IsZero() {
		w.firstAt = now
	}
	w.last, w.seen, w.lastAt = *o, true, now
	w.last.Reasons = nil
}
