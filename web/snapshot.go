package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/nginxlog"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// SnapshotVersion is the version of /snapshot's JSON. It changes only when
// a field changes meaning or goes away.
const SnapshotVersion = 1

// snapshotJSON is a watch.Snapshot as GET /snapshot serves it, for
// `fpmguard top --from`: the status report of every pool with what the
// watcher adds (probe times, heartbeat streaks, action and nginx counts,
// fpmguard's own lag). Request URIs are as the watcher keeps them: without
// their query string unless serve runs with --show-query.
type snapshotJSON struct {
	Version        int                        `json:"version"`
	Time           time.Time                  `json:"time"`
	Pools          []poolJSON                 `json:"pools"`
	Opcache        []supervisor.OpcacheReport `json:"opcache,omitempty"`
	Actions        []actionJSON               `json:"actions,omitempty"`
	MasterRestarts map[string]uint64          `json:"master_restarts,omitempty"`
	// Nginx is null when no nginx log is followed, a list (maybe empty)
	// when one is.
	Nginx []nginxJSON `json:"nginx"`
	Self  selfJSON    `json:"self"`
}

type poolJSON struct {
	Report *supervisor.PoolReport `json:"report"`
	// Probed says whether the pool's first probe has ended, for readers
	// of the JSON; it travels as LastProbe too.
	Probed    bool      `json:"probed"`
	ScrapeURI string    `json:"scrape_uri"`
	Failures  int       `json:"heartbeat_failures_in_a_row"`
	LastBeat  time.Time `json:"last_good_heartbeat"`
	LastProbe time.Time `json:"last_probe"`
}

type actionJSON struct {
	Pool       string       `json:"pool"`
	MasterName string       `json:"master_name"`
	Action     watch.Action `json:"action"`
	Result     watch.Result `json:"result"`
	Count      uint64       `json:"count"`
}

type nginxJSON struct {
	Pool       string         `json:"pool"`
	MasterName string         `json:"master_name"`
	Status     int            `json:"status"`
	Cause      nginxlog.Cause `json:"cause"`
	Count      uint64         `json:"count"`
}

type selfJSON struct {
	LagSeconds       float64 `json:"lag_seconds_total"`
	Periods          uint64  `json:"cpu_periods_total"`
	Throttled        uint64  `json:"cpu_throttled_periods_total"`
	ThrottledSeconds float64 `json:"cpu_throttled_seconds_total"`
	IntervalSeconds  float64 `json:"probe_interval_seconds"`
	DroppedLogLines  uint64  `json:"dropped_log_lines_total"`
}

// encodeSnapshot turns s into its JSON form, in a stable order.
func encodeSnapshot(s *watch.Snapshot) *snapshotJSON {
	out := &snapshotJSON{Version: SnapshotVersion, Time: s.Time, Pools: make([]poolJSON, len(s.Pools)), Opcache: s.Opcache, MasterRestarts: s.MasterRestarts,
		Self: selfJSON{LagSeconds: s.Self.LagSeconds, Periods: s.Self.Throttling.Periods, Throttled: s.Self.Throttling.Throttled,
			ThrottledSeconds: s.Self.Throttling.Time.Seconds(), IntervalSeconds: s.Self.Interval.Seconds(), DroppedLogLines: s.Self.DroppedLogLines}}
	for i, p := range s.Pools {
		out.Pools[i] = poolJSON{Report: p.Report, Probed: p.Probed(), ScrapeURI: p.ScrapeURI, Failures: p.Failures, LastBeat: p.LastBeat, LastProbe: p.LastProbe}
	}
	for k, n := range s.Actions {
		out.Actions = append(out.Actions, actionJSON{Pool: k.Pool.Pool, MasterName: k.Pool.Master, Action: k.Action, Result: k.Result, Count: n})
	}
	slices.SortFunc(out.Actions, func(a, b actionJSON) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.MasterName, b.MasterName), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Result, b.Result))
	})
	if s.Nginx != nil {
		out.Nginx = []nginxJSON{}
	}
	for k, n := range s.Nginx {
		out.Nginx = append(out.Nginx, nginxJSON{Pool: k.Pool.Pool, MasterName: k.Pool.Master, Status: k.Status, Cause: k.Cause, Count: n})
	}
	slices.SortFunc(out.Nginx, func(a, b nginxJSON) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.MasterName, b.MasterName), cmp.Compare(a.Status, b.Status), cmp.Compare(a.Cause, b.Cause))
	})
	return out
}

// DecodeSnapshot reads what GET /snapshot answered back into a snapshot.
// Only what travels is there: a worker's parent and start time stay with
// the serve that saw them, which checks them again before any kill.
func DecodeSnapshot(r io.Reader) (*watch.Snapshot, error) {
	var in snapshotJSON
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return nil, fmt.Errorf("reading the snapshot: %w", err)
	}
	if in.Version != SnapshotVersion {
		return nil, fmt.Errorf("snapshot version %d, this fpmguard reads version %d: use the same fpmguard version on both sides", in.Version, SnapshotVersion)
	}
	s := &watch.Snapshot{Time: in.Time, Pools: make([]watch.PoolView, len(in.Pools)), Opcache: in.Opcache, MasterRestarts: in.MasterRestarts,
		Actions: map[watch.ActionKey]uint64{},
		Self: watch.Self{LagSeconds: in.Self.LagSeconds, Throttling: lag.Throttling{Periods: in.Self.Periods, Throttled: in.Self.Throttled,
			Time: seconds(in.Self.ThrottledSeconds)}, Interval: seconds(in.Self.IntervalSeconds), DroppedLogLines: in.Self.DroppedLogLines}}
	for i, p := range in.Pools {
		if p.Report == nil {
			return nil, fmt.Errorf("reading the snapshot: pool %d has no report", i)
		}
		if p.Report.Processes == nil {
			p.Report.Processes = []supervisor.ProcessState{}
		}
		s.Pools[i] = watch.PoolView{Report: p.Report, ScrapeURI: p.ScrapeURI, Failures: p.Failures, LastBeat: p.LastBeat, LastProbe: p.LastProbe}
	}
	for _, a := range in.Actions {
		s.Actions[watch.ActionKey{Pool: supervisor.PoolID{Pool: a.Pool, Master: a.MasterName}, Action: a.Action, Result: a.Result}] = a.Count
	}
	if in.Nginx != nil {
		s.Nginx = map[nginxlog.Key]uint64{}
	}
	for _, n := range in.Nginx {
		s.Nginx[nginxlog.Key{Pool: supervisor.PoolID{Pool: n.Pool, Master: n.MasterName}, Status: n.Status, Cause: n.Cause}] = n.Count
	}
	return s, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
