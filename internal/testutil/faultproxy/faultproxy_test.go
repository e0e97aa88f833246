package faultproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testServer serves:
//
//	POST /upload     reads the body and answers its SHA-256 (counts complete bodies)
//	GET  /blob?n=N   N deterministic bytes with a Content-Length
//	GET  /chunked?n=N N bytes, chunked
//	HEAD /blob?n=N   the header only
//	DELETE /x        204
type testServer struct {
	*httptest.Server
	complete atomic.Int64 // upload bodies read in full
	handled  atomic.Int64 // requests whose handler ran to the end
}

func blob(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newTestServer(t *testing.T) *testServer {
	ts := &testServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer ts.handled.Add(1)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		switch {
		case r.Method == http.MethodPost:
			h := sha256.New()
			k, err := io.Copy(h, r.Body)
			if err != nil || k != r.ContentLength {
				http.Error(w, "short body", http.StatusBadRequest)
				return
			}
			ts.complete.Add(1)
			fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/chunked":
			fl := w.(http.Flusher)
			b := blob(n)
			for len(b) > 0 {
				k := min(len(b), 1000)
				w.Write(b[:k])
				fl.Flush()
				b = b[k:]
			}
		default:
			w.Header().Set("Content-Length", strconv.Itoa(n))
			if r.Method != http.MethodHead {
				w.Write(blob(n))
			}
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func newProxy(t *testing.T, upstream string, cfg Config) *Proxy {
	p, err := New(upstream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func client(keepAlive bool) *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}, Timeout: time.Minute}
}

// exchange runs one request of kind k and checks the answer; it returns
// an error if the request failed or the answer is wrong.
func exchange(c *http.Client, base string, k, n int) error {
	switch k % 5 {
	case 0:
		body := blob(n)
		resp, err := c.Post(base+"/upload", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		if resp.StatusCode != 200 || string(got) != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("upload: status %d, %q", resp.StatusCode, got)
		}
	case 1, 2:
		path := "/blob"
		if k%5 == 2 {
			path = "/chunked"
		}
		resp, err := c.Get(fmt.Sprintf("%s%s?n=%d", base, path, n))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, blob(n)) {
			return fmt.Errorf("%s: got %d bytes, want %d (or different content)", path, len(got), n)
		}
	case 3:
		resp, err := c.Head(fmt.Sprintf("%s/blob?n=%d", base, n))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.ContentLength != int64(n) {
			return fmt.Errorf("head: length %d", resp.ContentLength)
		}
	case 4:
		req, _ := http.NewRequest(http.MethodDelete, base+"/x", nil)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("delete: %d", resp.StatusCode)
		}
	}
	return nil
}

func TestTransparent(t *testing.T) {
	ts := newTestServer(t)
	for _, mode := range []Mode{PerConnection, PerRequest} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: mode, Seed: 1})
			c := client(true)
			var wg sync.WaitGroup
			const workers, each = 4, 25
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						if err := exchange(c, "http://"+p.Addr(), g+i, (g*each+i)*997); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			st := p.Stats()
			if st.Injected() != 0 {
				t.Errorf("faults injected without being configured: %v", st)
			}
			if mode == PerRequest && st.Requests != workers*each {
				t.Errorf("counted %d requests, want %d", st.Requests, workers*each)
			}
			if st.Conns == 0 || st.Conns > workers*each {
				t.Errorf("connections: %v", st)
			}
		})
	}
}

// TestCut: a request cut part-way never reaches the handler in full, and
// the client sees an error.
func TestCut(t *testing.T) {
	ts := newTestServer(t)
	for _, mode := range []Mode{PerConnection, PerRequest} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: mode, Seed: 2, Cut: 1, MaxOffset: 64 << 10, RST: true})
			before := ts.complete.Load()
			c := client(true)
			for i := 0; i < 20; i++ {
				// bodies longer than MaxOffset: every per-connection cut fires
				if err := exchange(c, "http://"+p.Addr(), 0, 100<<10+i); err == nil {
					t.Fatalf("request %d succeeded through a cut", i)
				}
			}
			if n := ts.complete.Load() - before; n != 0 {
				t.Errorf("%d cut uploads reached the server in full", n)
			}
			if st := p.Stats(); st.Cuts < 20 {
				t.Errorf("stats: %v", st)
			}
		})
	}
}

// TestLoseResponse: the server handles the request, the client gets no
// answer.
func TestLoseResponse(t *testing.T) {
	ts := newTestServer(t)
	for _, mode := range []Mode{PerConnection, PerRequest} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: mode, Seed: 3, LoseResponse: 1})
			before := ts.complete.Load()
			c := client(true)
			for i := 0; i < 10; i++ {
				if err := exchange(c, "http://"+p.Addr(), 0, 5000+i); err == nil {
					t.Fatal("request succeeded although its response was dropped")
				}
			}
			if n := ts.complete.Load() - before; n < 10 {
				t.Errorf("only %d of 10 uploads reached the server", n)
			}
			if st := p.Stats(); st.Lost < 10 {
				t.Errorf("stats: %v", st)
			}
		})
	}
}

// TestTruncate: a truncated response is never read as complete.
func TestTruncate(t *testing.T) {
	ts := newTestServer(t)
	for _, mode := range []Mode{PerConnection, PerRequest} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: mode, Seed: 4, Truncate: 1, MaxOffset: 32 << 10})
			c := client(true)
			for i := 0; i < 30; i++ {
				k := 1 + i%2 // Content-Length and chunked downloads
				if err := exchange(c, "http://"+p.Addr(), k, 40<<10+i); err == nil {
					t.Fatalf("truncated download %d read as complete", i)
				}
			}
			if st := p.Stats(); st.Truncations < 30 {
				t.Errorf("stats: %v", st)
			}
			// bodiless answers are cut inside their header
			for i := 0; i < 5; i++ {
				if err := exchange(c, "http://"+p.Addr(), 3, 10); err == nil && mode == PerRequest {
					t.Fatal("truncated HEAD answer read as complete")
				}
			}
		})
	}
}

// TestStallAndDelay: stalls and delays slow exchanges down but do not
// change a byte.
func TestStallAndDelay(t *testing.T) {
	ts := newTestServer(t)
	for _, mode := range []Mode{PerConnection, PerRequest} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: mode, Seed: 5, Stall: 0.5, Delay: 0.5,
				StallFor: 20 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxOffset: 4 << 10})
			c := client(mode == PerRequest)
			for i := 0; i < 40; i++ {
				if err := exchange(c, "http://"+p.Addr(), i, 10<<10+i); err != nil {
					t.Fatal(err)
				}
			}
			st := p.Stats()
			if st.Stalls == 0 || st.Delays == 0 || st.Cuts+st.Lost+st.Truncations != 0 {
				t.Errorf("stats: %v", st)
			}
		})
	}
}

// TestMixed: with every kind of fault, each exchange either fails or is
// correct.
func TestMixed(t *testing.T) {
	ts := newTestServer(t)
	p := newProxy(t, ts.Listener.Addr().String(), Config{Mode: PerRequest, Seed: 6, Cut: 0.1, LoseResponse: 0.1, Truncate: 0.1,
		Stall: 0.1, Delay: 0.1, StallFor: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond, RST: true})
	c := client(true)
	ok, failed := 0, 0
	for i := 0; i < 100; i++ {
		if exchange(c, "http://"+p.Addr(), i, 20<<10+i) == nil {
			ok++
		} else {
			failed++
		}
	}
	st := p.Stats()
	t.Logf("%d ok, %d failed; %v", ok, failed, st)
	if ok == 0 || failed == 0 || st.Injected() == 0 {
		t.Errorf("expected a mix of outcomes: %d ok, %d failed, %v", ok, failed, st)
	}
}

func TestUpstreamDownAndSetUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead, Config{Mode: PerRequest})
	c := client(false)
	if err := exchange(c, "http://"+p.Addr(), 1, 10); err == nil {
		t.Fatal("request succeeded with the upstream down")
	}
	if st := p.Stats(); st.DialFailures == 0 {
		t.Errorf("stats: %v", st)
	}
	ts := newTestServer(t)
	p.SetUpstream(ts.Listener.Addr().String())
	if err := exchange(c, "http://"+p.Addr(), 1, 10); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWithOpenConnections: Close ends stalled sessions at once.
func TestCloseWithOpenConnections(t *testing.T) {
	ts := newTestServer(t)
	p, err := New(ts.Listener.Addr().String(), Config{Mode: PerConnection, Stall: 1, StallFor: time.Hour, MaxOffset: 1})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- exchange(client(false), "http://"+p.Addr(), 1, 100) }()
	for p.Stats().Stalls == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("stalled exchange succeeded after Close")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{Cut: -0.1}, {Cut: 0.6, Truncate: 0.6}, {Delay: 2}} {
		if _, err := New("127.0.0.1:1", cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// framedCopy runs the framers without faults; the output must equal the
// input.
func framedCopy(in []byte, responses bool) ([]byte, error) {
	var out bytes.Buffer
	start := func(string, int64, int64) io.Writer { return &out }
	if !responses {
		err := copyRequests(bytes.NewReader(in), &out, start)
		return out.Bytes(), err
	}
	i := 0
	pop := func() plan {
		i++
		if i%3 == 0 {
			return plan{method: "HEAD"}
		}
		return plan{method: "GET"}
	}
	err := copyResponses(bytes.NewReader(in), &out, pop, func(plan, int64, int64) io.Writer { return &out })
	return out.Bytes(), err
}

func TestFramingTransparent(t *testing.T) {
	reqs := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n" +
		"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n" +
		"garbage that is not http\r\n\r\nmore"
	resps := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + // answers a HEAD
		"HTTP/1.1 204 No Content\r\n\r\n" +
		"HTTP/1.0 200 OK\r\n\r\nuntil close"
	for _, c := range []struct {
		in   string
		resp bool
	}{{reqs, false}, {resps, true}} {
		out, err := framedCopy([]byte(c.in), c.resp)
		if err != nil {
			t.Errorf("copy: %v", err)
		}
		if string(out) != c.in {
			t.Errorf("output differs:\n%q\n%q", out, c.in)
		}
	}
	// the framer sees each request
	var methods []string
	copyRequests(strings.NewReader(reqs), io.Discard, func(m string, h, b int64) io.Writer {
		methods = append(methods, fmt.Sprintf("%s:%d", m, b))
		return io.Discard
	})
	if got := strings.Join(methods, " "); got != "POST:5 GET:0 PUT:-1" {
		t.Errorf("requests framed as %q", got)
	}
}

func TestReadHeaderLong(t *testing.T) {
	long := "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 100<<10) + "\r\n\r\n"
	raw, err := readHeader(bufio.NewReaderSize(strings.NewReader(long), 16))
	if err != nil || string(raw) != long {
		t.Fatalf("long header: %v", err)
	}
}

func FuzzFraming(f *testing.F) {
	f.Add([]byte("POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n"), false)
	f.Add([]byte("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), true)
	f.Add([]byte("HTTP/1.1 101 Switching\r\n\r\nraw"), true)
	f.Add([]byte("\r\n\r\nGET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, in []byte, responses bool) {
		out, _ := framedCopy(in, responses)
		if !bytes.Equal(out, in) {
			t.Fatalf("framer changed the stream:\n in %q\nout %q", in, out)
		}
	})
}

func TestLogOffset(t *testing.T) {
	small := 0
	for i := 0; i < 1000; i++ {
		o := logOffset(float64(i)/1000, 1<<20)
		if o < 0 || o >= 1<<20 {
			t.Fatalf("logOffset(%v) = %d", float64(i)/1000, o)
		}
		if o < 1024 {
			small++
		}
	}
	// log-uniform: half of the offsets fall below sqrt(1 MiB) = 1 KiB
	if small < 400 || small > 600 {
		t.Errorf("%d of 1000 offsets below 1 KiB", small)
	}
	if logOffset(0.5, 1) != 0 || logOffset(0.999999, 10) > 9 {
		t.Error("edge cases")
	}
}
