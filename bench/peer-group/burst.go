package main

// -burst N: one session posts N messages as fast as the server acknowledges them, with
// at most -burst-window unacknowledged, on each system in turn. Reported: acked
// messages per second (first write to last acknowledgement), acknowledgement latency
// p50/p99 (write to ack), errors, and acks out of send order (Parley: `sent` frames in
// client_msg_id order with rising seqs; Centrifugo: publish replies in id order), and
// with -parley-pid (plus -parley-extra-pids) and -centrifugo-pid, each system's CPU per
// acked message over its burst, from /proc/<pid>/stat, and the ratio of the two.
//
//   Parley:     a direct conversation of <run>-ba with <run>-bb; <run>-ba's WebSocket
//               sends {"type":"send",…} and reads {"type":"sent"|"error",…}; <run>-bb
//               is connected and receives each message.
//   Centrifugo: <run>-ba and <run>-bb subscribe to direct:<run>-burst
//               (allow_publish_for_subscriber, run-centrifugo.sh); <run>-ba publishes;
//               replies {"id":k,"publish":{}}; the echoes of its own publications are
//               read and dropped; <run>-bb receives each one.
// Reported too: how many messages the other connection received by the end.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// BurstResult is one system's burst.
type BurstResult struct {
	System     string      `json:"system"`
	Messages   int         `json:"messages"`
	Window     int         `json:"window"`
	Acked      int64       `json:"acked"`
	Errors     int64       `json:"errors"`
	Received   int64       `json:"received_by_the_other"`
	OutOfOrder int64       `json:"out_of_order"`
	Seconds    float64     `json:"seconds"`
	PerSecond  float64     `json:"acked_per_second"`
	Ack        Percentiles `json:"ack_latency"`
	// CPU of the system's processes (-parley-pid and -parley-extra-pids, or
	// -centrifugo-pid) from the first send until the other member has every acked
	// message, in ms per acked message; 0 when no pid was given.
	CPUPerMessage float64 `json:"cpu_ms_per_message,omitempty"`
	Error         string  `json:"error,omitempty"`
}

// burstConn is what a burst needs of a connection: send message i, and the answers an
// incoming frame carries, in order.
type burstConn struct {
	ws *websocket.Conn
	// The other member's connection, and how many messages it has received.
	peer     *websocket.Conn
	received *atomic.Int64
	send     func(ctx context.Context, i int) error
	parse    func(data []byte) []answer
}

// answer: the message it answers, whether it was acknowledged (not an error), and
// whether it came out of order (Parley: a seq not above the one before).
type answer struct {
	index    int
	ok       bool
	disorder bool
}

func runBurst(ctx context.Context, name string, c *burstConn, n, window int, pids []int) BurstResult {
	res := BurstResult{System: name, Messages: n, Window: window}
	ticksBefore := ticksOf(pids)
	slots := make(chan struct{}, window)
	sentAt := make([]int64, n)
	hist := newLockedHist()
	var acked, errs, disorder atomic.Int64
	done := make(chan struct{})
	var last atomic.Int64
	go func() {
		defer close(done)
		next := 0
		for acked.Load()+errs.Load() < int64(n) {
			_, data, err := c.ws.Read(ctx)
			if err != nil {
				return
			}
			now := time.Now().UnixNano()
			for _, a := range c.parse(data) {
				if a.index < 0 || a.index >= n {
					continue
				}
				if a.index != next || a.disorder {
					disorder.Add(1)
				}
				next = a.index + 1
				hist.add(now - sentAt[a.index])
				if a.ok {
					acked.Add(1)
				} else {
					errs.Add(1)
				}
				last.Store(now)
				<-slots
			}
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		select {
		case slots <- struct{}{}:
		case <-done:
			res.Error = "the connection ended early"
			i = n
			continue
		case <-ctx.Done():
			res.Error = ctx.Err().Error()
			i = n
			continue
		}
		sentAt[i] = time.Now().UnixNano()
		if err := c.send(ctx, i); err != nil {
			res.Error = err.Error()
			break
		}
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		res.Error = "answers still missing 60 s after the last send"
	case <-ctx.Done():
	}
	// The other member: everything acked arrives (a short grace).
	for wait := 0; wait < 50 && c.received.Load() < acked.Load(); wait++ {
		time.Sleep(100 * time.Millisecond)
	}
	ticksAfter := ticksOf(pids)
	res.Received = c.received.Load()
	c.peer.CloseNow()
	end := time.Unix(0, last.Load())
	res.Acked, res.Errors, res.OutOfOrder = acked.Load(), errs.Load(), disorder.Load()
	res.Seconds = end.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Acked) / res.Seconds
	}
	res.Ack = hist.summary()
	if len(pids) > 0 && ticksBefore >= 0 && ticksAfter >= ticksBefore && res.Acked > 0 {
		res.CPUPerMessage = float64(ticksAfter-ticksBefore) * 1000 / clockTicks / float64(res.Acked)
	}
	c.ws.CloseNow()
	return res
}

// ticksOf sums the CPU ticks of pids (-1 if one cannot be read).
func ticksOf(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		t := cpuTicks(p)
		if t < 0 {
			return -1
		}
		sum += t
	}
	return sum
}

func burstBody(i, size int) string {
	b := "burst." + strconv.Itoa(i) + "."
	if len(b) < size {
		b += strings.Repeat("x", size-len(b))
	}
	return b
}

func parleyBurst(ctx context.Context, base, id string, body int) (*burstConn, error) {
	p := &Parley{http: newHTTPClient()}
	a, b := id+"-ba", id+"-bb"
	tok, err := p.devToken(ctx, base, a)
	if err != nil {
		return nil, err
	}
	tokB, err := p.devToken(ctx, base, b)
	if err != nil {
		return nil, err
	}
	var created struct {
		ID string `json:"conversation_id"`
	}
	if err := p.postJSON(ctx, base, "/v1/conversations", tok,
		map[string]any{"type": "direct", "members": []string{b}}, &created); err != nil {
		return nil, err
	}
	peer, err := parleyLive(ctx, base, tokB)
	if err != nil {
		return nil, err
	}
	received := new(atomic.Int64)
	go count(peer, received, []byte(`"type":"message"`))
	ws, err := parleyLive(ctx, base, tok)
	if err != nil {
		return nil, err
	}
	conv := created.ID
	var lastSeq int64 = -1
	return &burstConn{
		ws:       ws,
		peer:     peer,
		received: received,
		send: func(ctx context.Context, i int) error {
			frame := `{"type":"send","client_msg_id":"b` + strconv.Itoa(i) + `","conversation_id":"` + conv +
				`","body":"` + burstBody(i, body) + `"}`
			return ws.Write(ctx, websocket.MessageText, []byte(frame))
		},
		parse: func(data []byte) []answer {
			var f struct {
				Type  string `json:"type"`
				CMID  string `json:"client_msg_id"`
				Seq   int64  `json:"seq"`
				Code  string `json:"code"`
				Error string `json:"message"`
			}
			if json.Unmarshal(data, &f) != nil || (f.Type != "sent" && f.Type != "error") || !strings.HasPrefix(f.CMID, "b") {
				return nil
			}
			i, err := strconv.Atoi(f.CMID[1:])
			if err != nil {
				return nil
			}
			a := answer{index: i, ok: f.Type == "sent"}
			if a.ok {
				a.disorder = f.Seq <= lastSeq
				lastSeq = f.Seq
			}
			return []answer{a}
		},
	}, nil
}

// parleyLive opens a session and waits for `ready` with `live: true`.
func parleyLive(ctx context.Context, base, token string) (*websocket.Conn, error) {
	wsu, err := wsURL(base, "/v1/ws")
	if err != nil {
		return nil, err
	}
	wsu += "?token=" + url.QueryEscape(token)
	ws, _, err := websocket.Dial(ctx, wsu, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("waiting for ready: %w", err)
		}
		if bytes.Contains(data, []byte(`"type":"ready"`)) && bytes.Contains(data, []byte(`"live":true`)) {
			return ws, nil
		}
	}
}

// count reads ws until it closes, counting occurrences of marker (a frame may hold
// several lines).
func count(ws *websocket.Conn, n *atomic.Int64, marker []byte) {
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		n.Add(int64(bytes.Count(data, marker)))
	}
}

func centrifugoBurst(ctx context.Context, base, secret, id string, body int) (*burstConn, error) {
	peer, err := centrifugoSubscriber(ctx, base, secret, id+"-bb", "direct:"+id+"-burst")
	if err != nil {
		return nil, err
	}
	received := new(atomic.Int64)
	go count(peer, received, cfPushPrefix)
	ws, err := centrifugoSubscriber(ctx, base, secret, id+"-ba", "direct:"+id+"-burst")
	if err != nil {
		return nil, err
	}
	channel := "direct:" + id + "-burst"
	const first = 10
	return &burstConn{
		ws:       ws,
		peer:     peer,
		received: received,
		send: func(ctx context.Context, i int) error {
			frame := `{"id":` + strconv.Itoa(first+i) + `,"publish":{"channel":"` + channel + `","data":{"b":"` + burstBody(i, body) + `"}}}`
			return ws.Write(ctx, websocket.MessageText, []byte(frame))
		},
		parse: func(data []byte) []answer {
			// Several replies may share a frame, one JSON object per line.
			var out []answer
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(line) == 0 || bytes.HasPrefix(line, cfPushPrefix) {
					continue
				}
				var r struct {
					ID    int             `json:"id"`
					Error json.RawMessage `json:"error"`
				}
				if json.Unmarshal(line, &r) != nil || r.ID < first {
					continue
				}
				out = append(out, answer{index: r.ID - first, ok: len(r.Error) == 0})
			}
			return out
		},
	}, nil
}

// centrifugoSubscriber connects user and subscribes it to channel.
func centrifugoSubscriber(ctx context.Context, base, secret, user, channel string) (*websocket.Conn, error) {
	wsu, err := wsURL(base, "/connection/websocket")
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.Dial(ctx, wsu, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	token := hs256(secret, map[string]any{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	connect, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "burst"}})
	if err := ws.Write(ctx, websocket.MessageText, connect); err != nil {
		return nil, err
	}
	if _, err := readReply(ctx, ws, 1); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	sub, _ := json.Marshal(map[string]any{"id": 2, "subscribe": map[string]any{"channel": channel}})
	if err := ws.Write(ctx, websocket.MessageText, sub); err != nil {
		return nil, err
	}
	if _, err := readReply(ctx, ws, 2); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", channel, err)
	}
	return ws, nil
}

// runBursts runs the burst on each system (-only picks one) and prints both rows.
// pids: the processes whose CPU counts for each system (none: no CPU column).
func runBursts(ctx context.Context, only, parleyURL, cfURL, cfSecret, id string, n, window, body int, pids map[string][]int, jsonOut string) {
	logf("machine: %s; load average %s", machine(), loadAvg())
	var results []BurstResult
	for _, name := range []string{"parley", "centrifugo"} {
		if only != "" && only != name {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		var c *burstConn
		var err error
		if name == "parley" {
			c, err = parleyBurst(sctx, parleyURL, id, body)
		} else {
			c, err = centrifugoBurst(sctx, cfURL, cfSecret, id, body)
		}
		var r BurstResult
		if err != nil {
			r = BurstResult{System: name, Messages: n, Window: window, Error: err.Error()}
		} else {
			logf("%s: one session posts %d messages, at most %d unacknowledged", name, n, window)
			r = runBurst(sctx, name, c, n, window, pids[name])
		}
		cancel()
		logf("%s: %d acked in %.2f s: %.0f/s (errors %d, out of order %d; CPU %s ms per message) %s", name, r.Acked, r.Seconds, r.PerSecond, r.Errors, r.OutOfOrder, cpuCell(r.CPUPerMessage), r.Error)
		results = append(results, r)
	}
	fmt.Printf("\n| system | messages | window | acked/s | ack p50 ms | ack p99 ms | CPU ms per message | errors | out of order | received by the other | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %d | %d | %.0f | %.1f | %.1f | %s | %d | %d | %d | %s |\n", r.System, r.Messages, r.Window, r.PerSecond,
			r.Ack.P50, r.Ack.P99, cpuCell(r.CPUPerMessage), r.Errors, r.OutOfOrder, r.Received, r.Error)
	}
	if len(results) == 2 && results[1].PerSecond > 0 {
		fmt.Printf("\nParley / Centrifugo acked/s: %.2f\n", results[0].PerSecond/results[1].PerSecond)
	}
	if len(results) == 2 && results[0].CPUPerMessage > 0 && results[1].CPUPerMessage > 0 {
		fmt.Printf("Parley / Centrifugo CPU per message: %.2f\n", results[0].CPUPerMessage/results[1].CPUPerMessage)
	}
	if jsonOut != "" {
		writeJSON(jsonOut, map[string]any{"machine": machine(), "bursts": results})
	}
}

// cpuCell formats a CPU figure, "-" when it was not measured.
func cpuCell(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return strconv.FormatFloat(ms, 'f', 4, 64)
}
