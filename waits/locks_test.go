package waits

import "testing"

// TestParseLocks reads a /proc/locks captured with a flock held and two
// waiting for it, one indented deeper, and a POSIX lock with a waiter.
func TestParseLocks(t *testing.T) {
	locks := parseLocks([]byte(lockFile(t) + "garbage\n3: FLOCK ADVISORY WRITE x fe:00:1 0 EOF\n"))
	if len(locks) != 5 {
		t.Fatalf("read %d locks, want 5: %+v", len(locks), locks)
	}
	a := fileID{0xfe, 0, 9978591}
	for _, pid := range []int{28679, 28678} {
		w, h, ok := lockWaitedBy(locks, pid, &a)
		if !ok || w.typ != "FLOCK" || h.pid != 28636 || h.waiting {
			t.Errorf("%d waits on %+v held by %+v (%v), want the flock held by 28636", pid, w, h, ok)
		}
	}
	if _, _, ok := lockWaitedBy(locks, 28636, nil); ok {
		t.Error("the holder waits for no lock")
	}
	other := fileID{0xfe, 0, 1}
	if _, _, ok := lockWaitedBy(locks, 28679, &other); ok {
		t.Error("28679 waits on another file")
	}
	w, h, ok := lockWaitedBy(locks, 28753, nil)
	if !ok || w.typ != "POSIX" || h.pid != 28680 || w.file != (fileID{0xfe, 0, 9978592}) {
		t.Errorf("28753: %+v held by %+v", w, h)
	}
}

func FuzzParseLocks(f *testing.F) {
	f.Add(lockFile(f))
	f.Add("1: -> \n2: FLOCK\n3: OFDLCK ADVISORY READ -1 00:06:9 0 EOF\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range parseLocks([]byte(s)) {
			if l.id == "" || l.typ == "" {
				t.Fatalf("%+v", l)
			}
		}
	})
}
