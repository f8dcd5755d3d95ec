package web

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/fastcgi"
	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
	"github.com/fpmguard/fpmguard/lag"
	"github.com/fpmguard/fpmguard/recent"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// chromiumPath is Debian's chromium (.ci/install-deps installs it), or
// $CHROMIUM.
func chromiumPath(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(bin); err != nil {
		why := fmt.Sprintf("no Chromium at %s (run make deps, or set CHROMIUM): %v", bin, err)
		fpmtest.RequireIntegration(t, why)
	}
	return bin
}

// browser is a headless Chromium of the test's own, with an empty
// profile, stopped when the test ends. It records what every tab writes
// to its console.
type browser struct {
	ctx context.Context // the browser's first tab

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// startBrowser starts Chromium. The flags keep it off the network but
// for the test's own server: with background networking on, its calls
// out are refused by a closed network, and it logs errors for them.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		// A page in a hidden tab keeps its timers: the page pauses its
		// refresh only when the document says it is hidden.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	b.listen(ctx)
	// The first Run starts the browser and lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return b
}

// listen records the console of the tab of ctx.
func (b *browser) listen(ctx context.Context) {
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
}

// tab opens another tab, with a console recorded too.
func (b *browser) tab(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	b.listen(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

// errors are the console's errors, exceptions and warnings so far: a CSP
// violation, a missing file, a script error.
func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		switch m.Type {
		case chromedp.ConsoleLog, chromedp.ConsoleType("info"), chromedp.ConsoleType("debug"):
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
	}
	return out
}

// eval evaluates a script in the tab, with a deadline of its own.
func eval[T any](ctx context.Context, script string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](script))
}

// do runs actions in the tab, with a deadline: an element that never
// appears fails the test instead of holding it.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// view sets the tab's viewport and colour scheme.
func view(ctx context.Context, width, height int64, dark bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		return err
	}
	var opts []chromedp.EmulateViewportOption
	if width < 600 {
		opts = append(opts, chromedp.EmulateScale(2), chromedp.EmulateMobile)
	}
	return chromedp.Do(ctx, chromedp.EmulateViewport(width, height, opts...))
}

// shot takes a screenshot of the whole page at width, in the scheme
// asked, and writes it to path.
func shot(ctx context.Context, path string, width int64, dark bool) error {
	if err := view(ctx, width, 900, dark); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// pollJS evaluates script in the tab until done accepts its value, for up
// to d, and returns the value.
func pollJS[T any](t *testing.T, ctx context.Context, d time.Duration, script string, done func(T) bool) T {
	t.Helper()
	type result struct {
		V   T
		Err string
	}
	return fpmtest.Poll(t, d, func() (result, bool) {
		v, err := eval[T](ctx, script)
		if err != nil {
			return result{v, err.Error()}, false
		}
		return result{v, ""}, done(v)
	}).V
}

// pageState is what the browser test reads of the page: each pool's
// verdict, the requests in flight and the page's own state.
type pageState struct {
	Verdicts map[string]string `json:"verdicts"`
	Workers  []pageWorker      `json:"workers"`
	Marker   int               `json:"marker"`  // set by the test: gone after a reload
	Scripts  int               `json:"scripts"` // <script> elements in the document
	Images   int               `json:"images"`  // <img> elements in the document
	Pwned    bool              `json:"pwned"`   // a hostile script ran
	Text     string            `json:"text"`    // the page's text
	HTML     string            `json:"html"`
}

// pageWorker is a row of the requests in flight.
type pageWorker struct {
	Pool string `json:"pool"`
	PID  string `json:"pid"`
	Hung bool   `json:"hung"`
	URI  string `json:"uri"`
}

const readPage = `(() => {
	const s = {verdicts: {}, workers: [], marker: window.fpmguardTestMarker || 0,
		scripts: document.scripts.length, images: document.images.length,
		pwned: window.pwned !== undefined, text: document.body.innerText, html: document.documentElement.outerHTML};
	for (const tr of document.querySelectorAll('table.pools tbody tr')) {
		s.verdicts[tr.querySelector('th').textContent] = tr.querySelector('.badge').textContent;
	}
	for (const tr of document.querySelectorAll('table.workers tbody tr:not(.extra)')) {
		s.workers.push({pool: tr.cells[0].textContent, pid: tr.cells[1].textContent, hung: tr.classList.contains('hung'), uri: tr.cells[5].textContent});
	}
	return s;
})()`

// hostilePath is a request path that would run script, were it markup.
const hostilePath = `/sleep.php/<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`

// TestPageInBrowser opens the status page in a real Chromium, served from
// a real watcher of a real php-fpm, and watches it change by itself as
// workers hang: a pool whose every worker hangs turns UNHEALTHY with its
// hung workers listed, without a reload; a URI carrying markup shows as
// text and runs nothing; a kill from the page goes through the watcher;
// the console stays free of errors (a CSP violation, a missing file, a
// script error would show there); and the page refreshes itself with
// the script off. Screenshots are the test's artifacts (go test
// -artifacts keeps them); with -update the one in docs/ is taken again.
func TestPageInBrowser(t *testing.T) {
	b := startBrowser(t)
	slow := strings.Replace(fpmtest.SleepPHP, "1000", "600000", 1)
	fpm := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{{Name: "www", StatusListen: true}, {Name: "api", StatusListen: true}},
		Files: map[string]string{"sleep.php": slow, "report.php": slow, "export.php": slow},
	})
	targets, err := supervisor.LoadFPMConfig(fpm.Conf)
	if err != nil {
		t.Fatal(err)
	}
	client := fastcgi.Client{Timeout: 2 * time.Second}
	self := lag.New(0)
	pr := &supervisor.Prober{Client: client, Procs: supervisor.SystemProcs, Thresholds: supervisor.Thresholds{HungAfter: 2 * time.Second}, Lag: self,
		Opcache: &supervisor.OpcacheProber{Client: client, Dir: filepath.Join(fpmtest.Dir(t), "fpmguard"), Lag: self}}
	w := watch.New(pr, targets, watch.Config{Interval: time.Second}, event.NewLog(nil))
	runWatcher(t, w)
	h := WithControl(NewHTTPHandler(func() Source { return w }, NewMetricsHandler(NewCollector(w.Snapshot, true), nil), "/metrics"),
		func() watch.Control { return w }, Policy{Kill: true, KillFromLoopback: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + l.Addr().String() + "/"
	// go test -artifacts -outputdir DIR keeps them; without -artifacts
	// they go when the test ends.
	dir := t.ArtifactDir()
	t.Logf("screenshots of the status page go to %s", dir)

	// A request that hangs in pool of the test master until it ends.
	hang := func(pool, path, query, script string) {
		rctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = fastcgi.Client{Timeout: 10 * time.Minute}.Do(rctx, fastcgi.Address{Network: "unix", Addr: fpm.Pools[pool].Listen},
				fastcgi.Request{Path: path, Query: query, Script: filepath.Join(fpm.DocRoot, script)})
		})
		t.Cleanup(func() {
			stop()
			wg.Wait()
		})
	}

	tab := b.ctx
	nctx, ncancel := context.WithTimeout(tab, time.Minute)
	defer ncancel()
	resp, err := chromedp.Run(nctx, chromedp.NavigateResponse(base))
	if err != nil {
		t.Fatal(err)
	}
	if csp, _ := resp.Headers["Content-Security-Policy"].(string); csp != pageCSP {
		t.Errorf("Content-Security-Policy %q, want %q", csp, pageCSP)
	}
	if _, err := eval[chromedp.Void](tab, "window.fpmguardTestMarker = 1"); err != nil {
		t.Fatal(err)
	}
	read := func(what string, done func(pageState) bool) pageState {
		t.Helper()
		return pollJS(t, tab, 90*time.Second, readPage, func(s pageState) bool {
			if s.Marker != 1 {
				t.Fatalf("%s: the page was reloaded (the test's marker is gone): it must update itself in place", what)
			}
			return done(s)
		})
	}
	read("both pools OK", func(s pageState) bool { return s.Verdicts["www"] == "OK" && s.Verdicts["api"] == "OK" })

	// Every worker of www hangs: www turns UNHEALTHY and lists both.
	hang("www", "/report.php", "ms=600000&token=s3cret", "report.php")
	hang("www", "/export.php", "", "export.php")
	s := read("www UNHEALTHY with 2 hung workers", func(s pageState) bool {
		n := 0
		for _, w := range s.Workers {
			if w.Pool == "www" && w.Hung {
				n++
			}
		}
		return s.Verdicts["www"] == "UNHEALTHY" && n == 2
	})
	if strings.Contains(s.HTML, "s3cret") {
		t.Errorf("the query string reached the page")
	}
	if *update {
		// The picture in the docs: wait for full sparklines.
		read("16 heartbeats of api", func(s pageState) bool {
			return strings.Contains(s.HTML, fmt.Sprintf("last %d heartbeats", recent.Beats))
		})
		if err := shot(tab, filepath.Join("..", "docs", "status-page.png"), 1280, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []struct {
		name  string
		width int64
		dark  bool
	}{{"desktop-light", 1280, false}, {"desktop-dark", 1280, true}, {"phone-light", 390, false}, {"phone-dark", 390, true}} {
		if err := shot(tab, filepath.Join(dir, "hung-"+v.name+".png"), v.width, v.dark); err != nil {
			t.Fatal(err)
		}
	}
	if err := view(tab, 1280, 900, false); err != nil {
		t.Fatal(err)
	}

	// A URI carrying markup is text: it shows as written, and no element
	// and no script comes of it.
	hang("api", hostilePath, "", "sleep.php")
	s = read("the hostile request in flight", func(s pageState) bool {
		return slices.ContainsFunc(s.Workers, func(w pageWorker) bool {
			return w.Pool == "api" && w.URI == hostilePath && w.Hung
		})
	})
	if s.Scripts != 1 || s.Images != 0 || s.Pwned {
		t.Errorf("the hostile URI became markup: %d scripts (want 1, the page's own), %d images, pwned %v", s.Scripts, s.Images, s.Pwned)
	}
	if !strings.Contains(s.Text, hostilePath) {
		t.Errorf("the hostile URI is not shown as text:\n%s", s.Text)
	}
	if err := shot(tab, filepath.Join(dir, "hostile-desktop-light.png"), 1280, false); err != nil {
		t.Fatal(err)
	}
	if err := view(tab, 1280, 900, false); err != nil {
		t.Fatal(err)
	}

	// Kill the hostile request's worker from the page: a question first,
	// then the watcher's own checks, then the worker is gone.
	var pid string
	for _, w := range s.Workers {
		if w.URI == hostilePath {
			pid = w.PID
		}
	}
	do(t, tab, chromedp.Click(chromedp.Search(`//table[contains(@class, "workers")]//tr[th = "`+pid+`"]//button[contains(@class, "kill")]`)))
	question := pollJS(t, tab, 30*time.Second, `document.getElementById('kill-dialog').open ? document.getElementById('kill-question').textContent : ''`,
		func(q string) bool { return q != "" })
	if !strings.Contains(question, "Kill worker "+pid+" of pool api") || !strings.Contains(question, hostilePath) {
		t.Errorf("kill question %q", question)
	}
	do(t, tab, chromedp.Click(chromedp.CSS(`#kill-dialog button[value="kill"]`)))
	said := pollJS(t, tab, 30*time.Second, `document.getElementById('kill-status').textContent`, func(m string) bool {
		return m != "" && !strings.HasPrefix(m, "Asking")
	})
	if strings.Contains(said, "Not killed") || strings.Contains(said, "not sent") || !strings.Contains(said, pid) {
		t.Errorf("kill from the page: %q", said)
	}
	read("the killed worker gone", func(s pageState) bool {
		return !slices.ContainsFunc(s.Workers, func(w pageWorker) bool {
			return w.PID == pid
		})
	})

	// Without the script, a meta refresh loads the page again.
	nojs := b.tab(t)
	if _, err := chromedp.Call(nojs, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	var loads atomic.Int64
	events := chromedp.Events(nojs, cdppage.LoadEventFired)
	go func() {
		for _, err := range events {
			if err != nil {
				return
			}
			loads.Add(1)
		}
	}()
	do(t, nojs, chromedp.Navigate(base))
	fpmtest.Poll(t, time.Minute, func() (int64, bool) { return loads.Load(), loads.Load() >= 3 })

	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("the console has errors:\n%s", strings.Join(errs, "\n"))
	}
}
