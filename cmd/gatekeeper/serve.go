package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/gatekeeper-dev/gatekeeper/admin"
	"github.com/gatekeeper-dev/gatekeeper/certs"
	"github.com/gatekeeper-dev/gatekeeper/config"
	"github.com/gatekeeper-dev/gatekeeper/ops"
	"github.com/gatekeeper-dev/gatekeeper/password"
	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/proxy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "configuration `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"serve: -config is required"}
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(c.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	redisstore.LogTo(log)
	return serve(ctx, c, *path, log)
}

// serve wires the parts together and runs them until ctx ends. path is
// the configuration file, re-read on SIGHUP.
func serve(ctx context.Context, c *config.Config, path string, log *zap.Logger) error {
	log.Info("starting gatekeeper", zap.String("version", buildVersion()), zap.String("store", redactURL(c.Store.URL)))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	st, err := openStore(ctx, c, log, reg)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()

	engine, err := policy.NewEngine(policy.Options{
		Source:        st,
		Usage:         st,
		SnapshotPath:  c.Store.Snapshot,
		Logger:        log.Named("policy"),
		Registerer:    reg,
		AccountSeries: c.Ops.AccountSeries,
	})
	if err != nil {
		return err
	}
	if err := engine.Start(ctx); err != nil {
		log.Error("policy start", zap.Error(err))
	}
	if c.Bootstrap != nil {
		err := bootstrap(ctx, st, c.Bootstrap, log)
		switch {
		case errors.Is(err, policy.ErrNoData):
			// The store refuses to start a new generation (policy.Lineage).
			log.Warn("not creating the bootstrap account: the store lost its data; re-seed it (gatekeeper store reseed)",
				zap.String("account", c.Bootstrap.Account), zap.Error(err))
		case err != nil:
			log.Error("bootstrap account", zap.Error(err))
		}
	}

	var tlsConf *tls.Config
	var certMgr *certs.Manager
	challengePending := func() bool { return false }
	if c.TLS.ACME != nil || len(c.TLS.Certificates) > 0 || c.TLS.SelfSigned {
		certMgr, err = certs.New(ctx, certs.Options{TLS: certsTLS(c.TLS), ALPNAddr: alpnAddr(c.Listeners),
			Logger: log.Named("certs"), Registerer: reg})
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		tlsConf = certMgr.TLSConfig()
		challengePending = certMgr.ChallengePending
	}
	signer, err := newAssertionSigner(ctx, c, st, log.Named("assertion"))
	if err != nil {
		if certMgr != nil {
			certMgr.Close()
		}
		return err
	}
	webOpts, err := webOptions(c, st, signer, log.Named("proxy"))
	if err != nil {
		if certMgr != nil {
			certMgr.Close()
		}
		return err
	}
	px, err := proxy.New(ctx, proxy.Options{Listeners: proxyListeners(c.Listeners), Engine: engine, TLS: tlsConf,
		ChallengePending: challengePending, Logger: log.Named("proxy"), Registerer: reg, Web: webOpts})
	if err != nil {
		if certMgr != nil {
			certMgr.Close()
		}
		return err
	}

	care, err := newStoreCare(c, st, engine.GenerationMismatch, reg, log)
	if err != nil {
		return err
	}
	disp, err := newDispatcher(c, st, log.Named("notify"))
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error { return disp.Run(gctx) })
	if signer != nil {
		g.Go(func() error { return signer.Run(gctx) })
	}
	for _, run := range care.runs {
		g.Go(func() error { return run(gctx) })
	}
	if c.Admin.Addr != "" {
		srv, err := newAdminServer(c, st, tlsConf, px.LiveConnections, reg, log.Named("admin"))
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		g.Go(func() error { return serveAdmin(gctx, c.Admin.Addr, srv) })
		// Every instance watches the last days; the store's transactions
		// make each run once in the fleet.
		g.Go(func() error { return srv.RunLastDays(gctx) })
	}
	g.Go(func() error { return px.Run(gctx) })
	if certMgr != nil {
		// After px.New: the listeners that answer TLS-ALPN-01 are bound.
		g.Go(func() error { return certMgr.Run(gctx) })
	}
	g.Go(func() error { reloadOnHangup(gctx, path, certMgr, px, log); return nil })
	if c.Ops.Addr != "" {
		checks := map[string]ops.Check{"policy": engine.Ready}
		// A store that can lose part of itself (a Cluster node) says so.
		if fh, ok := st.(interface{ FeedHealth() (bool, string) }); ok {
			checks["store_feed"] = fh.FeedHealth
		}
		maps.Copy(checks, care.checks)
		h := ops.Handler(reg, checks)
		if c.Ops.Pprof {
			h = ops.Pprof(h)
			log.Warn("serving Go's runtime profiles at /debug/pprof/ on the ops listener (ops.pprof)", zap.String("addr", c.Ops.Addr))
		}
		g.Go(func() error { return serveHTTP(gctx, "ops", c.Ops.Addr, h, log) })
	}
	err = g.Wait()
	log.Info("gatekeeper stopped")
	return err
}

// alpnAddr is the listener that answers ACME TLS-ALPN-01 challenges: the
// first tls or http listener.
func alpnAddr(ls []config.Listener) string {
	for _, l := range ls {
		if l.Mode == config.ModeTLS || l.Mode == config.ModeHTTP {
			return l.Addr
		}
	}
	return ""
}

// reloadOnHangup re-reads the configuration file on SIGHUP and applies
// what can change while running: the certificate files and the proxy
// listeners (routes, trusted proxies, timeouts, limits, addresses).
// Anything else needs a restart. A file that does not load changes
// nothing.
func reloadOnHangup(ctx context.Context, path string, cm *certs.Manager, px *proxy.Server, log *zap.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("SIGHUP: reloading certificates and listeners", zap.String("config", path))
		c, err := config.Load(path)
		if err != nil {
			log.Error("reload: configuration not applied", zap.Error(err))
			continue
		}
		if cm != nil {
			if err := cm.Reload(ctx, certsTLS(c.TLS)); err != nil {
				log.Error("reload: certificates kept as they were", zap.Error(err))
			}
		}
		if err := px.Reload(ctx, proxyListeners(c.Listeners)); err != nil {
			log.Error("reload: listeners", zap.Error(err))
			continue
		}
		log.Info("reload done")
	}
}

// serveHTTP serves plain HTTP until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, name, addr string, h http.Handler, log *zap.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: zap.NewStdLog(log.Named(name))}
	log.Info("listening", zap.String("listener", name), zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s listener: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// bootstrap creates the configured account on a store with no accounts and
// writes its generated master password to a 0600 file. Only the file's
// path is logged.
func bootstrap(ctx context.Context, st policy.Store, b *config.Bootstrap, log *zap.Logger) error {
	accts, err := st.Accounts(ctx)
	if err != nil {
		return fmt.Errorf("list accounts: %w", err)
	}
	if len(accts) > 0 {
		return nil
	}
	pw := password.Generate()
	if err := os.MkdirAll(filepath.Dir(b.PasswordFile), 0o700); err != nil {
		return fmt.Errorf("create directory for %s: %w", b.PasswordFile, err)
	}
	// Write the password first, beside the file it goes to: an account
	// whose password nobody knows is worse than a file with a password for
	// an account not yet created. It replaces the file only once the
	// account exists, so that a refused creation (a store that lost its
	// data) leaves the password of the account it had in place.
	pending := b.PasswordFile + ".new"
	if err := os.WriteFile(pending, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", pending, err)
	}
	_, err = admin.CreateAccount(ctx, st, admin.NewAccount{ID: b.Account, Name: b.Account, Password: pw,
		Actor: "bootstrap", Role: policy.RoleOperator}, password.Default, time.Now())
	if err != nil {
		os.Remove(pending)
		return err
	}
	if err := os.Rename(pending, b.PasswordFile); err != nil {
		return fmt.Errorf("the bootstrap account %s was created, but its password is in %s: %w", b.Account, pending, err)
	}
	log.Info("created bootstrap account; its master password is in the file",
		zap.String("account", b.Account), zap.String("password_file", b.PasswordFile))
	return nil
}

func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)), nil
}

// redactURL hides a password in a store URL, for logs and messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}
