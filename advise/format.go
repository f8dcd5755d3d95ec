package advise

import (
	"fmt"
	"io"
	"strings"

	"github.com/fpmguard/fpmguard/termsafe"
)

// WriteText writes the advice as lines ready to paste: each pool's section
// for its php-fpm config and each master's php.ini lines, with the evidence
// as comments above each line. fpmguard's own flags are comments too.
func WriteText(w io.Writer, a *Advice) error {
	var b strings.Builder
	m := a.Memory
	fmt.Fprintf(&b, "; fpmguard advise, %s\n", a.Time.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "; memory budget %s: limit %s (%s), less %s used by other processes, less %s kept in reserve\n",
		size(m.BudgetBytes), size(m.LimitBytes), termsafe.String(m.Source), size(m.OthersBytes), size(m.ReserveBytes))
	fmt.Fprintf(&b, "; CPUs: %.3g (%s). Nothing is applied: paste what you agree with, then reload php-fpm.\n", m.CPUs, m.CPUSource)
	if len(a.Pools) == 0 {
		b.WriteString(";\n; no pool was watched long enough to advise\n")
	}
	for _, p := range a.Pools {
		// The master says which config the section goes into: Debian's
		// www is in every PHP version's.
		fmt.Fprintf(&b, "\n; pool %s of master %s: %s\n", termsafe.String(p.Pool), termsafe.String(p.Master), termsafe.String(p.Confidence))
		fmt.Fprintf(&b, "; window %s to %s: %d samples, %d requests\n", p.Window.From.UTC().Format("15:04:05"), p.Window.To.UTC().Format("15:04:05"), p.Window.Samples, p.Window.Requests)
		for _, n := range p.Notes {
			fmt.Fprintf(&b, "; note: %s\n", termsafe.String(n))
		}
		if p.NotAdvised != "" {
			writeEvidence(&b, p.NotAdvised, p.Evidence)
			continue
		}
		fmt.Fprintf(&b, "[%s]\n", termsafe.String(p.Pool))
		writeLines(&b, p.Lines)
	}
	for _, o := range a.Opcache {
		verdict := "needs changes"
		switch {
		case o.NotAdvised != "":
			verdict = "not advised"
		case o.Fine:
			verdict = "fine: nothing to change"
		}
		fmt.Fprintf(&b, "\n; opcache of %s (pools %s): %s\n", termsafe.String(o.Master), termsafe.String(strings.Join(o.Pools, ", ")), verdict)
		for _, n := range o.Notes {
			fmt.Fprintf(&b, "; note: %s\n", termsafe.String(n))
		}
		if o.NotAdvised != "" {
			writeEvidence(&b, o.NotAdvised, o.Evidence)
			continue
		}
		// The master sizes the shared cache once, when it starts: a pool's
		// php_admin_value changes what its workers report, not the cache.
		b.WriteString("; php.ini of this php-fpm, not a pool's php_admin_value: the master sizes the cache when it starts\n")
		writeLines(&b, o.Lines)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeEvidence writes why there is nothing to paste, and what was seen,
// all as comments.
func writeEvidence(b *strings.Builder, why string, evidence []string) {
	fmt.Fprintf(b, "; %s\n", termsafe.String(why))
	for _, e := range evidence {
		fmt.Fprintf(b, ";   %s\n", termsafe.String(e))
	}
}

func writeLines(b *strings.Builder, lines []Line) {
	for _, l := range lines {
		what := string(l.Change)
		if l.Current != "" && l.Change != Keep {
			what += " from " + l.Current
		}
		fmt.Fprintf(b, "; %s: %s\n", l.Directive, what)
		for _, e := range l.Evidence {
			fmt.Fprintf(b, ";   %s\n", termsafe.String(e))
		}
		if l.Flag {
			fmt.Fprintf(b, "; fpmguard serve %s=%s\n", l.Directive, l.Value)
			continue
		}
		fmt.Fprintf(b, "%s = %s\n", l.Directive, l.Value)
	}
}
