package watch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/supervisor"
)

// watcherFor builds a watcher of the test master's pools.
func watcherFor(t *testing.T, fpm *fpmtest.FPM, cfg Config) *Watcher {
	t.Helper()
	var targets []supervisor.Target
	for _, tg := range fpmTargets(t, fpm) {
		targets = append(targets, tg)
	}
	pr := &supervisor.Prober{Client: fastcgi.Client{Timeout: time.Second}, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 30 * time.Second}}
	return New(pr, targets, cfg, event.NewLog(nil))
}

// run runs the watcher until the test ends.
func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func eventsOf(w *Watcher, kind event.Kind) []event.Event {
	var out []event.Event
	for _, e := range w.Events().Recent(0) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// forgeStatus serves a status page over FastCGI that names pid as a worker
// running one request for 100 s. This is a hostile peer, not php-fpm.
func forgeStatus(t *testing.T, pid int) fastcgi.Address {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "forged.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf(`{"pool":"www","process manager":"static","start time":1,"start since":100,"accepted conn":1,"listen queue":0,"max listen queue":0,"listen queue len":0,"idle processes":0,"active processes":1,"total processes":1,"max active processes":1,"max children reached":0,"slow requests":0, "processes":[{"pid":%d,"state":"Running","start time":1,"start since":100,"requests":1,"request duration":100000000,"request method":"GET","request uri":"\/x.php","content length":0,"user":"-","script":"\/x.php","last request cpu":0.00,"last request memory":0}]}`, pid)
	go func() {
		_ = fcgi.Serve(l, http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			fmt.Fprint(rw, page)
		}))
	}()
	t.Cleanup(func() { l.Close() })
	return fastcgi.Address{Network: "unix", Addr: sock}
}

// stopAllWorkers SIGSTOPs every worker: the heartbeat fails, yet php-fpm
// calls them idle, so no hung worker is left to kill.
func stopAllWorkers(t *testing.T, fpm *fpmtest.FPM) {
	t.Helper()
	for _, pid := range fpm.WorkerPIDs("www") {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	}
}

// fpmTargets reads the test master's own config, as --fpm-config would.
func fpmTargets(t testing.TB, fpm *fpmtest.FPM) map[string]supervisor.Target {
	t.Helper()
	ts, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]supervisor.Target{}
	for _, tg := range ts {
		out[tg.Name] = tg
	}
	return out
}
