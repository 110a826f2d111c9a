package main

// Centrifugo v6, bidirectional JSON protocol (client protocol v2) on
// /connection/websocket; commands and replies are JSON objects, several per frame
// separated by '\n'.
//   -> {"id":1,"connect":{"token":JWT(HS256, sub=user)}}
//   -> {"id":2,"subscribe":{"channel":"<ns>:<channel>"}}   every subscriber and the publisher
//   -> {"id":N,"publish":{"channel":…,"data":{"b":BODY}}}   the publisher (allow_publish_for_subscriber)
//   <- {"id":N,"publish":{}} or {"id":N,"error":{"code":…,"message":…}}
//   <- {"push":{"channel":…,"pub":{"data":{"b":BODY},…}}}  to every subscriber, the
//      publisher included: its echo is dropped (counted as "echoes dropped").
//   <- {}  server ping: answered {} when connect said pong:true.
// The direct pair: A and B both subscribe to "direct:<run id>" (namespace "direct",
// set like "group"), A publishes over its own WebSocket and its echo is dropped, B reads.
// The namespaces must let clients subscribe without a subscription token and
// subscribers publish: see run-centrifugo.sh next to this file.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type Centrifugo struct {
	Base      string // http://127.0.0.1:8000
	Secret    string // client.token.hmac_secret_key
	Channel   string // "<namespace>:<name>"
	Users     []string
	Online    int
	DialWidth int
	// The direct pair: DirectUsers[0] (A) publishes to DirectChannel, DirectUsers[1] (B) reads.
	DirectChannel string
	DirectUsers   [2]string

	pub    *cfConn
	conns  []*cfConn
	da, db *cfConn
}

func (c *Centrifugo) Name() string { return "centrifugo" }

type cfConn struct {
	ws      *websocket.Conn
	channel string
	nextID  atomic.Uint32
	mu      sync.Mutex
	pending map[uint32]string // command id -> message key
	pong    bool
	stop    context.CancelFunc
	closing atomic.Bool
}

type cfError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

type cfReply struct {
	ID    uint32   `json:"id"`
	Error *cfError `json:"error"`
	Push  *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data struct {
				B string `json:"b"`
			} `json:"data"`
		} `json:"pub"`
		Disconnect *struct {
			Code   uint32 `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
	Connect *struct {
		Client string `json:"client"`
		Pong   bool   `json:"pong"`
	} `json:"connect"`
}

func (c *Centrifugo) Setup(ctx context.Context, sink Sink) error {
	if _, err := wsURL(c.Base, "/connection/websocket"); err != nil {
		return err
	}
	if err := probe(ctx, httpBase(c.Base)+"/health", "start it with bench/peer-group/run-centrifugo.sh or pass -only parley"); err != nil {
		return fmt.Errorf("centrifugo: %w", err)
	}
	if c.Online < 1 || len(c.Users) < c.Online+1 {
		return fmt.Errorf("centrifugo: need users > online >= 1")
	}
	n := c.Online + 1
	logf("centrifugo: connecting %d subscribers + 1 publisher to %s, %d at a time ...", c.Online, c.Channel, c.DialWidth)
	conns := make([]*cfConn, n)
	err := parallel(ctx, n, c.DialWidth, "connected", c.DialWidth, func(ctx context.Context, i int) error {
		cc, err := c.dial(ctx, c.Users[i], c.Channel, i-1, sink)
		if err != nil {
			return fmt.Errorf("centrifugo: user %s: %w", c.Users[i], err)
		}
		conns[i] = cc
		return nil
	})
	c.pub, c.conns = conns[0], conns
	if err != nil {
		c.Close()
		return err
	}
	return nil
}

// readReply reads frames until the reply with id comes.
func readReply(ctx context.Context, ws *websocket.Conn, id uint32) (*cfReply, error) {
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			var r cfReply
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, fmt.Errorf("bad reply %q: %w", line, err)
			}
			if r.ID == id {
				if r.Error != nil {
					return nil, fmt.Errorf("error %d: %s", r.Error.Code, r.Error.Message)
				}
				return &r, nil
			}
			if r.Push != nil && r.Push.Disconnect != nil {
				return nil, fmt.Errorf("disconnected %d: %s", r.Push.Disconnect.Code, r.Push.Disconnect.Reason)
			}
		}
	}
}

// SetupDirect connects A and B, each subscribed to the direct channel.
func (c *Centrifugo) SetupDirect(ctx context.Context, sink Sink) (*DirectSetup, error) {
	info := &DirectSetup{From: c.DirectUsers[0], To: c.DirectUsers[1], Conversation: c.DirectChannel, Group: c.Channel}
	if c.DirectChannel == "" || info.From == "" || info.To == "" {
		return info, fmt.Errorf("centrifugo: no direct channel or users")
	}
	logf("centrifugo: direct pair %s -> %s on %s", info.From, info.To, c.DirectChannel)
	da, err := c.dial(ctx, info.From, c.DirectChannel, roleDirectFrom, sink)
	if err != nil {
		return info, fmt.Errorf("centrifugo: direct user %s: %w", info.From, err)
	}
	db, err := c.dial(ctx, info.To, c.DirectChannel, roleDirectTo, sink)
	if err != nil {
		da.close()
		return info, fmt.Errorf("centrifugo: direct user %s: %w", info.To, err)
	}
	c.da, c.db = da, db
	return info, nil
}

// dial connects user and subscribes to channel; sub is the subscriber index or a role
// (rolePublisher, roleDirectFrom, roleDirectTo).
func (c *Centrifugo) dial(ctx context.Context, user, channel string, sub int, sink Sink) (*cfConn, error) {
	wsu, _ := wsURL(c.Base, "/connection/websocket")
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, wsu, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	fail := func(err error) (*cfConn, error) { ws.CloseNow(); return nil, err }
	token := hs256(c.Secret, map[string]any{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()})
	connect, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "peergroup"}})
	if err := ws.Write(dctx, websocket.MessageText, connect); err != nil {
		return fail(err)
	}
	r, err := readReply(dctx, ws, 1)
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	if r.Connect == nil {
		return fail(fmt.Errorf("connect: reply without result"))
	}
	subscribe, _ := json.Marshal(map[string]any{"id": 2, "subscribe": map[string]any{"channel": channel}})
	if err := ws.Write(dctx, websocket.MessageText, subscribe); err != nil {
		return fail(err)
	}
	if _, err := readReply(dctx, ws, 2); err != nil {
		return fail(fmt.Errorf("subscribe %s: %w (does the namespace exist and allow client subscriptions? see run-centrifugo.sh)", channel, err))
	}
	rctx, stop := context.WithCancel(context.Background())
	cc := &cfConn{ws: ws, channel: channel, pending: map[uint32]string{}, pong: r.Connect.Pong, stop: stop}
	cc.nextID.Store(2)
	go cc.read(rctx, sub, sink)
	return cc, nil
}

var cfPushPrefix = []byte(`{"push":{`)

// cfPush finds the channel and the body of a publication push without decoding it
// all (the channel comes first, our data is always {"b":"…"}, kept verbatim by
// Centrifugo); ok is false for anything else, or a line the fast path cannot read.
func cfPush(line []byte) (channel, body string, ok bool) {
	if !bytes.HasPrefix(line, cfPushPrefix) {
		return "", "", false
	}
	i := bytes.Index(line, []byte(`"pub":{`))
	if i < 0 {
		return "", "", false
	}
	if channel, ok = jsonString(line[:i], []byte(`"channel":"`)); !ok {
		return "", "", false
	}
	body, ok = jsonString(line[i:], []byte(`"data":{"b":"`))
	return channel, body, ok
}

func (cc *cfConn) read(ctx context.Context, sub int, sink Sink) {
	for {
		_, data, err := cc.ws.Read(ctx)
		if err != nil {
			if !cc.closing.Load() {
				roleClosed(sink, sub, err)
			}
			return
		}
		at := time.Now()
		for len(data) > 0 {
			var line []byte
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				line, data = data, nil
			}
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			cc.line(ctx, line, sub, sink, at)
		}
	}
}

func (cc *cfConn) line(ctx context.Context, line []byte, sub int, sink Sink, at time.Time) {
	if channel, body, ok := cfPush(line); ok {
		cc.publication(channel, body, sub, sink, at)
		return
	}
	if bytes.Equal(line, []byte("{}")) { // server ping
		if cc.pong {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = cc.ws.Write(wctx, websocket.MessageText, []byte("{}"))
			cancel()
		}
		return
	}
	var r cfReply
	if err := json.Unmarshal(line, &r); err != nil {
		roleOther(sink, sub, "undecodable reply")
		return
	}
	switch {
	case r.ID != 0:
		cc.mu.Lock()
		key, ok := cc.pending[r.ID]
		delete(cc.pending, r.ID)
		cc.mu.Unlock()
		if !ok {
			roleOther(sink, sub, "reply to an unknown id")
			return
		}
		code := ""
		if r.Error != nil {
			code = "cf" + strconv.Itoa(int(r.Error.Code))
		}
		roleAck(sink, sub, key, code, at)
	case r.Push != nil && r.Push.Pub != nil:
		cc.publication(r.Push.Channel, r.Push.Pub.Data.B, sub, sink, at)
	case r.Push != nil && r.Push.Disconnect != nil:
		roleOther(sink, sub, "disconnect push "+strconv.Itoa(int(r.Push.Disconnect.Code)))
	default:
		roleOther(sink, sub, "unexpected reply")
	}
}

// publication counts a publication of the connection's channel read by a subscriber
// (or B); the senders' own echoes are dropped, and group publications never count for
// the pair, nor direct ones for the group.
func (cc *cfConn) publication(channel, body string, sub int, sink Sink, at time.Time) {
	switch {
	case channel != cc.channel:
		roleOther(sink, sub, "publication of another channel")
	case sub >= 0:
		sink.Delivery(sub, body, at)
	case sub == roleDirectTo:
		sink.DirectDelivery(body, at)
	default:
		roleOther(sink, sub, "echoes dropped")
	}
}

func (c *Centrifugo) Publish(ctx context.Context, key, body string) error {
	return c.pub.publish(ctx, key, body)
}

func (c *Centrifugo) PublishDirect(ctx context.Context, key, body string) error {
	if c.da == nil {
		return fmt.Errorf("no direct pair")
	}
	return c.da.publish(ctx, key, body)
}

func (cc *cfConn) publish(ctx context.Context, key, body string) error {
	id := cc.nextID.Add(1)
	cc.mu.Lock()
	cc.pending[id] = key
	cc.mu.Unlock()
	// key and body are [0-9.x], the channel [A-Za-z0-9:._-]: no JSON escaping needed.
	frame := `{"id":` + strconv.FormatUint(uint64(id), 10) + `,"publish":{"channel":"` + cc.channel + `","data":{"b":"` + body + `"}}}`
	if err := cc.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		return err
	}
	return nil
}

func (c *Centrifugo) Close() {
	var fs []func()
	for _, cc := range append(c.conns, c.da, c.db) {
		if cc != nil {
			fs = append(fs, cc.close)
		}
	}
	closeAll(fs, 10*time.Second)
	c.conns, c.pub, c.da, c.db = nil, nil, nil, nil
}

func (cc *cfConn) close() {
	cc.closing.Store(true)
	cc.ws.Close(websocket.StatusNormalClosure, "")
	cc.stop()
}
