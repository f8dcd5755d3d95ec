package waits

import (
	"testing"
)

func TestParseSyscall(t *testing.T) {
	sc, err := parseSyscall([]byte("7 0x7ffd25be05c0 0x2 0x3e8 0x0 0x1 0x0 0x7ffd25be0538 0x7f2291027230\n"))
	if err != nil || sc.nr != 7 || sc.args[0] != 0x7ffd25be05c0 || sc.args[1] != 2 || sc.args[2] != 1000 || sc.running || sc.user {
		t.Errorf("%+v %v", sc, err)
	}
	if sc, err := parseSyscall([]byte("running\n")); err != nil || !sc.running {
		t.Errorf("%+v %v", sc, err)
	}
	if sc, err := parseSyscall([]byte("-1 0x7ffd25be0538 0x7f2291027230\n")); err != nil || !sc.user {
		t.Errorf("%+v %v", sc, err)
	}
	for _, bad := range []string{"", "7 0x1", "x 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0", "7 0xz 0x0 0x0 0x0 0x0 0x0 0x0 0x0"} {
		if _, err := parseSyscall([]byte(bad)); err == nil {
			t.Errorf("%q read", bad)
		}
	}
}

func FuzzParseSyscall(f *testing.F) {
	f.Add("7 0x7ffd25be05c0 0x2 0x3e8 0x0 0x1 0x0 0x7ffd25be0538 0x7f2291027230")
	f.Add("running")
	f.Add("-1 0x1 0x2")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseSyscall([]byte(s))
		if err == nil && sc.running && sc.user {
			t.Fatalf("%q: running and blocked", s)
		}
	})
}

// TestReadStat: a process title may hold spaces and parentheses; the
// fields are read after the last one.
func TestReadStat(t *testing.T) {
	p := newFakeProc()
	p.files["7/stat"] = []string{"7 (php-fpm: pool (www) x) S 3 7 7 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"}
	p.files["7/schedstat"] = []string{"1000 2000 42\n"}
	st, err := readStat(p, 7)
	if err != nil || st.state != 'S' || st.ppid != 3 || st.start != 12345 || st.runs != 42 {
		t.Errorf("%+v %v", st, err)
	}
	p.files["8/stat"] = []string{"8 (x S 3"}
	if _, err := readStat(p, 8); err == nil {
		t.Error("a stat line without ')' was read")
	}
}

func TestEpollTargets(t *testing.T) {
	got := epollTargets([]byte("pos:\t0\nflags:\t02\ntfd:        5 events:       19 data:                5  pos:0 ino:b sdev:8\ntfd:        6 events:        4 data: 6\ntfd: x events: y\n"))
	if len(got) != 2 || got[5] != 0x19 || got[6] != 4 {
		t.Errorf("%v", got)
	}
}

func TestInRoot(t *testing.T) {
	for _, c := range []struct{ root, path, want string }{
		{"/", "/var/www/a.lock", "/var/www/a.lock"},
		{"", "/var/www/a.lock", "/var/www/a.lock"},
		{"/srv/chroot", "/srv/chroot/var/www/a.lock", "/var/www/a.lock"},
		{"/srv/chroot", "/srv/chroot", "/"},
		{"/srv/chroot", "/srv/chroot2/a", "/srv/chroot2/a"},
		{"/srv/chroot", "pipe:[12]", "pipe:[12]"},
	} {
		if got := inRoot(c.root, c.path); got != c.want {
			t.Errorf("inRoot(%q, %q) = %q, want %q", c.root, c.path, got, c.want)
		}
	}
}
