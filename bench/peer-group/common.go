package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// allowRemote lets wsURL accept non-loopback targets (-allow-remote).
var allowRemote bool

// wsURL turns an http(s):// or ws(s):// base URL into the WebSocket URL of path.
func wsURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("base URL %q: want http(s):// or ws(s)://", base)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && !allowRemote {
		return "", fmt.Errorf("refusing non-loopback target %q (pass -allow-remote to override)", host)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String(), nil
}

func httpBase(base string) string {
	b := strings.TrimSuffix(base, "/")
	b = strings.Replace(b, "ws://", "http://", 1)
	return strings.Replace(b, "wss://", "https://", 1)
}

// hs256 signs a JWT with HMAC-SHA256.
func hs256(secret string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	signing := h + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	tr.Proxy = nil
	// Adding 2,000 members waits for the views to apply the add: allow a minute.
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// parallel runs f(0..n-1) with at most width at a time and returns the first error
// (the others are cancelled). With a label, it logs progress every `every` done.
func parallel(ctx context.Context, n, width int, label string, every int,
	f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errOnce    sync.Once
		first      error
	)
	width = max(1, min(width, n))
	start := time.Now()
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
				d := done.Add(1)
				if label != "" && every > 0 && (d%int64(every) == 0 || d == int64(n)) {
					logf("  %s: %d/%d (%.1fs)", label, d, n, time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if done.Load() < int64(n) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %d of %d done: %w", label, done.Load(), n, err)
		}
	}
	return nil
}

// closeAll runs every close at once and gives up waiting after limit.
func closeAll(fs []func(), limit time.Duration) {
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		logf("  closing: gave up waiting after %s", limit)
	}
}

// machine describes the host: cores, RAM and CPU model (from /proc).
func machine() string {
	mem := 0.0
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				mem = kb / 1024 / 1024
			}
		}
	}
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %.0f GiB RAM, %s", runtime.NumCPU(), mem, cpu)
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuSeconds is the CPU time (user + system) this process has used, from
// /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s).
func cpuSeconds() float64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "peer-group:", err)
	os.Exit(2)
}

// probe checks that url answers 200 within 5 s; hint says how to start the server.
func probe(ctx context.Context, url, hint string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s does not answer (%v): %s", url, err, hint)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s answers %d: %s", url, resp.StatusCode, hint)
	}
	return nil
}
