package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
)

type connKey struct{}

// connOf returns the proxy connection under an HTTP server's connection.
func connOf(nc net.Conn) *conn {
	if g, ok := nc.(*h1Gate); ok {
		nc = g.Conn
	}
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// newHTTPServer returns the HTTP server of an http listener. It serves
// connections that were admitted and whose TLS handshake is done; the
// route each was admitted to picks the upstream. Its timeouts are those of
// the listener's configuration when it starts: a reload changes routes but
// not these.
func (s *Server) newHTTPServer(l *listener, lc *listenerConfig) *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(serveRequest),
		ReadHeaderTimeout: lc.t.Handshake,
		IdleTimeout:       lc.t.Idle,
		ConnContext: func(ctx context.Context, nc net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, connOf(nc))
		},
		ConnState: func(nc net.Conn, st http.ConnState) {
			if g, ok := nc.(*h1Gate); ok {
				g.connState(st)
			}
			if st == http.StateClosed {
				if c := connOf(nc); c != nil {
					c.finish()
				}
			}
		},
		ErrorLog: zap.NewStdLog(s.log.Named("http").With(zap.String("listener", l.name))),
	}
}

func serveRequest(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c == nil || c.route == nil || c.route.proxy == nil {
		http.Error(w, "no route", http.StatusBadGateway)
		return
	}
	c.touch()
	if g := c.route.web; g != nil {
		if r = g.serve(w, r, c); r == nil {
			return
		}
	}
	if r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" {
		// The gate passes the bytes after an upgrade request unchecked;
		// unless the upstream switches protocols, nothing more is read.
		w = &closeUnlessSwitched{ResponseWriter: w}
	}
	c.route.proxy.ServeHTTP(w, r)
}

// closeUnlessSwitched closes the connection after any answer but 101
// Switching Protocols.
type closeUnlessSwitched struct {
	http.ResponseWriter
	wrote bool
}

func (w *closeUnlessSwitched) WriteHeader(code int) {
	if !w.wrote && code != http.StatusSwitchingProtocols && code >= 200 {
		w.wrote = true
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeUnlessSwitched) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *closeUnlessSwitched) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newTransport is an http listener's client towards its upstreams.
func (s *Server) newTransport(lc *listenerConfig) *http.Transport {
	d := &net.Dialer{Timeout: lc.t.Dial}
	name := lc.name
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			start := time.Now()
			c, err := d.DialContext(ctx, network, addr)
			s.m.dial.WithLabelValues(name).Observe(time.Since(start).Seconds())
			return c, err
		},
		TLSHandshakeTimeout:   lc.t.Handshake,
		ResponseHeaderTimeout: 0, // a slow upstream answer is the upstream's business
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		// Pass the client's Accept-Encoding through untouched: otherwise
		// the Transport asks for gzip when the client did not and
		// decompresses on the client's behalf.
		DisableCompression: true,
	}
}

// newReverseProxy joins the clients of route r to target.
//
// Forwarding headers: the client address the upstream gets in
// X-Forwarded-For and Forwarded is the verified one (the socket peer, or
// the source in a PROXY header from a trusted balancer), the same the
// policy checked. Headers the client sent are kept, with the address
// appended, only when the socket peer is one of the listener's trusted
// proxies (proxy_protocol.trusted); from anyone else they are dropped.
// Never is a forwarded address used for the policy check.
func (s *Server) newReverseProxy(lc *listenerConfig, r *route, target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			stripIdentity(pr.Out.Header)
			id, _ := pr.In.Context().Value(identityKey{}).(*identity)
			setIdentity(pr.Out.Header, id)
			c, _ := pr.In.Context().Value(connKey{}).(*conn)
			if c == nil {
				return
			}
			setForwarded(pr, c.client.Addr(), c.lc.trusts(c.peer.Addr()))
		},
		Transport:      lc.transport,
		BufferPool:     copyBuffers,
		ModifyResponse: filterTrailers,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			c, _ := req.Context().Value(connKey{}).(*conn)
			if c != nil && c.killed.Load() {
				return // revoked or shut down: nobody to answer
			}
			if c != nil {
				if status, ok := c.gate.answer(); ok { // the client's body was malformed
					w.Header().Set("Connection", "close")
					w.WriteHeader(status)
					return
				}
			}
			s.m.errors.WithLabelValues(lc.name, reasonUpstream).Inc()
			if s.upLog.allow() {
				s.log.Warn("upstream request failed", zap.String("listener", lc.name),
					zap.String("account", r.account), zap.String("upstream", target.String()), zap.Error(err))
			}
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: zap.NewStdLog(s.log.Named("http")),
	}
}

// filterTrailers holds an upstream's response trailers to the rule the
// fast path applies (validTrailer): ReverseProxy would pass any, framing
// fields included.
func filterTrailers(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	dropInvalidTrailers(res.Trailer)
	res.Body = &trailerFilter{ReadCloser: res.Body, res: res}
	return nil
}

// trailerFilter drops invalid trailers once the body's end filled them in.
type trailerFilter struct {
	io.ReadCloser
	res *http.Response
}

func (t *trailerFilter) Read(b []byte) (int, error) {
	n, err := t.ReadCloser.Read(b)
	if err == io.EOF {
		dropInvalidTrailers(t.res.Trailer)
	}
	return n, err
}

func dropInvalidTrailers(h http.Header) {
	for k := range h {
		if !validTrailer([]byte(k)) {
			delete(h, k)
		}
	}
}

// copyBuffers lends ReverseProxy the buffers it copies response bodies
// with. Without a pool it allocates 32 KiB per request, which was 69% of
// the bytes an http listener allocated and made the garbage collector
// the largest consumer of its CPU.
var copyBuffers httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// copyBufferSize is what ReverseProxy would allocate itself.
const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if p, ok := b.p.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		buf = buf[:copyBufferSize]
		b.p.Put(&buf)
	}
}
