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

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

	http  *http.Client
	conv  string
	pub   *parleyConn
	conns []*parleyConn
}

func (p *Parley) Name() string { return "parley" }

type parleyConn struct {
	ws      *websocket.Conn
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
		var out struct {
			Token string `json:"token"`
		}
		g := p.gatewayOf(i)
		if err := p.postJSON(ctx, g, "/v1/dev/token", "", map[string]string{"user_id": p.Users[i]}, &out); err != nil {
			return fmt.Errorf("dev token for %s: %w (is the gateway started with --dev-auth?)", p.Users[i], err)
		}
		if out.Token == "" {
			return fmt.Errorf("dev token for %s from %s: empty token", p.Users[i], g)
		}
		tokens[i] = out.Token
		return nil
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
		c, err := p.dial(ctx, p.gatewayOf(i), tokens[i], i-1, sink)
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

type parleyFrame struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"client_msg_id"`
	Body        string `json:"body"`
	Live        bool   `json:"live"`
	Code        string `json:"code"`
	Message     string `json:"message"`
}

// dial opens a session and returns once it is live; sub is -1 for the publisher.
func (p *Parley) dial(ctx context.Context, base, token string, sub int, sink Sink) (*parleyConn, error) {
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
	c := &parleyConn{ws: ws, stop: stop}
	go c.read(rctx, sub, sink)
	return c, nil
}

var parleyMessagePrefix = []byte(`{"type":"message"`)

// parleyMessageBody finds the body of a `message` frame without decoding it all
// (the gateway writes "type" first and bodies of the benchmark need no escapes);
// ok is false for any other frame, or one the fast path cannot read.
func parleyMessageBody(data []byte) (string, bool) {
	if !bytes.HasPrefix(data, parleyMessagePrefix) {
		return "", false
	}
	i := bytes.Index(data, []byte(`"body":"`))
	if i < 0 {
		return "", false
	}
	rest := data[i+8:]
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
				sink.Closed(sub, err)
			}
			return
		}
		at := time.Now()
		if body, ok := parleyMessageBody(data); ok && sub >= 0 {
			sink.Delivery(sub, body, at)
			continue
		}
		var f parleyFrame
		if err := json.Unmarshal(data, &f); err != nil {
			sink.Other("undecodable frame")
			continue
		}
		switch f.Type {
		case "message":
			if sub < 0 {
				sink.Other("message to the publisher")
			} else {
				sink.Delivery(sub, f.Body, at)
			}
		case "sent":
			sink.Ack(f.ClientMsgID, "", at)
		case "error":
			if f.ClientMsgID != "" {
				sink.Ack(f.ClientMsgID, f.Code, at)
			} else {
				sink.Other("error " + f.Code)
			}
		case "ready", "pong", "receipt", "receipt_counts", "typing":
		default:
			sink.Other("frame " + f.Type)
		}
	}
}

func (p *Parley) Publish(ctx context.Context, key, body string) error {
	// key and body are [0-9.x] only, conversation ids are UUIDs: no JSON escaping needed.
	frame := `{"type":"send","client_msg_id":"` + key + `","conversation_id":"` + p.conv + `","body":"` + body + `"}`
	return p.pub.ws.Write(ctx, websocket.MessageText, []byte(frame))
}

func (p *Parley) Close() {
	var fs []func()
	for _, c := range p.conns {
		if c != nil {
			fs = append(fs, c.close)
		}
	}
	closeAll(fs, 10*time.Second)
	p.conns, p.pub = nil, nil
}

func (c *parleyConn) close() {
	c.closing.Store(true)
	c.ws.Close(websocket.StatusNormalClosure, "")
	c.stop()
}
