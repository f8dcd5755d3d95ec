//go:build ignore

// vulnfilter reads govulncheck's JSON and fails when fpmguard's code calls a
// vulnerable function, of a third-party module or of the standard library:
// the shipped binary carries both. A finding in the standard library is fixed
// by building with a newer Go toolchain (GOTOOLCHAIN in the Makefile).
// Vulnerable code that is only imported or required, never called, is left out.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

type frame struct {
	Module   string `json:"module"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

type message struct {
	Config *struct {
		GoVersion      string     `json:"go_version"`
		DBLastModified *time.Time `json:"db_last_modified"`
	} `json:"config"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

func (f frame) String() string {
	if strings.HasPrefix(f.Receiver, "*") {
		return fmt.Sprintf("%s.(%s).%s", f.Package, f.Receiver, f.Function)
	} else if f.Receiver != "" {
		return fmt.Sprintf("%s.%s.%s", f.Package, f.Receiver, f.Function)
	}
	return fmt.Sprintf("%s.%s", f.Package, f.Function)
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	goVersion, configured := "", false
	// OSV ID → its findings, each "symbol, called from fpmguard's function".
	stdlib, modules := map[string][]string{}, map[string][]string{}
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck: cannot read govulncheck's output:", err)
			os.Exit(2)
		}
		if c := m.Config; c != nil {
			configured, goVersion = true, c.GoVersion
			// A database built by indexdb has no modification time: the
			// vulndb version in .ci/vulncheck dates it.
			if c.DBLastModified != nil && !c.DBLastModified.IsZero() {
				fmt.Printf("vulncheck: vulnerability database of %s\n", c.DBLastModified.Format(time.DateOnly))
			}
		}
		f := m.Finding
		// The trace runs from the vulnerable symbol to fpmguard's code; a
		// finding with no function in it is not called.
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue
		}
		what := fmt.Sprintf("%s in %s %s", f.OSV, f.Trace[0].Module, f.Trace[0])
		if n := len(f.Trace); n > 1 {
			what += ", called from " + f.Trace[n-1].String()
		}
		what += " (fixed in " + f.FixedVersion + ")"
		if f.Trace[0].Module == "stdlib" {
			stdlib[f.OSV] = append(stdlib[f.OSV], what)
		} else {
			modules[f.OSV] = append(modules[f.OSV], what)
		}
	}
	// Without its config message govulncheck did not run, and without a Go
	// version it cannot tell which standard-library vulnerabilities apply:
	// neither is a clean result.
	if !configured {
		fmt.Fprintln(os.Stderr, "vulncheck: govulncheck printed no result")
		os.Exit(2)
	}
	if goVersion == "" {
		fmt.Fprintln(os.Stderr, "vulncheck: govulncheck did not know the Go version")
		os.Exit(2)
	}
	for _, set := range []struct {
		name string
		m    map[string][]string
	}{{"FAIL (standard library: build with a newer Go)", stdlib}, {"FAIL (a module fpmguard calls)", modules}} {
		keys := make([]string, 0, len(set.m))
		for k := range set.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			// The first finding of each in sorted order: the same every run.
			paths := set.m[k]
			sort.Strings(paths)
			more := ""
			if len(paths) > 1 {
				more = fmt.Sprintf(" (and %d more findings)", len(paths)-1)
			}
			fmt.Printf("vulncheck: %s: %s%s\n", set.name, paths[0], more)
		}
	}
	fmt.Printf("vulncheck: %d called vulnerabilities in modules, %d in the standard library of %s\n", len(modules), len(stdlib), goVersion)
	if len(modules)+len(stdlib) > 0 {
		os.Exit(1)
	}
}
