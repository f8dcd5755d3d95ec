package web

import (
	"html/template"
	"math"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
)

// The page's two drawings, a pool's heartbeats and an opcache's fill, are
// SVG written here, the one markup of the page that html/template does not
// write: they are made from numbers and fixed words only, so that nothing
// a client, a config or PHP wrote can reach them. (Written by the
// template, each sparkline cost three more escaping calls per pool.)

// The sparkline's size in SVG user units (CSS pixels): one bar per
// heartbeat recent keeps.
const (
	sparkBar    = 4
	sparkGap    = 1
	sparkWidth  = recent.Beats * (sparkBar + sparkGap)
	sparkHeight = 18
)

// noBeats is the sparkline of a pool without heartbeats yet: its room.
var noBeats = template.HTML(`<svg class="spark" width="` + strconv.Itoa(sparkWidth) + `" height="` + strconv.Itoa(sparkHeight) + `" aria-hidden="true"></svg>`)

// sparkline draws beats on recent's log scale, as top does: a bar per
// heartbeat, the oldest on the left, its height from the fastest (2 units)
// to the slowest (full height); a failed one is a full bar of its own
// colour. Its title says the same in words.
func sparkline(beats []recent.Beat) template.HTML {
	if len(beats) == 0 {
		return noBeats
	}
	var ok, failed []byte
	nFailed := 0
	for i, f := range recent.Scale(beats) {
		h := 2 + int(math.Round(f*(sparkHeight-2)))
		d := &ok
		if beats[i].Failed {
			h, d = sparkHeight, &failed
			nFailed++
		}
		// A bar: M x bottom, up h, right, down h.
		*d = append(*d, 'M')
		*d = strconv.AppendInt(*d, int64(i*(sparkBar+sparkGap)), 10)
		*d = append(*d, ' ')
		*d = strconv.AppendInt(*d, sparkHeight, 10)
		*d = append(*d, 'v', '-')
		*d = strconv.AppendInt(*d, int64(h), 10)
		*d = append(*d, 'h')
		*d = strconv.AppendInt(*d, sparkBar, 10)
		*d = append(*d, 'v')
		*d = strconv.AppendInt(*d, int64(h), 10)
		*d = append(*d, 'z')
	}
	var sb strings.Builder
	sb.WriteString(`<svg class="spark" width="` + strconv.Itoa(sparkWidth) + `" height="` + strconv.Itoa(sparkHeight) +
		`" viewBox="0 0 ` + strconv.Itoa(sparkWidth) + " " + strconv.Itoa(sparkHeight) + `" role="img"><title>last ` + strconv.Itoa(len(beats)) + " heartbeats")
	if lo, hi, found := recent.Range(beats); found {
		sb.WriteString(": " + supervisor.FormatSeconds(lo) + " to " + supervisor.FormatSeconds(hi))
	}
	if nFailed > 0 {
		sb.WriteString(", " + strconv.Itoa(nFailed) + " failed")
	}
	sb.WriteString("</title>")
	if len(ok) > 0 {
		sb.WriteString(`<path class="ok" d="` + string(ok) + `"/>`)
	}
	if len(failed) > 0 {
		sb.WriteString(`<path class="failed" d="` + string(failed) + `"/>`)
	}
	sb.WriteString("</svg>")
	return template.HTML(sb.String())
}

// barWidth is the width of a fill bar in SVG user units.
const barWidth = 64

// fillBar draws a share as a bar barWidth wide, in the colour of a full
// cache when full.
func fillBar(ratio float64, full bool) template.HTML {
	if math.IsNaN(ratio) {
		ratio = 0
	}
	class := "used"
	if full {
		class = "full"
	}
	w := strconv.Itoa(barWidth)
	return template.HTML(`<svg class="fill" width="` + w + `" height="8" viewBox="0 0 ` + w + ` 8" aria-hidden="true"><rect class="track" width="` + w +
		`" height="8"/><rect class="` + class + `" width="` + strconv.Itoa(int(math.Round(min(1, max(0, ratio))*barWidth))) + `" height="8"/></svg>`)
}
