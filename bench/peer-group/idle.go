package main

// -idle N: N idle WebSocket connections held on each system in turn, opened from
// 127.0.0.2 … 127.0.0.(1+-idle-sources) so that more than one address's ephemeral
// ports are available; reported: the server's RSS before, with all N open (after a
// settle pause), and after they close, from /proc/<pid>/status (-parley-pid,
// -centrifugo-pid).
//
//   Parley:     GET /v1/ws?token=<HS256 {"sub":<run>-i<k>} with -parley-secret> until
//               {"type":"ready",…} (a user with no conversations; the gateway must run
//               with that PARLEY_JWT_SECRET).
//   Centrifugo: connect with an HS256 token (-cf-secret); no subscription.
// Each connection's reader discards what comes (pings are answered by the library).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// IdleResult is one system's idle run.
type IdleResult struct {
	System      string  `json:"system"`
	Connections int     `json:"connections"`
	Opened      int     `json:"opened"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSOpenKB   int64   `json:"rss_open_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"`
	PerConnKB   float64 `json:"rss_per_connection_kb"`
	OpenSeconds float64 `json:"open_seconds"`
	// CPU while the connections sat idle, as a share of one core (100 = one core busy),
	// over CPUSeconds: the server's process, and the sum of -parley-extra-pids (the
	// broker) for Parley.
	CPUSeconds float64 `json:"cpu_window_s"`
	CPUPercent float64 `json:"cpu_percent"`
	ExtraCPU   float64 `json:"extra_cpu_percent"`
	Error      string  `json:"error,omitempty"`
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux this runs on).
const clockTicks = 100

// cpuTicks is a process's user+system CPU time in clock ticks (/proc/<pid>/stat), -1 if
// it cannot be read.
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces: fields are counted after its ")".
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// cpuShare measures, over window, the CPU of each pid as a share of one core.
func cpuShare(ctx context.Context, pids []int, window time.Duration) []float64 {
	before := make([]int64, len(pids))
	for i, p := range pids {
		before[i] = cpuTicks(p)
	}
	start := time.Now()
	sleepCtx(ctx, window)
	secs := time.Since(start).Seconds()
	out := make([]float64, len(pids))
	for i, p := range pids {
		after := cpuTicks(p)
		if before[i] < 0 || after < 0 || secs <= 0 {
			out[i] = -1
			continue
		}
		out[i] = float64(after-before[i]) / clockTicks / secs * 100
	}
	return out
}

func rssKB(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return -1
}

// dialFrom opens a WebSocket from source address 127.0.0.<2+k%sources>.
func dialFrom(ctx context.Context, wsu string, k, sources int) (*websocket.Conn, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+k%sources))}
	d := &net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, Proxy: nil}
	ws, _, err := websocket.Dial(ctx, wsu, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		CompressionMode: websocket.CompressionDisabled,
	})
	return ws, err
}

func openIdle(ctx context.Context, system, base, secret, id string, k, sources int) (*websocket.Conn, error) {
	token := hs256(secret, map[string]any{"sub": id + "-i" + strconv.Itoa(k), "exp": time.Now().Add(24 * time.Hour).Unix()})
	if system == "parley" {
		wsu, err := wsURL(base, "/v1/ws")
		if err != nil {
			return nil, err
		}
		ws, err := dialFrom(ctx, wsu+"?token="+url.QueryEscape(token), k, sources)
		if err != nil {
			return nil, err
		}
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				ws.CloseNow()
				return nil, fmt.Errorf("waiting for ready: %w", err)
			}
			if bytes.Contains(data, []byte(`"type":"ready"`)) {
				return ws, nil
			}
		}
	}
	wsu, err := wsURL(base, "/connection/websocket")
	if err != nil {
		return nil, err
	}
	ws, err := dialFrom(ctx, wsu, k, sources)
	if err != nil {
		return nil, err
	}
	connect, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "idle"}})
	if err := ws.Write(ctx, websocket.MessageText, connect); err != nil {
		ws.CloseNow()
		return nil, err
	}
	if _, err := readReply(ctx, ws, 1); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return ws, nil
}

func runIdleOne(ctx context.Context, system, base, secret, id string, pid int, extra []int, n, sources int, settle, cpuWindow time.Duration) IdleResult {
	res := IdleResult{System: system, Connections: n, RSSBeforeKB: rssKB(pid)}
	var mu sync.Mutex
	conns := make([]*websocket.Conn, 0, n)
	start := time.Now()
	err := parallel(ctx, n, 200, system+" idle connections", n/10, func(ctx context.Context, k int) error {
		ws, err := openIdle(ctx, system, base, secret, id, k, sources)
		if err != nil {
			return fmt.Errorf("connection %d: %w", k, err)
		}
		ws.SetReadLimit(1 << 20)
		go func() {
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		mu.Lock()
		conns = append(conns, ws)
		mu.Unlock()
		return nil
	})
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = len(conns)
	if err != nil {
		res.Error = err.Error()
	}
	logf("%s: %d connections open in %.1f s; settling %s", system, res.Opened, res.OpenSeconds, settle)
	sleepCtx(ctx, settle)
	res.RSSOpenKB = rssKB(pid)
	if res.Opened > 0 && res.RSSBeforeKB > 0 {
		res.PerConnKB = float64(res.RSSOpenKB-res.RSSBeforeKB) / float64(res.Opened)
	}
	if cpuWindow > 0 {
		shares := cpuShare(ctx, append([]int{pid}, extra...), cpuWindow)
		res.CPUSeconds = cpuWindow.Seconds()
		res.CPUPercent = shares[0]
		for _, x := range shares[1:] {
			res.ExtraCPU += x
		}
		logf("%s: CPU over %s with %d idle connections: %.1f%% of a core (+ %.1f%% other processes)",
			system, cpuWindow, res.Opened, res.CPUPercent, res.ExtraCPU)
	}
	fs := make([]func(), 0, len(conns))
	for _, c := range conns {
		fs = append(fs, func() { c.CloseNow() })
	}
	closeAll(fs, 60*time.Second)
	sleepCtx(ctx, 10*time.Second)
	res.RSSAfterKB = rssKB(pid)
	logf("%s: RSS %d kB before, %d kB with %d open (%.1f kB each), %d kB 10 s after they closed",
		system, res.RSSBeforeKB, res.RSSOpenKB, res.Opened, res.PerConnKB, res.RSSAfterKB)
	return res
}

// runIdles runs the idle test on each system with a pid (-only picks one).
func runIdles(ctx context.Context, only, parleyURL, parleySecret string, parleyPID int, parleyExtra []int, cfURL, cfSecret string, cfPID int,
	id string, n, sources int, settle, cpuWindow time.Duration, jsonOut string) {
	logf("machine: %s; load average %s", machine(), loadAvg())
	var results []IdleResult
	for _, s := range []struct {
		name, base, secret string
		pid                int
		extra              []int
	}{{"parley", parleyURL, parleySecret, parleyPID, parleyExtra}, {"centrifugo", cfURL, cfSecret, cfPID, nil}} {
		if (only != "" && only != s.name) || s.pid <= 0 {
			continue
		}
		results = append(results, runIdleOne(ctx, s.name, s.base, s.secret, id, s.pid, s.extra, n, sources, settle, cpuWindow))
	}
	fmt.Printf("\n| system | connections | opened | open in s | RSS before MB | RSS open MB | KB per connection | RSS after close MB | idle CPU %% (server + others) | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %d | %d | %.1f | %.0f | %.0f | %.1f | %.0f | %.1f + %.1f | %s |\n", r.System, r.Connections, r.Opened, r.OpenSeconds,
			float64(r.RSSBeforeKB)/1024, float64(r.RSSOpenKB)/1024, r.PerConnKB, float64(r.RSSAfterKB)/1024, r.CPUPercent, r.ExtraCPU, r.Error)
	}
	if len(results) == 2 && results[1].CPUPercent > 0 {
		p, c := results[0], results[1]
		fmt.Printf("| parley ÷ centrifugo | | | | | | ×%.2f | | ×%.2f | |\n", p.PerConnKB/c.PerConnKB, (p.CPUPercent+p.ExtraCPU)/(c.CPUPercent+c.ExtraCPU))
	}
	if jsonOut != "" {
		writeJSON(jsonOut, map[string]any{"machine": machine(), "idle": results})
	}
}
