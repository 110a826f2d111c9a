package main

// Both adapters against small fake servers that speak the frames the adapters rely
// on (Parley: docs/protocol.md; Centrifugo: client protocol v2 JSON), run through
// the real phases.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// fakeParley: one group, strict about bodies (unknown fields refused, ≤ 2,000
// members per request), ready first with live:false, own sends not echoed.
type fakeParley struct {
	mu      sync.Mutex
	members map[string]bool
	conns   map[*websocket.Conn]string
	seq     int64
	bad     []string
}

func (f *fakeParley) fail(w http.ResponseWriter, code int, why string) {
	f.mu.Lock()
	f.bad = append(f.bad, why)
	f.mu.Unlock()
	reply(w, code, map[string]any{"error": map[string]string{"code": "bad_request", "message": why}})
}

func (f *fakeParley) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	me := strings.TrimPrefix(r.Header.Get("authorization"), "Bearer tok.")
	if t := r.URL.Query().Get("token"); t != "" {
		me = strings.TrimPrefix(t, "tok.")
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	switch {
	case r.Method == "GET" && r.URL.Path == "/healthz":
		_, _ = w.Write([]byte("ok"))
	case r.Method == "POST" && r.URL.Path == "/v1/dev/token":
		var req struct {
			UserID string `json:"user_id"`
		}
		if err := dec.Decode(&req); err != nil || req.UserID == "" {
			f.fail(w, 400, "dev token body")
			return
		}
		reply(w, 200, map[string]any{"token": "tok." + req.UserID, "user_id": req.UserID, "expires_in": 86400})
	case r.Method == "POST" && r.URL.Path == "/v1/conversations":
		var req struct {
			Type    string   `json:"type"`
			Title   string   `json:"title"`
			Members []string `json:"members"`
		}
		if err := dec.Decode(&req); err != nil || req.Type != "group" || len(req.Members) > 2000 {
			f.fail(w, 400, "create body")
			return
		}
		f.mu.Lock()
		f.members = map[string]bool{me: true}
		for _, m := range req.Members {
			f.members[m] = true
		}
		f.mu.Unlock()
		reply(w, 201, map[string]any{"conversation_id": "conv-1", "created": true})
	case r.Method == "POST" && r.URL.Path == "/v1/conversations/conv-1/members":
		var req struct {
			Members []string `json:"members"`
		}
		if err := dec.Decode(&req); err != nil || len(req.Members) > 2000 {
			f.fail(w, 400, "add body")
			return
		}
		f.mu.Lock()
		for _, m := range req.Members {
			f.members[m] = true
		}
		f.mu.Unlock()
		reply(w, 200, map[string]any{"conversation_id": "conv-1", "members": req.Members})
	case r.URL.Path == "/v1/ws" && me != "":
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		f.session(me, c)
	default:
		f.fail(w, 404, r.Method+" "+r.URL.Path)
	}
}

func (f *fakeParley) session(me string, c *websocket.Conn) {
	ctx := context.Background()
	send := func(c *websocket.Conn, v any) {
		data, _ := json.Marshal(v)
		_ = c.Write(ctx, websocket.MessageText, data)
	}
	send(c, map[string]any{"type": "ready", "user_id": me, "session_id": "1", "gateway_id": 0, "live": false})
	f.mu.Lock()
	f.conns[c] = me
	f.mu.Unlock()
	send(c, map[string]any{"type": "ready", "user_id": me, "session_id": "1", "gateway_id": 0, "live": true})
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
			return
		}
		var s struct {
			Type           string `json:"type"`
			ClientMsgID    string `json:"client_msg_id"`
			ConversationID string `json:"conversation_id"`
			Body           string `json:"body"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil || s.Type != "send" || s.ConversationID != "conv-1" || s.Body == "" {
			f.mu.Lock()
			f.bad = append(f.bad, "frame "+string(data))
			f.mu.Unlock()
			continue
		}
		f.mu.Lock()
		f.seq += 2
		seq := f.seq
		var to []*websocket.Conn
		for pc, u := range f.conns {
			if u != me && f.members[u] {
				to = append(to, pc)
			}
		}
		f.mu.Unlock()
		msg := map[string]any{"type": "message", "conversation_id": "conv-1", "seq": seq, "prev_seq": seq - 2,
			"message_id": "00000000-0000-5000-8000-000000000000", "sender_id": me, "body": s.Body, "ts": 1}
		for _, pc := range to {
			send(pc, msg)
		}
		send(c, map[string]any{"type": "sent", "client_msg_id": s.ClientMsgID, "message_id": "00000000-0000-5000-8000-000000000000",
			"conversation_id": "conv-1", "seq": seq, "prev_seq": seq - 2, "ts": 1})
	}
}

// fakeCentrifugo: one channel, publications pushed to every subscriber, publisher included.
type fakeCentrifugo struct {
	mu   sync.Mutex
	subs map[*websocket.Conn]bool
	bad  []string
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		reply(w, 200, map[string]any{})
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ctx := context.Background()
	write := func(c *websocket.Conn, s string) { _ = c.Write(ctx, websocket.MessageText, []byte(s)) }
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			f.mu.Lock()
			delete(f.subs, c)
			f.mu.Unlock()
			return
		}
		var cmd struct {
			ID        uint32          `json:"id"`
			Connect   json.RawMessage `json:"connect"`
			Subscribe *struct {
				Channel string `json:"channel"`
			} `json:"subscribe"`
			Publish *struct {
				Channel string          `json:"channel"`
				Data    json.RawMessage `json:"data"`
			} `json:"publish"`
		}
		if err := json.Unmarshal(data, &cmd); err != nil {
			f.mu.Lock()
			f.bad = append(f.bad, string(data))
			f.mu.Unlock()
			continue
		}
		switch {
		case cmd.Connect != nil:
			write(c, fmt.Sprintf(`{"id":%d,"connect":{"client":"x","version":"6","pong":true,"ping":25}}`, cmd.ID))
		case cmd.Subscribe != nil:
			f.mu.Lock()
			f.subs[c] = true
			f.mu.Unlock()
			write(c, fmt.Sprintf(`{"id":%d,"subscribe":{"recoverable":true,"epoch":"e"}}`, cmd.ID))
		case cmd.Publish != nil:
			push := fmt.Sprintf(`{"push":{"channel":%q,"pub":{"data":%s,"offset":1}}}`, cmd.Publish.Channel, cmd.Publish.Data)
			f.mu.Lock()
			var to []*websocket.Conn
			for s := range f.subs {
				to = append(to, s)
			}
			f.mu.Unlock()
			for _, s := range to {
				if s == c {
					write(s, fmt.Sprintf(`{"id":%d,"publish":{}}`+"\n%s\n{}", cmd.ID, push))
				} else {
					write(s, push)
				}
			}
		}
	}
}

func testConfig() Config {
	return Config{Online: 30, Members: 4500, Body: 100, DialWidth: 10, Rate: 20,
		Warmup: 200 * time.Millisecond, Duration: time.Second, Grace: time.Second,
		SatRates: []float64{50, 100}, SatWarmup: 100 * time.Millisecond, SatDuration: 500 * time.Millisecond,
		SatGrace: 500 * time.Millisecond, Cooldown: 10 * time.Millisecond, SLO: 100 * time.Millisecond,
		SetupTimeout: 20 * time.Second}
}

func checkSystem(t *testing.T, res SystemResult, cfg Config) {
	t.Helper()
	if res.SetupError != "" {
		t.Fatal(res.SetupError)
	}
	all := append([]PhaseResult{*res.Latency}, res.Saturation...)
	if len(all) != 1+len(cfg.SatRates) {
		t.Fatalf("%d phases", len(all))
	}
	for _, r := range all {
		t.Log(r.oneLine())
		want := int64(r.Rate * r.DurationS)
		if r.Scheduled != want || r.Sent != want || r.Acked != want || r.HeldByAll != want ||
			r.Deliveries != want*int64(cfg.Online) || r.Lost != 0 || r.Duplicates != 0 || r.Stale != 0 || !r.Pass {
			t.Fatalf("want %d messages held by all %d subscribers and a pass, got %+v", want, cfg.Online, r)
		}
		if r.HeldAll.N != want || r.Each.N != want*int64(cfg.Online) || r.HeldAll.P50 < r.Each.P50 {
			t.Fatalf("histograms: %+v %+v", r.HeldAll, r.Each)
		}
	}
}

func TestParleyFake(t *testing.T) {
	f := &fakeParley{conns: map[*websocket.Conn]string{}}
	a, b := httptest.NewServer(f), httptest.NewServer(f)
	defer a.Close()
	defer b.Close()
	cfg := testConfig()
	p := &Parley{Gateways: []string{a.URL, b.URL}, Users: userIDs("t-pa", cfg.Members), Online: cfg.Online, DialWidth: cfg.DialWidth}
	res := runSystem(context.Background(), p, p.Gateways, cfg)
	if len(f.bad) > 0 {
		t.Fatalf("the fake gateway refused: %v", f.bad)
	}
	if len(f.members) != cfg.Members {
		t.Fatalf("group has %d members, want %d", len(f.members), cfg.Members)
	}
	checkSystem(t, res, cfg)
}

func TestCentrifugoFake(t *testing.T) {
	f := &fakeCentrifugo{subs: map[*websocket.Conn]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := testConfig()
	c := &Centrifugo{Base: srv.URL, Secret: "s", Channel: "group:t", Users: userIDs("t-cf", cfg.Online+1),
		Online: cfg.Online, DialWidth: cfg.DialWidth}
	res := runSystem(context.Background(), c, []string{srv.URL}, cfg)
	if len(f.bad) > 0 {
		t.Fatalf("the fake server could not read: %v", f.bad)
	}
	checkSystem(t, res, cfg)
	if res.Latency.Other["echoes dropped"] == 0 {
		t.Fatalf("echoes not seen: %v", res.Latency.Other)
	}
	// The report, with this run standing in for both systems.
	as := func(name string, s SystemResult) SystemResult {
		s.System, s.Saturation = name, append([]PhaseResult(nil), s.Saturation...)
		l := *s.Latency
		l.System, s.Latency = name, &l
		for i := range s.Saturation {
			s.Saturation[i].System = name
		}
		return s
	}
	var b strings.Builder
	printReport(&b, Output{Machine: machine(), Systems: []SystemResult{as("parley", res), res}}, cfg)
	t.Log("\n" + b.String())
	if n := strings.Count(b.String(), "| **parley ÷ centrifugo** |"); n != 2+len(cfg.SatRates) {
		t.Fatalf("%d ratio rows", n)
	}
}

func TestBodiesAndFastPaths(t *testing.T) {
	body := msgBody(msgKey(12, 345), time.Unix(0, 1767225600123456789), 100)
	if len(body) != 100 || !strings.HasPrefix(body, "12.345.1767225600123456789.x") {
		t.Fatalf("body %q", body)
	}
	if ph, seq, ok := parseBody(body); !ok || ph != 12 || seq != 345 {
		t.Fatalf("parseBody(%q) = %d %d %v", body, ph, seq, ok)
	}
	for _, bad := range []string{"", "x.1", "1", "1.", "1.2x", ".1.2"} {
		if _, _, ok := parseBody(bad); ok {
			t.Fatalf("parseBody(%q) accepted", bad)
		}
	}
	pm := `{"type":"message","conversation_id":"c","seq":4,"prev_seq":2,"message_id":"m","sender_id":"u","body":"` + body + `","ts":1}`
	if got, ok := parleyMessageBody([]byte(pm)); !ok || got != body {
		t.Fatalf("parley fast path: %q %v", got, ok)
	}
	for _, other := range []string{`{"type":"sent","client_msg_id":"1.2"}`, `{"type":"message","body":"a\"b"}`} {
		if _, ok := parleyMessageBody([]byte(other)); ok {
			t.Fatalf("parley fast path took %s", other)
		}
	}
	cp := `{"push":{"channel":"group:t","pub":{"data":{"b":"` + body + `"},"offset":3,"epoch":"e"}}}`
	if got, ok := cfPushBody([]byte(cp)); !ok || got != body {
		t.Fatalf("centrifugo fast path: %q %v", got, ok)
	}
	cp = `{"push":{"channel":"group:t","pub":{"offset":3,"data":{"b":"` + body + `"}}}}`
	if got, ok := cfPushBody([]byte(cp)); !ok || got != body {
		t.Fatalf("centrifugo fast path, offset first: %q %v", got, ok)
	}
	if _, ok := cfPushBody([]byte(`{"id":3,"publish":{}}`)); ok {
		t.Fatal("centrifugo fast path took a reply")
	}
}
