package integration_test

// Helpers of tcp_test.go: a stub server on a real loopback TCP port that can
// be stopped and started again on the same port, a listener that counts
// connections, and a TCP proxy that cuts connections at chosen byte
// offsets.

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// listenLoopback listens on addr (127.0.0.1 only). A port just freed can
// take a moment to be free for a new listener: EADDRINUSE is tried again,
// for up to 5s.
func listenLoopback(t testing.TB, addr string) net.Listener {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil {
			return lis
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // polling the kernel for the port, not waiting on the test's own goroutines
	}
}

// tcpServer serves a stubServer on a loopback TCP port. stop and start can
// be called in turn; start after stop listens on the same port again.
type tcpServer struct {
	stub *stubServer
	opts []grpc.ServerOption
	addr string // host:port, fixed by the first start

	mu     sync.Mutex
	srv    *grpc.Server
	served chan struct{}
	conns  atomic.Int64 // connections accepted, over every start
}

// start serves on the server's port (a new one the first time).
func (s *tcpServer) start(t testing.TB) {
	t.Helper()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis := listenLoopback(t, addr)
	s.addr = lis.Addr().String()
	srv := grpc.NewServer(append(slices.Clone(s.opts), grpc.InTapHandle(s.stub.tap))...)
	inferencev1.RegisterInferenceServiceServer(srv, s.stub)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(&countingListener{Listener: lis, n: &s.conns})
	}()
	s.mu.Lock()
	s.srv, s.served = srv, served
	s.mu.Unlock()
}

// stop closes the listener and every connection at once (in-flight RPCs
// fail with Unavailable) and waits for the server to be gone.
func (s *tcpServer) stop() {
	s.mu.Lock()
	srv, served := s.srv, s.served
	s.srv, s.served = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-served
	}
}

// dial returns a client connection to target with opts, closed at cleanup.
func dialTCP(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// cutProxy forwards loopback TCP connections to a backend and cuts some of
// them: for each connection it draws (from a seeded source) a number of
// bytes after which both sides are closed, counting the bytes of both
// directions; the chunk that crosses the offset is written only up to it.
type cutProxy struct {
	backend string
	lis     net.Listener
	cutProb float64 // the share of connections that are cut
	minCut  int
	maxCut  int

	mu    sync.Mutex
	rng   *rand.Rand
	conns []net.Conn
	done  bool
	wg    sync.WaitGroup
	cuts  atomic.Int64
	total atomic.Int64
}

// startCutProxy starts a proxy to backend on a new loopback port; t's
// cleanup closes it and waits for its goroutines.
func startCutProxy(t testing.TB, backend string, seed uint64, cutProb float64, minCut, maxCut int) *cutProxy {
	t.Helper()
	p := &cutProxy{
		backend: backend,
		lis:     listenLoopback(t, "127.0.0.1:0"),
		cutProb: cutProb,
		minCut:  minCut,
		maxCut:  maxCut,
		rng:     rand.New(rand.NewPCG(seed, 0xc0ffee)),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.lis.Addr().String() }

func (p *cutProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	p.done = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track remembers c so that close can close it; false if the proxy is
// closing.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.total.Add(1)
		p.mu.Lock()
		budget := -1 // no cut
		if p.rng.Float64() < p.cutProb {
			budget = p.minCut + p.rng.IntN(p.maxCut-p.minCut+1)
		}
		p.mu.Unlock()
		if !p.track(client) {
			client.Close()
			return
		}
		server, err := net.Dial("tcp", p.backend)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(server) {
			client.Close()
			server.Close()
			return
		}
		link := &proxyLink{p: p, client: client, server: server, budget: int64(budget)}
		p.wg.Add(2)
		go link.pipe(server, client)
		go link.pipe(client, server)
	}
}

// proxyLink is one proxied connection.
type proxyLink struct {
	p              *cutProxy
	client, server net.Conn
	budget         int64 // bytes before the cut; negative: never

	mu   sync.Mutex
	sent int64
	cut  bool
}

// allow returns how many of n bytes may still pass, and whether the
// connection is to be cut after them.
func (l *proxyLink) allow(n int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return 0, true
	}
	if l.budget < 0 {
		return n, false
	}
	left := l.budget - l.sent
	if int64(n) < left {
		l.sent += int64(n)
		return n, false
	}
	l.sent = l.budget
	l.cut = true
	l.p.cuts.Add(1)
	return int(left), true
}

func (l *proxyLink) pipe(dst, src net.Conn) {
	defer l.p.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			k, cut := l.allow(n)
			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil {
					err = werr
				}
			}
			if cut {
				l.client.Close()
				l.server.Close()
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				l.client.Close()
				l.server.Close()
				return
			}
			// A half close: pass it on.
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}
