package waits

import (
	"testing"
	"time"
)

// TestTracker: a worker waiting on the same thing keeps its first time;
// a new wait, or another process on the same pid, starts over.
func TestTracker(t *testing.T) {
	var tr Tracker
	t0 := time.Unix(1000, 0)
	mysql := Wait{PID: 7, Start: 50, Kind: KindNetRead, FD: 4, Peer: &Peer{Transport: TransportTCP, Service: ServiceMySQL}}
	sleep := Wait{PID: 8, Start: 60, Kind: KindSleep, FD: -1}
	ws := []Wait{mysql, sleep}
	tr.Update(t0, ws)
	ws = []Wait{mysql, sleep}
	tr.Update(t0.Add(30*time.Second), ws)
	if !ws[0].Since.Equal(t0) || !ws[1].Since.Equal(t0) {
		t.Errorf("since %v %v, want %v", ws[0].Since, ws[1].Since, t0)
	}
	reused := sleep
	reused.Start = 61
	redis := mysql
	redis.Peer = &Peer{Transport: TransportTCP, Service: ServiceRedis}
	ws = []Wait{redis, reused}
	t2 := t0.Add(time.Minute)
	tr.Update(t2, ws)
	if !ws[0].Since.Equal(t2) || !ws[1].Since.Equal(t2) {
		t.Errorf("since %v %v, want %v", ws[0].Since, ws[1].Since, t2)
	}
}
