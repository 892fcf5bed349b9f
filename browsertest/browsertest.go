// Package browsertest starts the headless Chromium that browser tests
// share: Debian's chromium driven through chromedp, with a fresh profile,
// nothing fetched in the background, and certificate errors ignored (the
// servers under test use throwaway certificates). It is for tests only.
//
// Without a browser on PATH a test is skipped, or failed when the CI
// environment variable is set: CI must not pass by skipping.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoBrowser means no Chromium or Chrome is on PATH.
var ErrNoBrowser = errors.New("no chromium or chrome on PATH (apt-get install chromium)")

// Browser is one running Chromium.
type Browser struct {
	once   sync.Once
	err    error
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
}

// Close stops the browser and removes its profile. A test binary calls it
// from TestMain after m.Run.
func (b *Browser) Close() {
	if b.cancel != nil {
		b.cancel()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Tab opens a tab in a browser context of its own, starting the browser on
// first use; it skips the test (fails it under CI) when there is no
// browser. The tab closes when the test ends; its context carries a
// 90-second deadline.
func (b *Browser) Tab(t *testing.T) context.Context {
	t.Helper()
	b.once.Do(func() { b.err = b.start() })
	if b.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("browser tests in CI: %v", b.err)
		}
		t.Skipf("skipping the browser test: %v", b.err)
	}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab, bound to ctx
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(tcancel)
	return tctx
}

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func (b *Browser) start() error {
	path := chromiumPath()
	if path == "" {
		return ErrNoBrowser
	}
	dir, err := os.MkdirTemp("", "gk-chromium-")
	if err != nil {
		return err
	}
	b.dir = dir
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(dir),
		// Its temporary files (shared memory, with disable-dev-shm-usage)
		// go in the profile directory, which Close removes.
		chromedp.Env("TMPDIR="+dir),
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b.cancel = func() { cancelCtx(); cancelAlloc() }
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }() // starts the browser, bound to ctx
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("start %s: %w", path, err)
		}
	case <-time.After(time.Minute):
		return fmt.Errorf("start %s: timed out", path)
	}
	b.ctx = ctx
	return nil
}
