package main

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// System is one server under test, seen through one group: a publisher connection
// and `online` subscriber connections (subscriber i is index i of every callback).
type System interface {
	Name() string
	// Setup creates the users and the group (or channel) and opens every connection,
	// ready to receive. Connections report what they read to sink from then on.
	Setup(ctx context.Context, sink Sink) error
	// Publish writes one message to the group from the publisher and returns once the
	// frame is written; the ack comes later through Sink.Ack(key, …).
	Publish(ctx context.Context, key, body string) error
	// Close closes every connection (bounded in time).
	Close()
}

// Sink receives what the connections read; every callback is called from a
// connection's reader goroutine with the time taken right after the WebSocket frame
// came off the socket.
type Sink interface {
	// Delivery: subscriber sub read a group message whose body is body.
	Delivery(sub int, body string, at time.Time)
	// Ack: the server answered the publish identified by key; code is "" on success.
	Ack(key, code string, at time.Time)
	// Other: something the workload does not expect or only counts.
	Other(what string)
	// Closed: subscriber sub's connection ended (sub is -1 for the publisher).
	Closed(sub int, err error)
}

// The key of message seq of phase ph is "<ph>.<seq>" (Parley's client_msg_id; the
// publisher's own map for Centrifugo). Its body is
// "<ph>.<seq>.<scheduled send, unix ns>.xxx…": characters no JSON string escapes,
// so frames can be built and read without a JSON encoder on the hot path.
func msgKey(ph, seq int) string { return strconv.Itoa(ph) + "." + strconv.Itoa(seq) }

func msgBody(key string, sched time.Time, size int) string {
	b := key + "." + strconv.FormatInt(sched.UnixNano(), 10)
	if size > len(b)+1 {
		b += "." + strings.Repeat("x", size-len(b)-1)
	}
	return b
}

// parseBody reads phase and seq from the start of a body (or a key).
func parseBody(s string) (ph, seq int, ok bool) {
	var v [2]int
	i := 0
	for f := 0; f < 2; f++ {
		start, n := i, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' && i-start < 9 {
			n = n*10 + int(s[i]-'0')
			i++
		}
		if i == start {
			return 0, 0, false
		}
		v[f] = n
		if f == 0 {
			if i >= len(s) || s[i] != '.' {
				return 0, 0, false
			}
			i++
		}
	}
	if i < len(s) && s[i] != '.' {
		return 0, 0, false
	}
	return v[0], v[1], true
}
