package supervisor

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// TestMasterPHPVersion reads each version's master's PHP version from its
// binary, through /proc/PID/exe: in another root too. A process that is
// no PHP has no version.
func TestMasterPHPVersion(t *testing.T) {
	fpmtest.ForEachVersion(t, func(t *testing.T, v string) {
		fpm := fpmtest.Start(t, fpmtest.Options{Version: v})
		for range 2 { // read, then from the cache
			if got := MasterPHPVersion(fpm.MasterPID()); got.String() != fpm.PHPVersion {
				t.Fatalf("master %d: PHP %q, php-fpm -v says %s", fpm.MasterPID(), got, fpm.PHPVersion)
			}
		}
	})
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	if got := MasterPHPVersion(sleep.Process.Pid); got.Known() {
		t.Errorf("sleep: PHP %s", got)
	}
	if got := MasterPHPVersion(1 << 30); got.Known() {
		t.Errorf("no such process: PHP %s", got)
	}
}

// BenchmarkMasterPHPVersion measures the version read on every probe of a
// pool's master: a stat of /proc/PID/exe and the cache, and the first read
// of a binary, its ELF parsed. The baseline is the read of the master's
// /proc/PID/stat that every probe makes.
func BenchmarkMasterPHPVersion(b *testing.B) {
	fpm := fpmtest.Start(b, fpmtest.Options{})
	pid := fpm.MasterPID()
	b.Run("baseline-proc-stat", func(b *testing.B) {
		path := "/proc/" + strconv.Itoa(pid) + "/stat"
		benchCPU(b, func() { _, _ = os.ReadFile(path) })
	})
	b.Run("cached", func(b *testing.B) {
		MasterPHPVersion(pid)
		benchCPU(b, func() { MasterPHPVersion(pid) })
	})
	b.Run("first-read", func(b *testing.B) {
		benchCPU(b, func() {
			phpVersions.Lock()
			phpVersions.m = nil
			phpVersions.Unlock()
			MasterPHPVersion(pid)
		})
	})
}
