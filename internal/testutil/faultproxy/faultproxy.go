// Package faultproxy is a TCP proxy for tests that injects network faults
// between an HTTP/1.1 client and server on loopback (hazards H22, H23, H29,
// H30): it cuts connections part-way through a request, loses a response
// after the server has handled the request, truncates responses, stalls
// the byte stream for a while, or delays it.
//
// Faults are chosen with a seeded math/rand source, either once per
// connection on the raw byte streams (PerConnection) or once per request
// (PerRequest), in which case the proxy follows HTTP/1.1 message framing
// (Content-Length, chunked, bodiless responses) without changing a byte.
// Only faults that actually fired are counted (a cut planned past the end of
// a short connection never fires).
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says how often a fault is chosen.
type Mode int

const (
	// PerConnection chooses one fault per accepted connection and places
	// it at a random byte offset of the raw stream.
	PerConnection Mode = iota
	// PerRequest follows HTTP/1.1 framing and chooses one fault per request
	// (applied to the request or to its response).
	PerRequest
)

func (m Mode) String() string {
	if m == PerRequest {
		return "per-request"
	}
	return "per-connection"
}

// Config sets the fault probabilities. Each unit (connection or request)
// gets at most one fault; the probabilities are those of each kind and
// must add up to at most 1.
type Config struct {
	Mode Mode
	// Seed seeds the random source that picks faults and their offsets.
	Seed uint64
	// Cut closes the connection after a random number of the bytes the
	// client sends (part of a request).
	Cut float64
	// LoseResponse lets the request reach the server in full and closes
	// the connection when the response starts, before any byte of it is
	// forwarded: the server did the work, the client never hears of it.
	LoseResponse float64
	// Truncate closes the connection part-way through a response (inside
	// its body when it has one, else inside its header).
	Truncate float64
	// Stall stops forwarding one direction for StallFor at a random point.
	Stall float64
	// Delay waits a random time up to MaxDelay before forwarding a request
	// or a response (per connection: before the first byte of each
	// direction).
	Delay float64
	// StallFor is how long a stall lasts (default 1s).
	StallFor time.Duration
	// MaxDelay bounds a delay (default 100ms).
	MaxDelay time.Duration
	// MaxOffset bounds where a PerConnection fault is placed in its
	// stream (log-uniformly in [0, MaxOffset)), and where a PerRequest fault
	// is placed in a chunked body of unknown length (default 256 KiB).
	MaxOffset int64
	// RST makes cuts reset the connection (SO_LINGER 0) instead of closing
	// it with a FIN, for about half of them when set.
	RST bool
}

func (c *Config) validate() error {
	for _, p := range []float64{c.Cut, c.LoseResponse, c.Truncate, c.Stall, c.Delay} {
		if p < 0 || p > 1 {
			return fmt.Errorf("faultproxy: probability %v outside [0, 1]", p)
		}
	}
	if sum := c.Cut + c.LoseResponse + c.Truncate + c.Stall + c.Delay; sum > 1+1e-9 {
		return fmt.Errorf("faultproxy: probabilities add up to %v > 1", sum)
	}
	if c.StallFor <= 0 {
		c.StallFor = time.Second
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 100 * time.Millisecond
	}
	if c.MaxOffset <= 0 {
		c.MaxOffset = 256 << 10
	}
	return nil
}

// Stats counts connections, requests and the faults that fired.
type Stats struct {
	Conns        int // connections accepted
	DialFailures int // connections closed because the upstream refused
	Requests     int // requests seen (PerRequest mode)
	Cuts         int // connections cut inside a request / upstream stream
	Lost         int // responses dropped before their first byte
	Truncations  int // connections cut inside a response / downstream stream
	Stalls       int
	Delays       int
}

// Injected is the number of faults that fired.
func (s Stats) Injected() int { return s.Cuts + s.Lost + s.Truncations + s.Stalls + s.Delays }

func (s Stats) String() string {
	return fmt.Sprintf("%d conns, %d requests, %d cuts, %d lost responses, %d truncations, %d stalls, %d delays",
		s.Conns, s.Requests, s.Cuts, s.Lost, s.Truncations, s.Stalls, s.Delays)
}

// kind is the fault chosen for a unit.
type kind int

const (
	kindNone kind = iota
	kindCut
	kindLose
	kindTruncate
	kindStall
	kindDelay
)

// plan is the fault chosen for one unit, with its random parameters drawn
// up front so that the pumps never touch the random source.
type plan struct {
	kind kind
	// up: the fault applies to the client→server side (stall, delay).
	up bool
	// frac places the fault inside its message or stream: offset =
	// frac × length.
	frac float64
	// delay is the delay for kindDelay.
	delay time.Duration
	// rst: a cut resets the connection.
	rst bool
	// method of the request (PerRequest), to frame its response.
	method string
}

// Proxy forwards connections from a loopback listener to an upstream
// address, injecting faults.
type Proxy struct {
	cfg Config
	ln  net.Listener
	// active is false while faults are switched off.
	active atomic.Bool
	// upstream is the address connections are forwarded to (string).
	upstream atomic.Value

	// mu guards rng, stats, sessions and closed.
	mu       sync.Mutex
	rng      *rand.Rand
	stats    Stats
	sessions map[*session]struct{}
	closed   bool

	wg sync.WaitGroup // the accept loop and every session's goroutines
}

// New starts a proxy on 127.0.0.1 (random port) forwarding to upstream
// (host:port).
func New(upstream string, cfg Config) (*Proxy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{cfg: cfg, ln: ln, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)), sessions: map[*session]struct{}{}}
	p.active.Store(true)
	p.upstream.Store(upstream)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetUpstream changes where new connections are forwarded (for a server
// restarted on another port). Open connections keep their upstream.
func (p *Proxy) SetUpstream(addr string) { p.upstream.Store(addr) }

// SetActive switches fault injection on or off for units that start from
// now on.
func (p *Proxy) SetActive(on bool) { p.active.Store(on) }

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops the listener, closes every open connection and waits for
// the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, s := range sessions {
		s.close(false)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("faultproxy: close: %w", err)
	}
	return nil
}

func (p *Proxy) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// roll draws the plan for a new unit.
func (p *Proxy) roll(method string) plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := plan{method: method}
	if !p.active.Load() {
		return pl
	}
	u := p.rng.Float64()
	c := p.cfg
	switch {
	case u < c.Cut:
		pl.kind = kindCut
	case u < c.Cut+c.LoseResponse:
		pl.kind = kindLose
	case u < c.Cut+c.LoseResponse+c.Truncate:
		pl.kind = kindTruncate
	case u < c.Cut+c.LoseResponse+c.Truncate+c.Stall:
		pl.kind = kindStall
	case u < c.Cut+c.LoseResponse+c.Truncate+c.Stall+c.Delay:
		pl.kind = kindDelay
	}
	pl.up = p.rng.IntN(2) == 0
	pl.frac = p.rng.Float64()
	pl.delay = time.Duration(p.rng.Int64N(int64(c.MaxDelay) + 1))
	pl.rst = c.RST && p.rng.IntN(2) == 0
	return pl
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		s := &session{p: p, client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.sessions[s] = struct{}{}
		p.stats.Conns++
		p.wg.Add(1)
		p.mu.Unlock()
		go s.run()
	}
}

// session is one proxied connection.
type session struct {
	p      *Proxy
	client net.Conn
	done   chan struct{} // closed when the session is closed
	// cmu guards server and closed.
	cmu    sync.Mutex
	server net.Conn // nil until dialled
	closed bool
	// qmu guards queue.
	qmu   sync.Mutex
	queue []plan // plans of requests whose responses have not started
}

// close closes both connections; rst resets them instead of a clean close.
func (s *session) close(rst bool) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	for _, c := range []net.Conn{s.client, s.server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && rst {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// sleep waits d or until the session closes; false means it closed.
func (s *session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

func (s *session) run() {
	defer s.p.wg.Done()
	defer func() {
		s.p.mu.Lock()
		delete(s.p.sessions, s)
		s.p.mu.Unlock()
	}()
	up := s.p.upstream.Load().(string)
	d := net.Dialer{Timeout: 10 * time.Second}
	srv, err := d.Dial("tcp", up)
	if err != nil {
		s.p.count(func(st *Stats) { st.DialFailures++ })
		s.close(false)
		return
	}
	s.cmu.Lock()
	closed := s.closed
	if !closed {
		s.server = srv
	}
	s.cmu.Unlock()
	if closed { // the proxy closed while dialling
		_ = srv.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	if s.p.cfg.Mode == PerRequest {
		go func() { defer wg.Done(); s.finish(s.client, s.server, s.pumpRequests()) }()
		go func() { defer wg.Done(); s.finish(s.server, s.client, s.pumpResponses()) }()
	} else {
		pl := s.p.roll("")
		go func() { defer wg.Done(); s.finish(s.client, s.server, s.pumpRaw(pl, true)) }()
		go func() { defer wg.Done(); s.finish(s.server, s.client, s.pumpRaw(pl, false)) }()
	}
	wg.Wait()
	s.close(false)
}

// finish ends one direction: a clean end of the source is passed on as a
// half-close, anything else closes the session.
func (s *session) finish(src, dst net.Conn, err error) {
	var cut *cutError
	switch {
	case errors.As(err, &cut):
		s.close(cut.rst)
	case err == nil:
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		if tc, ok := src.(*net.TCPConn); ok {
			_ = tc.CloseRead()
		}
	default:
		s.close(false)
	}
}

// cutError ends a pump because a fault cut the connection.
type cutError struct{ rst bool }

func (e *cutError) Error() string { return "faultproxy: connection cut" }

// faultWriter forwards one message (or stream) to w and fires the fault
// placed in it: a cut or a stall at a byte offset.
type faultWriter struct {
	s       *session
	w       io.Writer
	n       int64 // bytes written so far
	cutAt   int64 // -1: none
	stallAt int64 // -1: none
	rst     bool
	onCut   func()
}

func newFaultWriter(s *session, w io.Writer) *faultWriter {
	return &faultWriter{s: s, w: w, cutAt: -1, stallAt: -1}
}

func (fw *faultWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if fw.stallAt >= 0 && fw.n >= fw.stallAt {
			fw.stallAt = -1
			fw.s.p.count(func(st *Stats) { st.Stalls++ })
			if !fw.s.sleep(fw.s.p.cfg.StallFor) {
				return written, net.ErrClosed
			}
		}
		if fw.cutAt >= 0 && fw.n >= fw.cutAt {
			fw.cutAt = -1
			if fw.onCut != nil {
				fw.onCut()
			}
			return written, &cutError{rst: fw.rst}
		}
		chunk := p
		for _, at := range []int64{fw.cutAt, fw.stallAt} {
			if at > fw.n && int64(len(chunk)) > at-fw.n {
				chunk = chunk[:at-fw.n]
			}
		}
		k, err := fw.w.Write(chunk)
		written += k
		fw.n += int64(k)
		p = p[k:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// offset places a fault at fraction frac of a length.
func offset(frac float64, length int64) int64 {
	if length <= 0 {
		return 0
	}
	o := int64(frac * float64(length))
	if o >= length {
		o = length - 1
	}
	return o
}

// logOffset places a fault at fraction frac of [0, max) on a logarithmic
// scale, so that short connections (a few hundred bytes of metadata
// requests) are hit as often as long uploads.
func logOffset(frac float64, limit int64) int64 {
	if limit <= 1 {
		return 0
	}
	o := int64(math.Pow(float64(limit), frac)) - 1
	return min(max(o, 0), limit-1)
}

// pumpRaw forwards one direction of a PerConnection session.
func (s *session) pumpRaw(pl plan, up bool) error {
	src, dst := s.server, s.client
	if up {
		src, dst = s.client, s.server
	}
	fw := newFaultWriter(s, dst)
	fw.rst = pl.rst
	limit := s.p.cfg.MaxOffset
	switch {
	case pl.kind == kindCut && up:
		fw.cutAt = logOffset(pl.frac, limit)
		fw.onCut = func() { s.p.count(func(st *Stats) { st.Cuts++ }) }
	case pl.kind == kindLose && !up:
		fw.cutAt = 0
		fw.onCut = func() { s.p.count(func(st *Stats) { st.Lost++ }) }
	case pl.kind == kindTruncate && !up:
		fw.cutAt = 1 + logOffset(pl.frac, limit)
		fw.onCut = func() { s.p.count(func(st *Stats) { st.Truncations++ }) }
	case pl.kind == kindStall && pl.up == up:
		fw.stallAt = logOffset(pl.frac, limit)
	}
	var w io.Writer = fw
	if pl.kind == kindDelay && pl.up == up {
		w = &delayOnce{s: s, w: fw, d: pl.delay}
	}
	_, err := io.Copy(w, src)
	return err
}

// delayOnce delays the first write.
type delayOnce struct {
	s    *session
	w    io.Writer
	d    time.Duration
	done bool
}

func (d *delayOnce) Write(p []byte) (int, error) {
	if !d.done {
		d.done = true
		d.s.p.count(func(st *Stats) { st.Delays++ })
		if !d.s.sleep(d.d) {
			return 0, net.ErrClosed
		}
	}
	return d.w.Write(p)
}

// push queues the plan of a request for its response.
func (s *session) push(pl plan) {
	s.qmu.Lock()
	s.queue = append(s.queue, pl)
	s.qmu.Unlock()
}

// pop takes the plan of the oldest request without a response; a response
// nobody asked for gets no fault.
func (s *session) pop() plan {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) == 0 {
		return plan{}
	}
	pl := s.queue[0]
	s.queue = s.queue[1:]
	return pl
}

// pumpRequests forwards the client's requests one by one, choosing a plan
// for each.
func (s *session) pumpRequests() error {
	return copyRequests(s.client, s.server, func(method string, hdrLen, bodyLen int64) io.Writer {
		pl := s.p.roll(method)
		s.p.count(func(st *Stats) { st.Requests++ })
		s.push(pl)
		fw := newFaultWriter(s, s.server)
		fw.rst = pl.rst
		total := hdrLen + bodyLen
		if bodyLen < 0 {
			total = hdrLen + s.p.cfg.MaxOffset
		}
		switch {
		case pl.kind == kindCut:
			fw.cutAt = offset(pl.frac, total)
			fw.onCut = func() { s.p.count(func(st *Stats) { st.Cuts++ }) }
		case pl.kind == kindStall && pl.up:
			fw.stallAt = offset(pl.frac, total)
		case pl.kind == kindDelay && pl.up:
			return &delayOnce{s: s, w: fw, d: pl.delay}
		}
		return fw
	})
}

// pumpResponses forwards the server's responses, applying the plan of the
// request each answers.
func (s *session) pumpResponses() error {
	return copyResponses(s.server, s.client, s.pop, func(pl plan, hdrLen, bodyLen int64) io.Writer {
		fw := newFaultWriter(s, s.client)
		fw.rst = pl.rst
		switch {
		case pl.kind == kindLose:
			fw.cutAt = 0
			fw.onCut = func() { s.p.count(func(st *Stats) { st.Lost++ }) }
		case pl.kind == kindTruncate:
			switch {
			case bodyLen > 0:
				fw.cutAt = hdrLen + offset(pl.frac, bodyLen)
			case bodyLen < 0: // chunked or until close: length unknown
				fw.cutAt = hdrLen + offset(pl.frac, s.p.cfg.MaxOffset)
			default:
				fw.cutAt = 1 + offset(pl.frac, hdrLen-1)
			}
			fw.onCut = func() { s.p.count(func(st *Stats) { st.Truncations++ }) }
		case pl.kind == kindStall && !pl.up:
			total := hdrLen + bodyLen
			if bodyLen < 0 {
				total = hdrLen + s.p.cfg.MaxOffset
			}
			fw.stallAt = offset(pl.frac, total)
		case pl.kind == kindDelay && !pl.up:
			return &delayOnce{s: s, w: fw, d: pl.delay}
		}
		return fw
	})
}
