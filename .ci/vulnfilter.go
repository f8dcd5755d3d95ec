//go:build ignore

// vulnfilter reads govulncheck's JSON and fails when fpmguard's code calls a
// vulnerable function of a third-party module. Findings in the standard
// library are listed as warnings: a newer Go toolchain fixes them.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

type frame struct {
	Module   string `json:"module"`
	Package  string `json:"package"`
	Function string `json:"function"`
}

type message struct {
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	failing, warning := map[string]string{}, map[string]string{}
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck: cannot read govulncheck's output:", err)
			os.Exit(2)
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue // not called from fpmguard's code
		}
		what := fmt.Sprintf("%s in %s %s.%s (fixed in %s)", f.OSV, f.Trace[0].Module, f.Trace[0].Package, f.Trace[0].Function, f.FixedVersion)
		if f.Trace[0].Module == "stdlib" {
			warning[f.OSV] = what
		} else {
			failing[f.OSV] = what
		}
	}
	for _, set := range []struct {
		name string
		m    map[string]string
	}{{"warning (standard library: build with a newer Go)", warning}, {"FAIL (a module fpmguard calls)", failing}} {
		keys := make([]string, 0, len(set.m))
		for k := range set.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("vulncheck: %s: %s\n", set.name, set.m[k])
		}
	}
	fmt.Printf("vulncheck: %d called vulnerabilities in modules, %d in the standard library\n", len(failing), len(warning))
	if len(failing) > 0 {
		os.Exit(1)
	}
}
