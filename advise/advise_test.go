package advise

import (
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/history"
)

const MiB = 1 << 20

// quiet is a pool of 10 static workers of 40 MiB, one of them busy.
func quiet() history.PoolSummary {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	return history.PoolSummary{Pool: "www", Master: "/etc/php-fpm.conf", PM: "static", MaxChildren: 10,
		From: now.Add(-24 * time.Hour), To: now, Samples: 86400, Accepted: 500000,
		BusyP50: 1, BusyP95: 2, BusyP99: 2, BusyMax: 3, WorkersMax: 10,
		WorkerPSSHighBytes: 40 * MiB, WorkerPSSMaxBytes: 42 * MiB, WorkerRSSMeanBytes: 60 * MiB, MasterPSSMaxBytes: 10 * MiB,
		BusyCPUShare: 0.2, Requests: 100000, DurationP95Seconds: 0.25, DurationP99Seconds: 0.5, DurationMaxSeconds: 2}
}

func TestMaxChildren(t *testing.T) {
	budget := Memory{Source: "--memory", LimitBytes: 1034 * MiB, BudgetBytes: 1034 * MiB, CPUs: 2}
	tests := []struct {
		name   string
		pool   func(*history.PoolSummary)
		budget uint64
		want   string
		change Change
		says   string
	}{
		{"far below its size", func(p *history.PoolSummary) {}, 0, "4", Lower, "far below 10"},
		{"queueing, memory allows", func(p *history.PoolSummary) { p.QueueShare, p.BusyP99, p.BusyMax, p.QueueMax = 0.3, 10, 10, 12 }, 0, "22", Raise, "the pool is too small"},
		// 1024 MiB for workers of 40 MiB: 25 fit.
		{"queueing, memory caps", func(p *history.PoolSummary) { p.QueueShare, p.BusyP99, p.BusyMax, p.QueueMax = 0.3, 10, 10, 40 }, 0, "25", Raise, "25 fit"},
		{"queueing, no memory for more", func(p *history.PoolSummary) { p.MaxChildrenReached, p.BusyP99, p.BusyMax = 4, 10, 10 }, 424 * MiB, "10", Keep, "memory does not allow more than 10 workers"},
		{"queueing, spinning", func(p *history.PoolSummary) {
			p.MaxChildren, p.QueueShare, p.BusyP99, p.BusyMax, p.QueueMax, p.BusyCPUShare = 2, 0.5, 2, 2, 6, 0.95
		}, 0, "2", Keep, "only queue inside the kernel"},
		{"more than memory holds", func(p *history.PoolSummary) { p.MaxChildren, p.BusyP99, p.BusyMax = 40, 30, 30 }, 0, "25", Lower, "more than the budget"},
		{"no PSS", func(p *history.PoolSummary) { p.WorkerPSSHighBytes = 0 }, 0, "4", Lower, "memory sets no bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := quiet()
			tt.pool(&p)
			m := budget
			if tt.budget > 0 {
				m.BudgetBytes = tt.budget
			}
			s := &history.Summary{Pools: []history.PoolSummary{p}}
			a := Compute(s, m, p.To)
			l := find(a.Pools[0].Lines, "pm.max_children")
			all := strings.Join(l.Evidence, "; ")
			if l.Value != tt.want || l.Change != tt.change || !strings.Contains(all, tt.says) {
				t.Errorf("pm.max_children = %s (%s), want %s (%s) saying %q:\n%s", l.Value, l.Change, tt.want, tt.change, tt.says, all)
			}
		})
	}
}

func TestRSSFormulaShownBeside(t *testing.T) {
	p := quiet()
	a := Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1200 * MiB}, p.To)
	if got := a.Pools[0].RSSFormula; got != 20 {
		t.Errorf("RSS formula = %d, want 1200 MiB / 60 MiB = 20", got)
	}
}

func TestPMShape(t *testing.T) {
	tests := []struct {
		name string
		pool func(*history.PoolSummary)
		want string
	}{
		{"steady", func(p *history.PoolSummary) { p.BusyP50, p.BusyP99, p.IdleShare = 4, 6, 0.01 }, "static"},
		{"bursty", func(p *history.PoolSummary) { p.BusyP50, p.BusyP95, p.BusyP99, p.IdleShare = 1, 6, 8, 0.3 }, "dynamic"},
		{"long idle", func(p *history.PoolSummary) { p.IdleShare = 0.9 }, "ondemand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := quiet()
			tt.pool(&p)
			a := Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To)
			if l := find(a.Pools[0].Lines, "pm"); l.Value != tt.want {
				t.Errorf("pm = %s, want %s: %v", l.Value, tt.want, l.Evidence)
			}
			if tt.want == "dynamic" {
				lines := a.Pools[0].Lines
				if find(lines, "pm.min_spare_servers").Value != "1" || find(lines, "pm.max_spare_servers").Value != "6" {
					t.Errorf("spare servers: %+v", lines)
				}
			}
		})
	}
}

func TestMaxRequestsOnlyForALeak(t *testing.T) {
	p := quiet()
	if l := find(Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To).Pools[0].Lines, "pm.max_requests"); l.Directive != "" {
		t.Errorf("no leak, yet %+v", l)
	}
	p.Growth = []history.Growth{{Requests: 100, BytesPerReq: 100 << 10}, {Requests: 80, BytesPerReq: 200 << 10}}
	p.GrowthMedian = 200 << 10
	l := find(Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To).Pools[0].Lines, "pm.max_requests")
	// A quarter of 40 MiB at 200 KiB a request: 51, rounded down to 50.
	if l.Value != "50" || !strings.Contains(l.Evidence[0], "200.0KiB per request served (median of 2 workers over 180 requests)") {
		t.Errorf("pm.max_requests = %q: %v", l.Value, l.Evidence)
	}
}

func TestTimeoutsNeverBelowTheSlowest(t *testing.T) {
	p := quiet()
	p.DurationP99Seconds, p.DurationMaxSeconds, p.Slowlog = 0.5, 40, "/var/log/php-fpm/www.slow"
	lines := Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To).Pools[0].Lines
	for d, want := range map[string]string{"request_slowlog_timeout": "60s", "request_terminate_timeout": "120s", "--kill-hung-after": "180s"} {
		if got := find(lines, d).Value; got != want {
			t.Errorf("%s = %s, want %s", d, got, want)
		}
	}
}

// TestSlowlogTimeoutNeedsASlowlog: php-fpm refuses request_slowlog_timeout
// in a pool without a slowlog file, so such a pool gets a note, not a line
// to paste.
func TestSlowlogTimeoutNeedsASlowlog(t *testing.T) {
	p := quiet()
	pa := Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To).Pools[0]
	if l := find(pa.Lines, "request_slowlog_timeout"); l.Directive != "" {
		t.Errorf("a pool without a slowlog is advised %+v", l)
	}
	if find(pa.Lines, "request_terminate_timeout").Value == "" || !strings.Contains(strings.Join(pa.Notes, "\n"), "request_slowlog_timeout = 3s would log") {
		t.Errorf("lines %+v, notes %q: want request_terminate_timeout, and a note for request_slowlog_timeout", pa.Lines, pa.Notes)
	}
}

func TestConfidence(t *testing.T) {
	p := quiet()
	p.From = p.To.Add(-4 * time.Minute)
	p.BusyMax, p.Accepted = 1, 40
	if got := confidence(p); got != "based on 4m00s, all at low traffic: run `fpmguard serve` for a day and ask again" {
		t.Errorf("confidence: %q", got)
	}
}

func TestTwoPoolsShareTheBudget(t *testing.T) {
	a, b := quiet(), quiet()
	b.Pool = "other"
	// 1034 MiB less one master (10) and the other pool's 10 workers of 40
	// MiB: 624 MiB for each pool's workers.
	adv := Compute(&history.Summary{Pools: []history.PoolSummary{a, b}}, Memory{BudgetBytes: 1034 * MiB}, a.To)
	for _, p := range adv.Pools {
		if p.WorkerBudgetBytes != 624*MiB {
			t.Errorf("pool %s: worker budget %d MiB, want 624", p.Pool, p.WorkerBudgetBytes/MiB)
		}
	}
}

// TestOnePoolNameUnderTwoMasters: www of two PHP versions are two pools,
// each with its own share of the budget, and an opcache is advised from
// its own master's requests, never from the other www's.
func TestOnePoolNameUnderTwoMasters(t *testing.T) {
	a, b := quiet(), quiet()
	b.Master, b.WorkersMax, b.Accepted = "/etc/php/7.4/fpm/php-fpm.conf", 15, 0
	oc := func(master string) history.OpcacheSummary {
		return history.OpcacheSummary{Master: master, Pools: []string{"www"}, From: a.From, To: a.To, MemoryConsumptionBytes: 128 * MiB, UsedWastedMaxBytes: 30 * MiB,
			KeysMax: 1000, MaxCachedKeys: 16229, MaxAcceleratedFiles: 10000, InternedBufferBytes: 8 * MiB, InternedUsedMaxBytes: 2 * MiB}
	}
	// 1034 MiB less two masters (10 MiB each) and two opcaches (128 MiB
	// each): 758 MiB, less the other www's peak: 15 workers of 40 MiB for
	// a's, 10 for b's.
	adv := Compute(&history.Summary{Pools: []history.PoolSummary{a, b}, Opcache: []history.OpcacheSummary{oc(a.Master), oc(b.Master)}},
		Memory{BudgetBytes: 1034 * MiB}, a.To)
	want := map[string]uint64{a.Master: 158 * MiB, b.Master: 358 * MiB}
	for _, p := range adv.Pools {
		if p.WorkerBudgetBytes != want[p.Master] {
			t.Errorf("www of %s: worker budget %d MiB, want %d", p.Master, p.WorkerBudgetBytes/MiB, want[p.Master]/MiB)
		}
	}
	for _, o := range adv.Opcache {
		if (o.NotAdvised == "") != (o.Master == a.Master) {
			t.Errorf("opcache of %s: advised %v (%s); only %s's www served requests", o.Master, o.NotAdvised == "", o.NotAdvised, a.Master)
		}
	}
	var text strings.Builder
	if err := WriteText(&text, adv); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{a.Master, b.Master} {
		if !strings.Contains(text.String(), "; pool www of master "+m+": ") {
			t.Errorf("the advice does not say which www is %s's:\n%s", m, text.String())
		}
	}
}

func find(lines []Line, directive string) Line {
	for _, l := range lines {
		if l.Directive == directive {
			return l
		}
	}
	return Line{}
}

// TestNoSettingsWithoutEvidence: a window too short, or with too few
// requests of the pool's users, gives its evidence and no line to paste.
func TestNoSettingsWithoutEvidence(t *testing.T) {
	idle := func(p *history.PoolSummary) {
		p.From = p.To.Add(-5 * time.Second)
		p.Samples, p.Accepted, p.Requests, p.IdleShare = 5, 0, 0, 1
		p.BusyP50, p.BusyP95, p.BusyP99, p.BusyMax = 0, 0, 0, 0
	}
	for _, tt := range []struct {
		name    string
		pool    func(*history.PoolSummary)
		advised bool
	}{
		{"a day of traffic", func(*history.PoolSummary) {}, true},
		{"idle for 5s", idle, false},
		{"idle for a day", func(p *history.PoolSummary) { idle(p); p.From = p.To.Add(-24 * time.Hour) }, false},
		{"busy for 5s", func(p *history.PoolSummary) { p.From = p.To.Add(-5 * time.Second) }, false},
		{"49 requests in a minute", func(p *history.PoolSummary) { p.From, p.Accepted = p.To.Add(-time.Minute), 49 }, false},
		{"50 requests in 15s", func(p *history.PoolSummary) { p.From, p.Accepted = p.To.Add(-15*time.Second), 50 }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := quiet()
			tt.pool(&p)
			a := Compute(&history.Summary{Pools: []history.PoolSummary{p}}, Memory{BudgetBytes: 1 << 30}, p.To)
			pa := a.Pools[0]
			var text strings.Builder
			if err := WriteText(&text, a); err != nil {
				t.Fatal(err)
			}
			pastable := false
			for _, l := range strings.Split(text.String(), "\n") {
				pastable = pastable || (l != "" && !strings.HasPrefix(l, ";"))
			}
			if tt.advised != (len(pa.Lines) > 0) || tt.advised != pastable || tt.advised != (pa.NotAdvised == "") {
				t.Errorf("advised %v: %d lines, not advised %q, text:\n%s", tt.advised, len(pa.Lines), pa.NotAdvised, text.String())
			}
			if !tt.advised && (len(pa.Evidence) == 0 || !strings.Contains(text.String(), ";   traffic: ")) {
				t.Errorf("no evidence:\n%s", text.String())
			}
		})
	}
}
