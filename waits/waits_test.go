package waits

import (
	"net/netip"
	"testing"
)

func TestWhat(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		w    Wait
		want string
	}{
		{Wait{Kind: KindNetRead, Peer: &Peer{Transport: TransportTCP, Remote: ap("10.0.0.5:3306"), Service: ServiceMySQL}}, "blocked reading from 10.0.0.5:3306 (MySQL)"},
		{Wait{Kind: KindNetWrite, Peer: &Peer{Transport: TransportTCP, Remote: ap("10.0.0.5:9999"), Service: ServiceOther}}, "blocked writing to 10.0.0.5:9999"},
		{Wait{Kind: KindConnect, Peer: &Peer{Transport: TransportTCP, Remote: ap("[2001:db8::1]:443"), Service: ServiceHTTPS}}, "connecting to [2001:db8::1]:443 (HTTPS)"},
		{Wait{Kind: KindNetRead, Peer: &Peer{Transport: TransportUnix, Service: ServiceOther}}, "blocked reading from an unnamed unix socket"},
		{Wait{Kind: KindNetRead}, "blocked reading from an unknown peer"},
		{Wait{Kind: KindDNS, Peer: &Peer{Transport: TransportTCP, Remote: ap("10.0.0.53:53"), Service: ServiceDNS}}, "waiting for DNS from 10.0.0.53:53"},
		{Wait{Kind: KindLock, Lock: &Lock{Path: "/var/www/cache/app.lock", Holder: 4711}}, "waiting for the lock on /var/www/cache/app.lock held by pid 4711"},
		{Wait{Kind: KindLock, Lock: &Lock{Path: "/x\x1b[2J"}}, `waiting for the lock on /x\x1b[2J`},
		{Wait{Kind: KindDisk}, "in disk I/O (D state)"},
		{Wait{Kind: KindUnknown}, "waiting on something unknown"},
	} {
		if got := c.w.What(); got != c.want {
			t.Errorf("What() = %q, want %q", got, c.want)
		}
	}
}

// TestGroupWaits: workers with connections of their own to one server
// wait on the same thing; the largest group comes first.
func TestGroupWaits(t *testing.T) {
	ap := netip.MustParseAddrPort
	db := func(pid int, local string) Wait {
		return Wait{PID: pid, Kind: KindNetRead, FD: 4, Peer: &Peer{Transport: TransportTCP, Remote: ap("10.0.0.5:3306"), Local: ap(local), Service: ServiceMySQL}}
	}
	lock := func(pid, holder int) Wait {
		return Wait{PID: pid, Kind: KindLock, FD: 3, Lock: &Lock{Path: "/var/www/cache/app.lock", Holder: holder}}
	}
	ws := []Wait{lock(1, 9), db(2, "10.0.0.2:1"), db(3, "10.0.0.2:2"), lock(4, 9), db(5, "10.0.0.2:3"), lock(6, 8), {PID: 7, Kind: KindSleep, FD: -1}}
	g := GroupWaits(ws)
	want := [][]int{{2, 3, 5}, {1, 4}, {6}, {7}}
	if len(g) != len(want) {
		t.Fatalf("groups %+v", g)
	}
	for i := range want {
		if len(g[i].PIDs) != len(want[i]) {
			t.Fatalf("group %d: %v, want %v", i, g[i].PIDs, want[i])
		}
		for j := range want[i] {
			if g[i].PIDs[j] != want[i][j] {
				t.Errorf("group %d: %v, want %v", i, g[i].PIDs, want[i])
			}
		}
	}
}
