package supervisor

import "time"

// spinShare is the share of an interval a spinning worker spends on a CPU
// or waiting for one.
const spinShare = 0.5

// Mark marks the workers of r whose request in flight is older than the
// threshold. Judge reads the marks; the watch loop acts on them before the
// heartbeat.
func Mark(r *PoolReport, th Thresholds) {
	th.fill()
	markHung(r, th.HungAfter)
}

// Classify tells spinning from blocked for each hung worker of r, from
// what it did since prev, the pool's previous report (nil: from its state
// at this instant). Only the watch loop, which has a previous report, does.
func Classify(r, prev *PoolReport) { classifyHung(r, prev) }

// markHung marks the workers whose request in flight is older than
// hungAfter. An idle worker's duration is its last request's: never hung.
func markHung(r *PoolReport, hungAfter time.Duration) {
	for i := range r.Processes {
		p := &r.Processes[i]
		p.Hung = !p.Idle() && time.Duration(p.RequestDurationSeconds*float64(time.Second)) > hungAfter
	}
}

// classifyHung tells spinning from blocked for each hung worker, from what
// the kernel says it did since the previous probe: time on a CPU plus time
// waiting for one. Counting the run-queue wait keeps a spinning worker on a
// busy machine or a CPU-limited container from looking blocked.
func classifyHung(r, prev *PoolReport) {
	old := map[int]ProcessState{}
	if prev != nil {
		for _, p := range prev.Processes {
			old[p.PID] = p
		}
	}
	elapsed := time.Duration(0)
	if prev != nil {
		elapsed = r.at.Sub(prev.at)
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		if !p.Hung {
			continue
		}
		o, ok := old[p.PID]
		p.HungKind = hungKind(o, *p, ok, elapsed)
	}
}

// hungKind tells spinning from blocked for worker p, from its earlier
// sample o (when known) elapsed before.
func hungKind(o, p ProcessState, known bool, elapsed time.Duration) HungKind {
	if known && o.startTicks == p.startTicks && elapsed > 0 && (p.onCPU > 0 || p.runQueue > 0) {
		busy := (p.onCPU - o.onCPU) + (p.runQueue - o.runQueue)
		if float64(busy) >= spinShare*float64(elapsed) {
			return HungSpinning
		}
		return HungBlocked
	}
	// No earlier sample: the state at this instant is all there is.
	if p.OSState == OSRunning {
		return HungSpinning
	}
	return HungBlocked
}

// HungNow is p, a worker of r not judged hung when r was read, as it is at
// its kill deadline, between two probes: its request aged age, hung, and
// spinning or blocked by what the kernel says it did since r was read.
func (r *PoolReport) HungNow(p ProcessState, age time.Duration) ProcessState {
	q := p
	q.RequestDurationSeconds = age.Seconds()
	q.Hung = true
	q.onCPU, q.runQueue = ReadSchedstat(p.PID)
	q.HungKind = hungKind(p, q, true, time.Since(r.at))
	return q
}
