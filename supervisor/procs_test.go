package supervisor

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

func TestParseStat(t *testing.T) {
	for _, tt := range []struct {
		name, line string
		want       OSProcess
		err        bool
	}{
		{
			name: "php-fpm worker",
			line: "4711 (php-fpm8.2) S 4700 4700 4700 0 -1 4194624 2150 0 0 0 12 3 0 0 20 0 1 0 123456 228892672 4096 18446744073709551615 1 1 0 0 0 0 0 4096 67108864 0 0 0 17 1 0 0 0 0 0\n",
			want: OSProcess{State: OSSleeping, PPID: 4700, CPUSeconds: 0.15, StartTicks: 123456, RSSBytes: 4096 * pageSize},
		},
		{
			// A command name may hold spaces and parentheses: fields count
			// from the last ')'.
			name: "odd name",
			line: "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 100 200 0 0 20 0 1 0 99 0 7 0\n",
			want: OSProcess{State: OSRunning, PPID: 1, CPUSeconds: 3, StartTicks: 99, RSSBytes: 7 * pageSize},
		},
		{
			// A master read as root: its code and stack addresses, which
			// each exec places anew, make its ExecID.
			name: "php-fpm master, read with ptrace rights",
			line: "21594 (php-fpm8.2) S 1 21594 21594 0 -1 4194560 5865 418 0 0 7 10 0 2 20 0 1 0 889315 219045888 6749 18446744073709551615 94878021029888 94878024265309 140734716238320 0 0 0 0 4096 84487 1 0 0 17 0 0 0 0 0 0 94878025217000 94878025805806 94878190170112 140734716242326 140734716242382 140734716242382 140734716243939 0\n",
			want: OSProcess{State: OSSleeping, PPID: 1, CPUSeconds: 0.17, StartTicks: 889315, RSSBytes: 6749 * pageSize, ExecID: 94878021029888 ^ 140734716238320},
		},
		{name: "short", line: "7 (x) Z 1 7 7", err: true},
		{name: "no name", line: "7 x Z 1", err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got OSProcess
			err := parseStat([]byte(tt.line), &got)
			if (err != nil) != tt.err || (!tt.err && got != tt.want) {
				t.Errorf("parseStat = %+v, %v; want %+v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestExecID runs a program twice under one pid (a shell that execs
// sleep): its ExecID changes with the exec, its start time does not.
func TestExecID(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "read x; exec sleep 60")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	read := func(prefix string) OSProcess {
		return fpmtest.Poll(t, 30*time.Second, func() (OSProcess, bool) {
			p, err := SystemProcs.ReadProcess(t.Context(), cmd.Process.Pid)
			return p, err == nil && strings.HasPrefix(p.Title, prefix)
		})
	}
	before := read("/bin/sh ")
	if before.ExecID == 0 {
		t.Fatalf("ReadProcess(sh) = %+v: want an ExecID (the test runs as root or as the child's user)", before)
	}
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	after := read("sleep ")
	if after.StartTicks != before.StartTicks || after.ExecID == 0 || after.ExecID == before.ExecID {
		t.Errorf("after exec: %+v; before: %+v", after, before)
	}
}

// TestReadProcessSelf reads this test's own process: it runs or sleeps, its
// parent is the go tool's, and it started.
func TestReadProcessSelf(t *testing.T) {
	p, err := SystemProcs.ReadProcess(t.Context(), os.Getpid())
	if err != nil || (p.State != OSRunning && p.State != OSSleeping) || p.PPID != os.Getppid() || p.StartTicks == 0 || p.RSSBytes == 0 {
		t.Errorf("ReadProcess(self %s) = %+v, %v", strconv.Itoa(os.Getpid()), p, err)
	}
}

func BenchmarkParseStat(b *testing.B) {
	line := []byte("4711 (php-fpm8.2) S 4700 4700 4700 0 -1 4194624 2150 0 0 0 12 3 0 0 20 0 1 0 123456 228892672 4096 18446744073709551615 1 1 0 0 0 0 0 4096 67108864 0 0 0 17 1 0 0 0 0 0\n")
	var p OSProcess
	for b.Loop() {
		if err := parseStat(line, &p); err != nil {
			b.Fatal(err)
		}
	}
}
