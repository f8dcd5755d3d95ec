package supervisor

import (
	"os"
	"strconv"
	"testing"
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

// TestReadProcessSelf reads this test's own process: it is alive, its
// parent is the go tool's, and it started. Its state is its main thread's,
// which sleeps while the test runs on another of Go's threads: running or
// sleeping, whichever.
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
