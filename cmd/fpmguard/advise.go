package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/fpmguard/fpmguard/advise"
	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/history"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/watch"
	"github.com/fpmguard/fpmguard/web"
	"golang.org/x/term"
)

// adviseFlags are the flags of advise.
type adviseFlags struct {
	from     string
	duration time.Duration
	interval time.Duration
	memory   string
	reserve  string
	output   string
}

func addAdviseFlags(cmd *kingpin.CmdClause, f *adviseFlags) {
	fromFlag(cmd, &f.from, "Advise from a running fpmguard serve's history instead of sampling:")
	declare(cmd, "duration", "How long to sample the pools before advising.",
		&durationValue{name: "duration", to: &f.duration, min: time.Second, eg: "60s"}).Default("60s")
	intervalFlag(cmd, &f.interval, "Time between probes of each pool while sampling.")
	declare(cmd, "memory", "The memory php-fpm may use, e.g. 2G (default: its cgroup's limit, else the host's memory less what other processes use).",
		&textValue{name: "memory", to: &f.memory, check: size}).PlaceHolder("SIZE")
	declare(cmd, "reserve", "Memory kept back from the budget, e.g. 256M (default: 10% of the limit).",
		&textValue{name: "reserve", to: &f.reserve, check: size}).PlaceHolder("SIZE")
	outputFlag(cmd, &f.output, "text", "json")
}

func cmdAdvise(ctx context.Context, c *cli, stdout, stderr io.Writer) int {
	f := &c.advise
	var o advise.Options
	for _, s := range []struct {
		flag, v string
		to      *uint64
	}{{"--memory", f.memory, &o.MemoryBytes}, {"--reserve", f.reserve, &o.ReserveBytes}} {
		if s.v == "" {
			continue
		}
		n, err := advise.ParseSize(s.v)
		if err != nil {
			fmt.Fprintf(stderr, "fpmguard: error: %s %v\n", s.flag, errLine(err))
			return 2
		}
		*s.to = n
	}
	var a *advise.Advice
	var err error
	if f.from != "" {
		a, err = remoteAdvice(ctx, c)
	} else {
		a, err = sampleAdvice(ctx, c, o, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: %s\n", errLine(err))
		return 1
	}
	if f.output == "json" {
		err = writeJSON(stdout, a)
	} else {
		err = advise.WriteText(stdout, a)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: error: writing the advice: %v\n", err)
		return 1
	}
	return 0
}

func remoteAdvice(ctx context.Context, c *cli) (*advise.Advice, error) {
	f := &c.advise
	remote, err := web.NewRemote(f.from, os.Getenv("FPMGUARD_PASSWORD"), max(c.timeout, 5*time.Second))
	if err != nil {
		return nil, err
	}
	return remote.Advice(ctx, f.memory, f.reserve)
}

// sampleAdvice watches the pools for --duration, as serve would with its
// actions off, and advises from what it saw.
func sampleAdvice(ctx context.Context, c *cli, o advise.Options, stderr io.Writer) (*advise.Advice, error) {
	f := &c.advise
	targets, err := resolveTargets(ctx, c)
	if err != nil && len(targets) == 0 {
		return nil, err
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmguard: some pools were not found: %s\n", errLine(err))
	}
	pr := newProber(c)
	pr.ReadPSS = true
	h := history.New()
	w := watch.New(pr, targets, watch.Config{Interval: f.interval, History: h}, event.NewLog(nil))
	wctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	done := make(chan struct{})
	go func() {
		w.Run(wctx)
		close(done)
	}()
	progress(wctx, stderr, len(targets), f.duration)
	<-done
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted before the %s of sampling ended", f.duration)
	}
	return advise.FromSummary(h.Summary(), advise.System, o, time.Now())
}

// progress says how far sampling is until ctx ends: a line that counts
// on a terminal, one line otherwise.
func progress(ctx context.Context, w io.Writer, pools int, d time.Duration) {
	start := time.Now()
	file, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(file.Fd())) {
		fmt.Fprintf(w, "fpmguard advise: sampling %d pools for %s\n", pools, human.FormatDuration(d))
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		fmt.Fprintf(w, "\rfpmguard advise: sampling %d pools, %s of %s ", pools, human.FormatDuration(time.Since(start).Truncate(time.Second)), human.FormatDuration(d))
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
	}
}
