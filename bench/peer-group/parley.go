package main

// Parley (the project's docs/protocol.md), one large group:
//   POST /v1/dev/token {"user_id":…} -> {"token":…}           (gateways with --dev-auth)
//   POST /v1/conversations {"type":"group","title":"bench","members":[≤2,000]} (Bearer)
//                                    -> {"conversation_id":…}
//   POST /v1/conversations/{id}/members {"members":[≤2,000]}  the rest, in chunks
//   GET  /v1/ws?token=…  until {"type":"ready",…,"live":true}
//   -> {"type":"send","client_msg_id":K,"conversation_id":C,"body":B}   (publisher)
//   <- {"type":"sent","client_msg_id":K,…} or {"type":"error","code":…,"client_msg_id":K}
//   <- {"type":"message","conversation_id":C,…,"body":B}               (subscribers)
// The direct pair, next to the group:
//   POST /v1/conversations {"type":"direct","members":["<B>"]} (Bearer A) -> {"conversation_id":D}
//        (200 or 201; the id derives from the pair, so it is retried with the next pair
//        until D is on the group's `events` partition: see partitionOf)
//   A sends to D on the first gateway, B reads on the second (if there is one).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type Parley struct {
	Gateways  []string // base URLs; subscribers are spread round robin, the publisher uses the first
	Users     []string // Users[0] publishes, Users[1..Online] subscribe, the rest are offline members
	Online    int
	DialWidth int
	// The direct pair: users <DirectPrefix>-da and -db (then -da2/-db2, …), on a
	// conversation in the group's partition of `events`, which has Partitions.
	DirectPrefix string
	Partitions   int

	http   *http.Client
	conv   string
	pub    *parleyConn
	conns  []*parleyConn
	direct string      // the direct conversation
	da, db *parleyConn // its sender and reader
}

func (p *Parley) Name() string { return "parley" }

type parleyConn struct {
	ws      *websocket.Conn
	conv    string // the conversation it counts messages of
	stop    context.CancelFunc
	closing atomic.Bool
}

// postJSON posts body and decodes a 2xx answer into out; 429 and 503 are retried.
func (p *Parley) postJSON(ctx context.Context, base, path, bearer string, body, out any) error {
	raw, _ := json.Marshal(body)
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, "POST", httpBase(base)+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("content-type", "application/json")
		if bearer != "" {
			req.Header.Set("authorization", "Bearer "+bearer)
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return json.Unmarshal(data, out)
		}
		if (resp.StatusCode == 429 || resp.StatusCode == 503) && attempt < 6 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff *= 2
			continue
		}
		return fmt.Errorf("POST %s%s: %d %s", base, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
}

// gatewayOf is where user i connects: the publisher (0) to the first gateway,
// subscriber s (user s+1) to gateway s mod len.
func (p *Parley) gatewayOf(i int) string {
	if i == 0 {
		return p.Gateways[0]
	}
	return p.Gateways[(i-1)%len(p.Gateways)]
}

func (p *Parley) Setup(ctx context.Context, sink Sink) error {
	if len(p.Gateways) == 0 || p.Online < 1 || len(p.Users) < p.Online+1 {
		return fmt.Errorf("parley: need a gateway, and members > online >= 1")
	}
	for _, g := range p.Gateways {
		if _, err := wsURL(g, "/v1/ws"); err != nil {
			return err
		}
		if err := probe(ctx, httpBase(g)+"/healthz", "start Parley (bench/peer-group/run-parley.sh) or pass -only centrifugo"); err != nil {
			return fmt.Errorf("parley: %w", err)
		}
	}
	p.http = newHTTPClient()
	n := p.Online + 1
	// Each token comes from the gateway its user connects to, so gateways need not
	// share a JWT secret.
	tokens := make([]string, n)
	logf("parley: %d dev tokens ...", n)
	err := parallel(ctx, n, 32, "tokens", 500, func(ctx context.Context, i int) error {
		token, err := p.devToken(ctx, p.gatewayOf(i), p.Users[i])
		tokens[i] = token
		return err
	})
	if err != nil {
		return err
	}
	if err := p.createGroup(ctx, tokens[0]); err != nil {
		return err
	}

	logf("parley: connecting %d subscribers + 1 publisher over %d gateway(s), %d at a time ...", p.Online, len(p.Gateways), p.DialWidth)
	conns := make([]*parleyConn, n)
	err = parallel(ctx, n, p.DialWidth, "connected", p.DialWidth, func(ctx context.Context, i int) error {
		c, err := p.dial(ctx, p.gatewayOf(i), tokens[i], p.conv, i-1, sink)
		if err != nil {
			return fmt.Errorf("parley: connect %s to %s: %w", p.Users[i], p.gatewayOf(i), err)
		}
		conns[i] = c
		return nil
	})
	p.pub, p.conns = conns[0], conns
	if err != nil {
		p.Close()
		return err
	}
	return nil
}

// createGroup creates the group with at most 2,000 members per request (bodies stay
// under the gateway's 64 KiB) and adds the rest in chunks of 2,000.
func (p *Parley) createGroup(ctx context.Context, token string) error {
	const chunk = 2000
	others := p.Users[1:]
	first := others[:min(len(others), chunk)]
	logf("parley: creating a group of %d members ...", len(p.Users))
	var out struct {
		ConversationID string `json:"conversation_id"`
	}
	err := p.postJSON(ctx, p.Gateways[0], "/v1/conversations", token,
		map[string]any{"type": "group", "title": "bench", "members": first}, &out)
	if err != nil {
		return fmt.Errorf("parley: create group: %w", err)
	}
	if out.ConversationID == "" {
		return fmt.Errorf("parley: create group: no conversation_id in the answer")
	}
	p.conv = out.ConversationID
	path := "/v1/conversations/" + url.PathEscape(p.conv) + "/members"
	for i := len(first); i < len(others); i += chunk {
		part := others[i:min(len(others), i+chunk)]
		var added struct {
			ConversationID string `json:"conversation_id"`
		}
		if err := p.postJSON(ctx, p.Gateways[0], path, token, map[string]any{"members": part}, &added); err != nil {
			return fmt.Errorf("parley: add members %d..%d: %w", i+1, i+len(part), err)
		}
		logf("  members: %d/%d", 1+i+len(part), len(p.Users))
	}
	logf("parley: group %s has %d members", p.conv, len(p.Users))
	return nil
}

// murmur2 is Kafka's Java Utils.murmur2 (32-bit MurmurHash2, seed 0x9747b28c), the
// hash of Kafka's default partitioner, with which Parley places a conversation.
func murmur2(data []byte) int32 {
	const m, r uint32 = 0x5bd1e995, 24
	h := uint32(0x9747b28c) ^ uint32(len(data))
	n := len(data) &^ 3
	for i := 0; i < n; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n:]
	if len(tail) >= 3 {
		h ^= uint32(tail[2]) << 16
	}
	if len(tail) >= 2 {
		h ^= uint32(tail[1]) << 8
	}
	if len(tail) >= 1 {
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// partitionOf is the `events` partition of a conversation: toPositive(murmur2(id)) % partitions.
func partitionOf(conversation string, partitions int) int {
	return int(murmur2([]byte(conversation))&0x7fffffff) % max(partitions, 1)
}

// devToken asks gateway base for user's dev token.
func (p *Parley) devToken(ctx context.Context, base, user string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := p.postJSON(ctx, base, "/v1/dev/token", "", map[string]string{"user_id": user}, &out); err != nil {
		return "", fmt.Errorf("dev token for %s: %w (is the gateway started with --dev-auth?)", user, err)
	}
	if out.Token == "" {
		return "", fmt.Errorf("dev token for %s from %s: empty token", user, base)
	}
	return out.Token, nil
}

// SetupDirect finds a pair whose direct conversation is on the group's partition
// (at most 64 pairs), then connects A to the first gateway and B to the second.
func (p *Parley) SetupDirect(ctx context.Context, sink Sink) (*DirectSetup, error) {
	parts := max(p.Partitions, 1)
	info := &DirectSetup{Group: p.conv, Partition: &PartitionInfo{Partitions: parts, Group: partitionOf(p.conv, parts), Direct: -1}}
	gwA, gwB := p.Gateways[0], p.Gateways[min(1, len(p.Gateways)-1)]
	var tokenA string
	for try := 1; try <= 64 && info.Conversation == ""; try++ {
		suffix := ""
		if try > 1 {
			suffix = strconv.Itoa(try)
		}
		a, b := p.DirectPrefix+"-da"+suffix, p.DirectPrefix+"-db"+suffix
		info.From, info.To, info.Tries = a, b, try
		token, err := p.devToken(ctx, gwA, a)
		if err != nil {
			return info, fmt.Errorf("parley: direct pair: %w", err)
		}
		var out struct {
			ConversationID string `json:"conversation_id"`
		}
		if err := p.postJSON(ctx, gwA, "/v1/conversations", token,
			map[string]any{"type": "direct", "members": []string{b}}, &out); err != nil {
			return info, fmt.Errorf("parley: create direct conversation %s-%s: %w", a, b, err)
		}
		if out.ConversationID == "" {
			return info, fmt.Errorf("parley: create direct conversation: no conversation_id in the answer")
		}
		if partitionOf(out.ConversationID, parts) == info.Partition.Group {
			info.Conversation, info.Partition.Direct, tokenA = out.ConversationID, info.Partition.Group, token
		}
	}
	if info.Conversation == "" {
		return info, fmt.Errorf("parley: no direct conversation on the group's partition %d of %d after %d pairs",
			info.Partition.Group, parts, info.Tries)
	}
	tokenB, err := p.devToken(ctx, gwB, info.To)
	if err != nil {
		return info, fmt.Errorf("parley: direct pair: %w", err)
	}
	logf("parley: direct conversation %s (%s -> %s) on events partition %d of %d, as the group %s (partition %d), after %d pair(s)",
		info.Conversation, info.From, info.To, info.Partition.Direct, parts, p.conv, info.Partition.Group, info.Tries)
	p.direct = info.Conversation
	da, err := p.dial(ctx, gwA, tokenA, p.direct, roleDirectFrom, sink)
	if err != nil {
		return info, fmt.Errorf("parley: connect %s to %s: %w", info.From, gwA, err)
	}
	db, err := p.dial(ctx, gwB, tokenB, p.direct, roleDirectTo, sink)
	if err != nil {
		da.close()
		return info, fmt.Errorf("parley: connect %s to %s: %w", info.To, gwB, err)
	}
	p.da, p.db = da, db
	return info, nil
}

type parleyFrame struct {
	Type           string `json:"type"`
	ClientMsgID    string `json:"client_msg_id"`
	ConversationID string `json:"conversation_id"`
	Body           string `json:"body"`
	Live           bool   `json:"live"`
	Code           string `json:"code"`
	Message        string `json:"message"`
}

// dial opens a session that counts the messages of conv and returns once it is live;
// sub is the subscriber index or a role (rolePublisher, roleDirectFrom, roleDirectTo).
func (p *Parley) dial(ctx context.Context, base, token, conv string, sub int, sink Sink) (*parleyConn, error) {
	wsu, err := wsURL(base, "/v1/ws")
	if err != nil {
		return nil, err
	}
	// ready live:true may take up to twice the presence TTL (2 x 30 s) on a cold gateway.
	dctx, cancel := context.WithTimeout(ctx, 65*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, wsu+"?token="+url.QueryEscape(token), &websocket.DialOptions{
		HTTPClient:      p.http,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	for {
		_, data, err := ws.Read(dctx)
		if err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("waiting for ready live:true: %w", err)
		}
		var f parleyFrame
		if err := json.Unmarshal(data, &f); err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("bad frame %q: %w", data, err)
		}
		if f.Type == "ready" && f.Live {
			break
		}
		if f.Type == "error" {
			ws.CloseNow()
			return nil, fmt.Errorf("error before ready: %s %s", f.Code, f.Message)
		}
	}
	rctx, stop := context.WithCancel(context.Background())
	c := &parleyConn{ws: ws, conv: conv, stop: stop}
	go c.read(rctx, sub, sink)
	return c, nil
}

var parleyMessagePrefix = []byte(`{"type":"message"`)

// parleyMessage finds the conversation and the body of a `message` frame without
// decoding it all (the gateway writes "type" first, the conversation before the body,
// and ids and bodies of the benchmark need no escapes); ok is false for any other
// frame, or one the fast path cannot read.
func parleyMessage(data []byte) (conv, body string, ok bool) {
	if !bytes.HasPrefix(data, parleyMessagePrefix) {
		return "", "", false
	}
	i := bytes.Index(data, []byte(`"body":"`))
	if i < 0 {
		return "", "", false
	}
	conv, ok = jsonString(data[:i], []byte(`"conversation_id":"`))
	if !ok {
		return "", "", false
	}
	body, ok = jsonString(data[i:], []byte(`"body":"`))
	return conv, body, ok
}

// jsonString is the string value after key (which ends with the opening quote) in
// data, if it has no escapes.
func jsonString(data, key []byte) (string, bool) {
	i := bytes.Index(data, key)
	if i < 0 {
		return "", false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func (c *parleyConn) read(ctx context.Context, sub int, sink Sink) {
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			if !c.closing.Load() {
				roleClosed(sink, sub, err)
			}
			return
		}
		at := time.Now()
		if conv, body, ok := parleyMessage(data); ok {
			c.message(conv, body, sub, sink, at)
			continue
		}
		var f parleyFrame
		if err := json.Unmarshal(data, &f); err != nil {
			roleOther(sink, sub, "undecodable frame")
			continue
		}
		switch f.Type {
		case "message":
			c.message(f.ConversationID, f.Body, sub, sink, at)
		case "sent":
			roleAck(sink, sub, f.ClientMsgID, "", at)
		case "error":
			if f.ClientMsgID != "" {
				roleAck(sink, sub, f.ClientMsgID, f.Code, at)
			} else {
				roleOther(sink, sub, "error "+f.Code)
			}
		case "ready", "pong", "receipt", "receipt_counts", "typing":
		default:
			roleOther(sink, sub, "frame "+f.Type)
		}
	}
}

// message counts a message of the connection's conversation read by a subscriber
// (or B); group messages never count for the pair, nor direct ones for the group.
func (c *parleyConn) message(conv, body string, sub int, sink Sink, at time.Time) {
	switch {
	case conv != c.conv:
		roleOther(sink, sub, "message of another conversation")
	case sub >= 0:
		sink.Delivery(sub, body, at)
	case sub == roleDirectTo:
		sink.DirectDelivery(body, at)
	case sub == roleDirectFrom:
		sink.DirectOther("message to the sender")
	default:
		sink.Other("message to the publisher")
	}
}

func (p *Parley) Publish(ctx context.Context, key, body string) error {
	// key and body are [0-9.x] only, conversation ids are UUIDs: no JSON escaping needed.
	frame := `{"type":"send","client_msg_id":"` + key + `","conversation_id":"` + p.conv + `","body":"` + body + `"}`
	return p.pub.ws.Write(ctx, websocket.MessageText, []byte(frame))
}

func (p *Parley) PublishDirect(ctx context.Context, key, body string) error {
	if p.da == nil {
		return fmt.Errorf("no direct pair")
	}
	frame := `{"type":"send","client_msg_id":"` + key + `","conversation_id":"` + p.direct + `","body":"` + body + `"}`
	return p.da.ws.Write(ctx, websocket.MessageText, []byte(frame))
}

func (p *Parley) Close() {
	var fs []func()
	for _, c := range append(p.conns, p.da, p.db) {
		if c != nil {
			fs = append(fs, c.close)
		}
	}
	closeAll(fs, 10*time.Second)
	p.conns, p.pub, p.da, p.db = nil, nil, nil, nil
}

func (c *parleyConn) close() {
	c.closing.Store(true)
	c.ws.Close(websocket.StatusNormalClosure, "")
	c.stop()
}
