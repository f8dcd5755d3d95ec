package advise

import (
	"fmt"
	"time"

	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/human"
)

// OpcacheAdvice is one master's opcache settings.
type OpcacheAdvice struct {
	Master string   `json:"master"`
	Pools  []string `json:"pools"`
	Window Window   `json:"window"`
	// Fine is set when nothing needs to change.
	Fine  bool     `json:"fine"`
	Lines []Line   `json:"lines"`
	Notes []string `json:"notes,omitempty"`
	// NotAdvised says why the window is too short for settings: then
	// Lines is empty, Fine false, and Evidence holds what was seen.
	NotAdvised string   `json:"not_advised,omitempty"`
	Evidence   []string `json:"evidence,omitempty"`
}

// acceleratedFiles is the table php 8.2 takes opcache.max_accelerated_files
// from: it uses the first entry at or above the value written (checked on
// php 8.2: 200 gives 223, 2000 gives 3907, 7963 gives 7963). It refuses a
// value outside 200..1000000 and keeps its default.
var acceleratedFiles = []int64{223, 463, 983, 1979, 3907, 7963, 16229, 32531, 65407, 130987, 262237, 524521, 1048793}

// AcceleratedFiles is the number of keys php-fpm really holds for
// opcache.max_accelerated_files = n.
func AcceleratedFiles(n int64) int64 {
	for _, p := range acceleratedFiles {
		if n <= p {
			return p
		}
	}
	return acceleratedFiles[len(acceleratedFiles)-1]
}

// Headroom over the peak seen, and the fill from which a setting is too
// small.
const (
	opcacheHeadroom = 1.5
	opcacheFull     = 0.8
)

// adviseOpcache advises one master's opcache, whose pools served requests
// (their users', fpmguard's own not counted) in the window.
func adviseOpcache(o history.OpcacheSummary, requests uint64) OpcacheAdvice {
	a := OpcacheAdvice{Master: o.Master, Pools: o.Pools, Fine: true,
		Window: Window{From: o.From, To: o.To, Seconds: o.To.Sub(o.From).Seconds(), Samples: o.Samples, Requests: uint64(o.Hits + o.Misses)}}
	add := func(l Line) {
		a.Lines = append(a.Lines, l)
		if l.Change != Keep {
			a.Fine = false
		}
	}
	add(opcacheMemory(o))
	add(opcacheKeys(o))
	add(opcacheInterned(o))
	a.Notes = opcacheNotes(o)
	if span := o.To.Sub(o.From).Round(time.Second); span < minWindow || requests < minRequests {
		// The evidence, without its conclusions.
		a.NotAdvised = fmt.Sprintf("no settings: its pools served %d requests in %s, and settings need at least %d over at least %s; sample longer (--duration), or under load",
			requests, human.Duration(span), minRequests, human.Duration(minWindow))
		for _, l := range a.Lines {
			a.Evidence = append(a.Evidence, l.Evidence[0])
		}
		a.Lines, a.Fine = []Line{}, false
	}
	return a
}

func opcacheMemory(o history.OpcacheSummary) Line {
	cur := o.MemoryConsumptionBytes
	l := Line{Directive: "opcache.memory_consumption", Current: fmt.Sprint(mib(cur)), Change: Keep, Value: fmt.Sprint(mib(cur))}
	l.Evidence = append(l.Evidence, fmt.Sprintf("used plus wasted peaked at %s of %s; %d restarts for lack of memory in the window, %d since the opcache started",
		size(uint64(o.UsedWastedMaxBytes)), size(uint64(cur)), o.OOMRestarts, o.OOMRestartsSinceStart))
	short := float64(o.UsedWastedMaxBytes) >= opcacheFull*float64(cur) || o.OOMRestarts > 0
	if short && cur > 0 {
		want := max(roundUp(mib(int64(float64(o.UsedWastedMaxBytes)*opcacheHeadroom)), 16), mib(cur)+16)
		l.Value, l.Change = fmt.Sprint(want), Raise
		l.Evidence = append(l.Evidence, "half again the peak, in MiB: the scripts fit with room for a deploy's new copies before the wasted share forces a restart")
	} else {
		l.Evidence = append(l.Evidence, "memory to spare: keep it")
	}
	return l
}

func opcacheKeys(o history.OpcacheSummary) Line {
	l := Line{Directive: "opcache.max_accelerated_files", Current: fmt.Sprint(o.MaxAcceleratedFiles), Change: Keep, Value: fmt.Sprint(o.MaxAcceleratedFiles)}
	l.Evidence = append(l.Evidence, fmt.Sprintf("%d keys cached at most (%d scripts) of the %d php-fpm really holds for %d; %d hash restarts in the window, %d since the opcache started",
		o.KeysMax, o.ScriptsMax, o.MaxCachedKeys, o.MaxAcceleratedFiles, o.HashRestarts, o.HashRestartsSinceStart))
	full := o.MaxCachedKeys > 0 && float64(o.KeysMax) >= opcacheFull*float64(o.MaxCachedKeys)
	if full || o.HashRestarts > 0 {
		need := int64(float64(o.KeysMax) * opcacheHeadroom)
		if o.KeysMax >= o.MaxCachedKeys {
			// The table was full: the scripts that needed a key are not
			// counted, so ask for twice as many.
			need = 2 * o.KeysMax
		}
		want := AcceleratedFiles(max(need, o.MaxCachedKeys+1))
		l.Value, l.Change = fmt.Sprint(want), Raise
		l.Evidence = append(l.Evidence, fmt.Sprintf("php-fpm rounds the value up to the next size in its table; %d is one, so it holds exactly %d keys, half again the peak or more", want, want))
	} else {
		l.Evidence = append(l.Evidence, "keys to spare: keep it")
	}
	return l
}

func opcacheInterned(o history.OpcacheSummary) Line {
	curMB := mib(o.InternedBufferBytes)
	l := Line{Directive: "opcache.interned_strings_buffer", Current: fmt.Sprint(curMB), Change: Keep, Value: fmt.Sprint(curMB)}
	l.Evidence = append(l.Evidence, fmt.Sprintf("interned strings peaked at %s of %s", size(uint64(o.InternedUsedMaxBytes)), size(uint64(o.InternedBufferBytes))))
	if o.InternedBufferBytes > 0 && float64(o.InternedUsedMaxBytes) >= opcacheFull*float64(o.InternedBufferBytes) {
		want := max(mib(int64(float64(o.InternedUsedMaxBytes)*opcacheHeadroom)), curMB+4)
		l.Value, l.Change = fmt.Sprint(want), Raise
		l.Evidence = append(l.Evidence, "nearly full: once it is, each worker keeps its own copy of new strings")
	} else {
		l.Evidence = append(l.Evidence, "room to spare: keep it")
	}
	return l
}

func opcacheNotes(o history.OpcacheSummary) []string {
	var notes []string
	switch {
	case o.ValidateTimestamps && o.RevalidateFreqSeconds == 0:
		notes = append(notes, "opcache.validate_timestamps=1 with revalidate_freq=0 checks every script's mtime on every request: in production set opcache.validate_timestamps=0 and run `fpmguard opcache reset` after each deploy, or raise opcache.revalidate_freq")
	case !o.ValidateTimestamps:
		notes = append(notes, "opcache.validate_timestamps=0: changed scripts are not seen until a reset; run `fpmguard opcache reset` (or invalidate) after each deploy")
	}
	if o.JITEnabled && o.JITFillMax >= opcacheFull {
		notes = append(notes, fmt.Sprintf("the JIT buffer (%s) filled to %s: raise opcache.jit_buffer_size, or code stops being compiled", size(uint64(o.JITBufferBytes)), percent(o.JITFillMax)))
	}
	if !o.JITEnabled && o.JITBufferBytes > 0 {
		notes = append(notes, fmt.Sprintf("opcache.jit_buffer_size reserves %s of shared memory, but the JIT is off", size(uint64(o.JITBufferBytes))))
	}
	if o.PoolMemoryConsumptionBytes > 0 {
		notes = append(notes, fmt.Sprintf("a pool sets opcache.memory_consumption to %d, which php-fpm ignores: the shared memory was sized at the master's start (%d); set it in php.ini (or with -d), and remove it from the pool",
			mib(o.PoolMemoryConsumptionBytes), mib(o.MemoryConsumptionBytes)))
	}
	if span := o.To.Sub(o.From); span < 20*time.Hour {
		notes = append(notes, fmt.Sprintf("based on %s: a deploy, or code paths not run yet, need more", human.Duration(span)))
	}
	return notes
}

func roundUp(n, step int64) int64 { return (n + step - 1) / step * step }
