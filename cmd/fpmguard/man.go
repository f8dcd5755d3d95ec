package main

import (
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// The man page is kingpin's --help-man, which make package runs on the
// binary it packages: it is generated from the flags and cannot drift.
// Its NAME line is what whatis(1) and apropos(1) show; kingpin's template
// gives the name alone, and this adds the summary. A newer kingpin whose
// template differs keeps its own (TestManPage says so).
func init() {
	kingpin.ManPageTemplate = strings.Replace(kingpin.ManPageTemplate,
		".SH \"NAME\"\n{{.App.Name}}\n",
		".SH \"NAME\"\n{{.App.Name}} \\- {{.App.Help}}\n", 1)
}
