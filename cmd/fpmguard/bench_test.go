package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// vmRSS reads a process's resident set size in bytes.
func vmRSS(b testing.TB, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkServeRSS measures the resident memory of the fpmguard binary
// while `serve` watches 10 pools of 5 workers each for ten intervals, with
// the opcache read, against a baseline of `serve` watching one pool whose
// socket does not exist: the runtime, the HTTP server and the watcher with
// nothing to read.
func BenchmarkServeRSS(b *testing.B) {
	var pools []fpmtest.Pool
	for i := range 10 {
		pools = append(pools, fpmtest.Pool{Name: fmt.Sprintf("pool%d", i), MaxChildren: 5, StatusListen: true})
	}
	fpm := fpmtest.Start(b, fpmtest.Options{Pools: pools})
	bin := buildBinary(b)
	dir := b.TempDir()
	_ = os.Chmod(dir, 0o755)

	for b.Loop() {
		addr := freePort(b)
		cmd := exec.Command(bin, "serve", "--fpm-config", fpm.Conf, "--web.listen-address", addr, "--interval", "200ms",
			"--opcache-interval", "200ms", "--opcache-dir", dir+"/oc")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		probed := 0
		var peak float64
		for probed < 10 {
			if time.Now().After(deadline) {
				b.Fatalf("serve did not report 10 healthy pools:\n%s", out.String())
			}
			time.Sleep(200 * time.Millisecond)
			_, body := httpGet("http://" + addr + "/status")
			var rep supervisor.Report
			if json.Unmarshal([]byte(body), &rep) == nil && len(rep.Pools) == 10 && rep.Worst() == supervisor.HealthOK && len(rep.Opcache) == 1 {
				probed++
			}
			peak = max(peak, vmRSS(b, cmd.Process.Pid))
		}
		b.ReportMetric(peak/(1<<20), "serve-10-pools-MiB")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()

		idleAddr := freePort(b)
		idle := exec.Command(bin, "serve", "--pool", "/nonexistent.sock", "--web.listen-address", idleAddr)
		if err := idle.Start(); err != nil {
			b.Fatal(err)
		}
		// Once it answers, it has started its watcher and HTTP server.
		deadline = time.Now().Add(10 * time.Second)
		for code, _ := httpGet("http://" + idleAddr + "/healthz"); code == 0; code, _ = httpGet("http://" + idleAddr + "/healthz") {
			if time.Now().After(deadline) {
				_ = idle.Process.Kill()
				_ = idle.Wait()
				b.Fatal("serve of one missing pool did not answer /healthz within 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.ReportMetric(vmRSS(b, idle.Process.Pid)/(1<<20), "baseline-1-dead-pool-MiB")
		_ = idle.Process.Signal(syscall.SIGTERM)
		_ = idle.Wait()
	}
}
