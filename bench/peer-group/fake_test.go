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

// fakeParley: one group and direct conversations, strict about bodies (unknown
// fields refused, ≤ 2,000 members per request), ready first with live:false, own
// sends not echoed, a direct message only to the other member.
type fakeParley struct {
	mu      sync.Mutex
	members map[string]bool
	directs map[string][2]string // direct conversation id -> its two members
	conns   map[*websocket.Conn]string
	seq     int64
	bad     []string
}

// fakeDirectID derives a direct conversation's id from the pair, in either order.
func fakeDirectID(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "dm-" + a + "-" + b
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
		if err := dec.Decode(&req); err != nil || req.Type != "group" && req.Type != "direct" || len(req.Members) > 2000 || me == "" {
			f.fail(w, 400, "create body")
			return
		}
		if req.Type == "direct" {
			if len(req.Members) != 1 || req.Members[0] == me || req.Title != "" {
				f.fail(w, 400, "direct create body")
				return
			}
			id := fakeDirectID(me, req.Members[0])
			f.mu.Lock()
			_, again := f.directs[id]
			f.directs[id] = [2]string{me, req.Members[0]}
			f.mu.Unlock()
			if again {
				reply(w, 200, map[string]any{"conversation_id": id, "created": false})
			} else {
				reply(w, 201, map[string]any{"conversation_id": id, "created": true})
			}
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
		err = dec.Decode(&s)
		f.mu.Lock()
		pair, direct := f.directs[s.ConversationID]
		member := s.ConversationID == "conv-1" && f.members[me] || direct && (pair[0] == me || pair[1] == me)
		f.mu.Unlock()
		if err != nil || s.Type != "send" || !member || s.Body == "" {
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
			if u == me {
				continue
			}
			if direct && (u == pair[0] || u == pair[1]) || !direct && f.members[u] {
				to = append(to, pc)
			}
		}
		f.mu.Unlock()
		msg := map[string]any{"type": "message", "conversation_id": s.ConversationID, "seq": seq, "prev_seq": seq - 2,
			"message_id": "00000000-0000-5000-8000-000000000000", "sender_id": me, "body": s.Body, "ts": 1}
		for _, pc := range to {
			send(pc, msg)
		}
		send(c, map[string]any{"type": "sent", "client_msg_id": s.ClientMsgID, "message_id": "00000000-0000-5000-8000-000000000000",
			"conversation_id": s.ConversationID, "seq": seq, "prev_seq": seq - 2, "ts": 1})
	}
}

// fakeCentrifugo: namespaces "group" and "direct", one channel per connection,
// publications (by subscribers only) pushed to every subscriber of the channel,
// publisher included.
type fakeCentrifugo struct {
	mu   sync.Mutex
	subs map[*websocket.Conn]string // connection -> its channel
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
			if !strings.HasPrefix(cmd.Subscribe.Channel, "group:") && !strings.HasPrefix(cmd.Subscribe.Channel, "direct:") {
				write(c, fmt.Sprintf(`{"id":%d,"error":{"code":102,"message":"unknown channel"}}`, cmd.ID))
				continue
			}
			f.mu.Lock()
			f.subs[c] = cmd.Subscribe.Channel
			f.mu.Unlock()
			write(c, fmt.Sprintf(`{"id":%d,"subscribe":{"recoverable":true,"epoch":"e"}}`, cmd.ID))
		case cmd.Publish != nil:
			f.mu.Lock()
			subscribed := f.subs[c] == cmd.Publish.Channel
			f.mu.Unlock()
			if !subscribed { // allow_publish_for_subscriber
				write(c, fmt.Sprintf(`{"id":%d,"error":{"code":103,"message":"permission denied"}}`, cmd.ID))
				continue
			}
			push := fmt.Sprintf(`{"push":{"channel":%q,"pub":{"data":%s,"offset":1}}}`, cmd.Publish.Channel, cmd.Publish.Data)
			f.mu.Lock()
			var to []*websocket.Conn
			for s, ch := range f.subs {
				if ch == cmd.Publish.Channel {
					to = append(to, s)
				}
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
	return Config{Online: 30, Members: 4500, Body: 100, DialWidth: 10, Rate: 20, DirectRate: 50, Partitions: 8,
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
		d := r.Direct
		if d == nil {
			t.Fatal("no direct pair in the phase")
		}
		dwant := int64(cfg.DirectRate * r.DurationS)
		if d.Scheduled != dwant || d.Sent != dwant || d.Acked != dwant || d.Received != d.Sent || d.Lost != 0 ||
			d.Duplicates != 0 || d.Stale != 0 || d.Errors != 0 || d.Latency.N != dwant {
			t.Fatalf("want %d direct messages read by B, got %+v", dwant, d)
		}
		for k := range d.Other {
			if k != "echoes dropped" {
				t.Fatalf("direct pair: %v", d.Other)
			}
		}
		for k := range r.Other {
			if k != "echoes dropped" {
				t.Fatalf("group: %v", r.Other)
			}
		}
	}
}

func TestParleyFake(t *testing.T) {
	f := &fakeParley{conns: map[*websocket.Conn]string{}, directs: map[string][2]string{}}
	a, b := httptest.NewServer(f), httptest.NewServer(f)
	defer a.Close()
	defer b.Close()
	cfg := testConfig()
	p := &Parley{Gateways: []string{a.URL, b.URL}, Users: userIDs("t-pa", cfg.Members), Online: cfg.Online, DialWidth: cfg.DialWidth,
		DirectPrefix: "t", Partitions: cfg.Partitions}
	res := runSystem(context.Background(), p, p.Gateways, cfg)
	if len(f.bad) > 0 {
		t.Fatalf("the fake gateway refused: %v", f.bad)
	}
	if len(f.members) != cfg.Members {
		t.Fatalf("group has %d members, want %d", len(f.members), cfg.Members)
	}
	d := res.Direct
	if d == nil || d.Error != "" || d.Partition == nil {
		t.Fatalf("direct pair: %+v", d)
	}
	t.Logf("direct pair %s -> %s on %s, partition %+v, after %d pair(s)", d.From, d.To, d.Conversation, *d.Partition, d.Tries)
	if d.Conversation != fakeDirectID(d.From, d.To) || f.directs[d.Conversation] != [2]string{d.From, d.To} ||
		d.Partition.Direct != d.Partition.Group || d.Partition.Group != partitionOf("conv-1", cfg.Partitions) ||
		partitionOf(d.Conversation, cfg.Partitions) != d.Partition.Group || len(f.directs) != d.Tries {
		t.Fatalf("direct pair not on the group's partition: %+v %+v (%d created)", *d, *d.Partition, len(f.directs))
	}
	checkSystem(t, res, cfg)
}

func TestCentrifugoFake(t *testing.T) {
	f := &fakeCentrifugo{subs: map[*websocket.Conn]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := testConfig()
	c := &Centrifugo{Base: srv.URL, Secret: "s", Channel: "group:t", Users: userIDs("t-cf", cfg.Online+1),
		Online: cfg.Online, DialWidth: cfg.DialWidth, DirectChannel: "direct:t", DirectUsers: [2]string{"t-da", "t-db"}}
	res := runSystem(context.Background(), c, []string{srv.URL}, cfg)
	if len(f.bad) > 0 {
		t.Fatalf("the fake server could not read: %v", f.bad)
	}
	checkSystem(t, res, cfg)
	if res.Latency.Other["echoes dropped"] == 0 || res.Latency.Direct.Other["echoes dropped"] == 0 {
		t.Fatalf("echoes not seen: %v %v", res.Latency.Other, res.Latency.Direct.Other)
	}
	if res.Direct == nil || res.Direct.Error != "" || res.Direct.Conversation != "direct:t" {
		t.Fatalf("direct pair: %+v", res.Direct)
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
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "| **parley ÷ centrifugo** | latency") && strings.Count(l, "×1.00") != 11 {
			t.Fatalf("latency ratio row, want 11 ratios (direct p50 and p99 among them): %s", l)
		}
	}
	for _, col := range []string{"| 1:1 p99 (latency phase) |", "| direct p50 | direct p99 | direct lost |"} {
		if !strings.Contains(b.String(), col) {
			t.Fatalf("no %q in the report", col)
		}
	}
}

// A direct pair that cannot be set up (a channel of no namespace) leaves the group's
// run as it is.
func TestDirectPairFailure(t *testing.T) {
	f := &fakeCentrifugo{subs: map[*websocket.Conn]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := testConfig()
	cfg.SatRates = nil
	c := &Centrifugo{Base: srv.URL, Secret: "s", Channel: "group:t", Users: userIDs("t-cf", cfg.Online+1),
		Online: cfg.Online, DialWidth: cfg.DialWidth, DirectChannel: "nope:t", DirectUsers: [2]string{"t-da", "t-db"}}
	res := runSystem(context.Background(), c, []string{srv.URL}, cfg)
	if res.SetupError != "" || res.Direct == nil || !strings.Contains(res.Direct.Error, "unknown channel") {
		t.Fatalf("want the direct pair's error only: %q %+v", res.SetupError, res.Direct)
	}
	r := res.Latency
	t.Log(r.oneLine())
	want := int64(r.Rate * r.DurationS)
	if r.Direct != nil || !r.Pass || r.HeldByAll != want || r.Lost != 0 {
		t.Fatalf("the group's run changed: %+v", r)
	}
	var b strings.Builder
	printReport(&b, Output{Machine: machine(), Systems: []SystemResult{res}}, cfg)
	if !strings.Contains(b.String(), "**direct pair failed**") || !strings.Contains(b.String(), "| – | – | – |") {
		t.Fatalf("report:\n%s", b.String())
	}
}

// Kafka's own vectors (UtilsTest.testMurmur2).
func TestMurmur2(t *testing.T) {
	for _, v := range []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := murmur2([]byte(v.key)); got != v.want {
			t.Fatalf("murmur2(%q) = %d, want %d", v.key, got, v.want)
		}
	}
	// toPositive, not abs: a negative hash maps by masking the sign bit.
	if got, want := partitionOf("21", 16), int(int32(-973932308)&0x7fffffff)%16; got != want {
		t.Fatalf("partitionOf(21, 16) = %d, want %d", got, want)
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
	if conv, got, ok := parleyMessage([]byte(pm)); !ok || got != body || conv != "c" {
		t.Fatalf("parley fast path: %q %q %v", conv, got, ok)
	}
	for _, other := range []string{`{"type":"sent","client_msg_id":"1.2"}`, `{"type":"message","body":"a\"b"}`,
		`{"type":"message","body":"` + body + `","conversation_id":"c"}`} {
		if _, _, ok := parleyMessage([]byte(other)); ok {
			t.Fatalf("parley fast path took %s", other)
		}
	}
	cp := `{"push":{"channel":"group:t","pub":{"data":{"b":"` + body + `"},"offset":3,"epoch":"e"}}}`
	if ch, got, ok := cfPush([]byte(cp)); !ok || got != body || ch != "group:t" {
		t.Fatalf("centrifugo fast path: %q %q %v", ch, got, ok)
	}
	cp = `{"push":{"channel":"direct:t","pub":{"offset":3,"data":{"b":"` + body + `"}}}}`
	if ch, got, ok := cfPush([]byte(cp)); !ok || got != body || ch != "direct:t" {
		t.Fatalf("centrifugo fast path, offset first: %q %q %v", ch, got, ok)
	}
	if _, _, ok := cfPush([]byte(`{"id":3,"publish":{}}`)); ok {
		t.Fatal("centrifugo fast path took a reply")
	}
	dk := directKey(12, 345)
	if db := msgBody(dk, time.Unix(0, 1), 100); !strings.HasPrefix(db, "d12.345.1.x") || len(db) != 100 {
		t.Fatalf("direct body %q", db)
	}
	if _, _, ok := parseBody(dk); ok {
		t.Fatalf("a direct key %q parses as a group message", dk)
	}
}
