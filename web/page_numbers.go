package web

import (
	"html/template"
	"math"
	"strconv"
	"strings"

	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/recent"
)

// The parts of the page written here, and not by html/template, are made
// from numbers and fixed words only: their functions take numbers, so
// nothing a client, a config or PHP wrote can reach them. They are the
// page's two drawings (a pool's heartbeats, an opcache's fill) and the
// cells of counts that every row of a large page repeats: written by the
// template, each value costs an escaping call through reflection, and a
// page of 100 pools and 200 requests in flight made some 4000 of them.

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
		sb.WriteString(": " + human.FormatSeconds(lo) + " to " + human.FormatSeconds(hi))
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

// countCells writes a pool's cells of counts: busy workers (amber when
// all are), idle, total (of pm.max_children when known), hung (red when
// any), and the listen queue against its length (amber when requests
// wait). The workers are dashes when they were not seen (no status page
// read), the queue when it is not known.
func countCells(workersKnown bool, busy, idle, total, maxChildren, hung int, queue, queueLen int64, queueKnown bool) template.HTML {
	var b strings.Builder
	cell := func(label string, flag bool, class string, value string) {
		b.WriteString(`<td data-label="` + label + `" class="num inl`)
		if flag {
			b.WriteString(" " + class)
		}
		b.WriteString(`">` + value + "</td>\n")
	}
	of := ""
	if maxChildren > 0 {
		of = `<span class="muted"> of ` + strconv.Itoa(maxChildren) + "</span>"
	}
	if workersKnown {
		cell("Busy", total > 0 && busy == total, "warn", strconv.Itoa(busy))
		cell("Idle", false, "", strconv.Itoa(idle))
		cell("Total", false, "", strconv.Itoa(total)+of)
		cell("Hung", hung > 0, "bad", strconv.Itoa(hung))
	} else {
		cell("Busy", false, "", "–")
		cell("Idle", false, "", "–")
		cell("Total", false, "", "–"+of)
		cell("Hung", false, "", "–")
	}
	q := "–"
	if queueKnown {
		q = strconv.FormatInt(queue, 10) + " / " + strconv.FormatInt(queueLen, 10)
	}
	cell("Listen queue", queue > 0, "warn", q)
	return template.HTML(strings.TrimSuffix(b.String(), "\n"))
}

// pidAgeCells writes a request's worker pid, the row's header, and the
// request's age.
func pidAgeCells(pid int, ageSeconds float64) template.HTML {
	return template.HTML(`<th scope="row" data-label="PID" class="num inl">` + strconv.Itoa(pid) + "</th>\n" +
		`<td data-label="Age" class="num inl">` + human.FormatSeconds(ageSeconds) + "</td>")
}
