package web

import (
	"math"
	"strconv"

	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
)

// The sparkline's size in SVG user units (CSS pixels): one bar per
// heartbeat recent keeps.
const (
	sparkBar    = 4
	sparkGap    = 1
	sparkWidth  = recent.Beats * (sparkBar + sparkGap)
	sparkHeight = 18
)

// sparkline is a pool's last heartbeats as two SVG paths, the good ones
// and the failed ones, made from numbers only: nothing a client or PHP
// wrote reaches them. Title says the same in words.
type sparkline struct {
	OK, Failed string
	Title      string
	Empty      bool
}

// newSparkline draws beats on recent's log scale, as top does: a bar per
// heartbeat, its height from the fastest (2 units) to the slowest (full
// height); a failed one is a full bar of its own colour.
func newSparkline(beats []recent.Beat) sparkline {
	if len(beats) == 0 {
		return sparkline{Empty: true, Title: "no heartbeat seen yet"}
	}
	var ok, failed []byte
	nFailed := 0
	x := 0 // the oldest on the left, as top draws it
	for i, f := range recent.Scale(beats) {
		h := 2 + int(math.Round(f*(sparkHeight-2)))
		d := &ok
		if beats[i].Failed {
			h, d = sparkHeight, &failed
			nFailed++
		}
		*d = append(*d, 'M')
		*d = strconv.AppendInt(*d, int64(x), 10)
		*d = append(*d, ' ')
		*d = strconv.AppendInt(*d, sparkHeight, 10)
		*d = append(*d, 'v', '-')
		*d = strconv.AppendInt(*d, int64(h), 10)
		*d = append(*d, 'h')
		*d = strconv.AppendInt(*d, sparkBar, 10)
		*d = append(*d, 'v')
		*d = strconv.AppendInt(*d, int64(h), 10)
		*d = append(*d, 'z')
		x += sparkBar + sparkGap
	}
	title := "last " + strconv.Itoa(len(beats)) + " heartbeats"
	if lo, hi, found := recent.Range(beats); found {
		title += ": " + supervisor.FormatSeconds(lo) + " to " + supervisor.FormatSeconds(hi)
	}
	if nFailed > 0 {
		title += ", " + strconv.Itoa(nFailed) + " failed"
	}
	return sparkline{OK: string(ok), Failed: string(failed), Title: title}
}

// barWidth is the width of a fill bar in SVG user units.
const barWidth = 64

// bar is a share drawn as a filled bar: its width from a number only.
type bar struct {
	Fill int
	Full bool
}

func newBar(ratio float64, full bool) bar {
	if math.IsNaN(ratio) {
		ratio = 0
	}
	return bar{Fill: int(math.Round(min(1, max(0, ratio)) * barWidth)), Full: full}
}
