package watch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/supervisor"
)

// The diagnosis in the watch loop: what held-up workers wait for and the
// PHP stacks of the hung ones (supervisor.Diagnoser), read beside the
// probe loop. A reading starts once a tick has marked its hung workers and
// runs while the tick kills and sends its heartbeat; the tick takes it
// before it judges, waiting diagnoseWait at most. A reading that has not
// ended by then (a /proc read waiting on the kernel) is taken by a later
// tick; meanwhile the ticks show the reading before it. A pool whose
// requests are all short costs one pass over its workers (Candidates),
// and nothing else.

// diagnoseWait is how long a tick waits for its reading to end, once its
// heartbeat is done. A reading of a few hung workers takes a millisecond.
const diagnoseWait = 50 * time.Millisecond

// diagnoseTimeout bounds one reading: a stack read that has not ended by
// then is given up (supervisor.ReadStack), and the reading ends.
const diagnoseTimeout = 5 * time.Second

// killStackWait bounds the stack read at the moment fpmguard decides to
// kill a worker; past it, the kill event carries the stack read last.
const killStackWait = 200 * time.Millisecond

// poolDiagnosis is a pool's diagnosis in the loop: one reading at a time.
type poolDiagnosis struct {
	state supervisor.PoolDiagnosis // only the reading running touches it

	mu      sync.Mutex
	running bool                // a reading runs
	last    *supervisor.Reading // the latest reading that ended

	// reports are the pool's latest reports, for the request a worker
	// that died was running (deaths.go).
	reports recentReports
}

// recentReports keeps a pool's last few reports: a worker that dies a
// moment after a status read showed its request is gone from the reports
// that follow, which may be published before its exit line is read.
type recentReports struct {
	n    atomic.Uint32
	ring [4]atomic.Pointer[supervisor.PoolReport]
}

// keep adds r, the newest. Only the pool's tick calls it.
func (rr *recentReports) keep(r *supervisor.PoolReport) {
	i := rr.n.Add(1)
	rr.ring[i%uint32(len(rr.ring))].Store(r)
}

// request is the request worker pid ran in the newest report that showed
// it busy, "" if none did.
func (rr *recentReports) request(pid int) string {
	n := rr.n.Load()
	for k := range uint32(len(rr.ring)) {
		r := rr.ring[(n-k)%uint32(len(rr.ring))].Load()
		if r == nil {
			continue
		}
		for i := range r.Processes {
			if p := &r.Processes[i]; p.PID == pid {
				if p.Idle() || p.ProbeRequest() {
					return ""
				}
				return requestText(p)
			}
		}
	}
	return ""
}

// startDiagnosis starts the reading of r's held-up workers, and returns
// what applies it to r: the tick calls it before it judges.
func (w *Watcher) startDiagnosis(ctx context.Context, pw *poolWatch, t supervisor.Target, r *supervisor.PoolReport) func() {
	d := w.prober.Diagnoser
	if d == nil {
		return func() {}
	}
	cands := supervisor.Candidates(t, r, w.th.HungAfter)
	pd := &pw.diag
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if len(cands) == 0 {
		if pd.last != nil && !pd.running {
			// Every request is short again: forget how long they waited.
			pd.last, pd.state = nil, supervisor.PoolDiagnosis{}
		}
		return func() {}
	}
	prev := pd.last
	if pd.running {
		return func() { prev.Apply(r) }
	}
	pd.running = true
	master := 0
	if r.Master != nil && r.Master.Alive {
		master = r.Master.PID
	}
	done := make(chan *supervisor.Reading, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
		defer cancel()
		rd := d.Read(rctx, t, master, cands, &pd.state)
		pd.mu.Lock()
		pd.running, pd.last = false, rd
		pd.mu.Unlock()
		done <- rd
	}()
	return func() {
		timer := time.NewTimer(diagnoseWait)
		defer timer.Stop()
		select {
		case rd := <-done:
			rd.Apply(r)
		case <-timer.C:
			prev.Apply(r)
		}
	}
}

// diagnosisWarning turns the diagnoser's warnings into events: a
// permission fpmguard lacks, a PHP build it cannot read, a slowlog it
// cannot read, each said once.
func (w *Watcher) diagnosisWarning(master int, msg string) {
	w.events.Add(event.Event{Master: master, Kind: event.KindDiagnosis, Message: msg})
}

// killEvidence adds to the record of a worker about to be killed what it
// waits for and its PHP stack, read now: the evidence outlives the worker.
// A read that does not end within killStackWait, or fails, leaves the
// stack read last, if any, with its age.
func (w *Watcher) killEvidence(r *supervisor.PoolReport, p supervisor.ProcessState, rec *event.WorkerRecord) {
	if p.Wait != nil {
		rec.Wait = p.Wait.What()
	}
	d := w.prober.Diagnoser
	if d == nil {
		return
	}
	master := 0
	if r.Master != nil {
		master = r.Master.PID
	}
	ctx, cancel := context.WithTimeout(context.Background(), killStackWait)
	defer cancel()
	st, _ := d.ReadStack(ctx, p.PID, p.StartTicks(), master)
	if len(st.Frames) == 0 && p.Stack != nil && len(p.Stack.Frames) > 0 {
		rec.StackError = fmt.Sprintf("%s; the stack shown was read %s before", st.Error, time.Since(p.Stack.At).Round(time.Millisecond))
		st = p.Stack
	} else if st.Error != "" {
		rec.StackError = st.Error
	}
	for _, f := range st.Frames {
		rec.Stack = append(rec.Stack, f.String())
	}
}

// waitNote is what a hung worker's event adds of its wait and stack, when
// they were read: " — blocked reading from 127.0.0.1:3306 (MySQL), in
// PDO->query <- Repo->find <- handle".
func waitNote(p *supervisor.ProcessState) string {
	s := ""
	if p.Wait != nil {
		s = " — " + p.Wait.What()
	}
	if p.Stack != nil && len(p.Stack.Frames) > 0 {
		if s == "" {
			s = " —"
		} else {
			s += ","
		}
		s += " in " + p.Stack.Names()
	}
	return s
}
