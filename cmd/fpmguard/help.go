package main

import (
	"io"
	"strings"
	"text/template"

	"github.com/alecthomas/kingpin/v2"
)

// usageTemplate is kingpin's, with one change: the list of commands shows
// each command's summary, the first paragraph of its help. The rest (the
// endpoints of serve, the exit status of status) shows in the command's
// own help and in the man page.
var usageTemplate = strings.Replace(kingpin.DefaultUsageTemplate, "{{.Help|Wrap 4}}", "{{.Help|Summary|Wrap 4}}", 1)

var usageFuncs = template.FuncMap{
	"Summary": func(help string) string {
		first, _, _ := strings.Cut(help, "\n\n")
		return first
	},
	// kingpin's own shows a repeatable argument as [<path>], as if it
	// took one.
	"ArgsToTwoColumns": func(args []*kingpin.ArgModel) [][2]string {
		var rows [][2]string
		for _, a := range args {
			if a.Hidden {
				continue
			}
			s := "<" + a.Name + ">"
			if a.PlaceHolder != "" {
				s = a.PlaceHolder
			}
			if r, ok := a.Value.(interface{ IsCumulative() bool }); ok && r.IsCumulative() {
				s += "..."
			}
			if !a.Required {
				s = "[" + s + "]"
			}
			rows = append(rows, [2]string{s, a.HelpWithEnvar()})
		}
		return rows
	},
}

// helpWriter is where --help writes: kingpin panics on a failed write,
// and `fpmguard --help | head` must not print a stack trace. A write that
// fails is dropped.
type helpWriter struct{ w io.Writer }

func (h helpWriter) Write(p []byte) (int, error) {
	_, _ = h.w.Write(p)
	return len(p), nil
}
