package main

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// System is one server under test, seen through one group: a publisher connection
// and `online` subscriber connections (subscriber i is index i of every callback),
// and next to the group a direct (1:1) pair: user A sends, user B reads.
type System interface {
	Name() string
	// Setup creates the users and the group (or channel) and opens every connection,
	// ready to receive. Connections report what they read to sink from then on.
	Setup(ctx context.Context, sink Sink) error
	// SetupDirect, after Setup, creates the direct pair and opens its two connections;
	// they report through sink's Direct… callbacks. It describes the pair even when it
	// fails (the group then runs without it).
	SetupDirect(ctx context.Context, sink Sink) (*DirectSetup, error)
	// Publish writes one message to the group from the publisher and returns once the
	// frame is written; the ack comes later through Sink.Ack(key, …).
	Publish(ctx context.Context, key, body string) error
	// PublishDirect writes one message from A to B; the ack comes through Sink.DirectAck.
	PublishDirect(ctx context.Context, key, body string) error
	// Close closes every connection (bounded in time).
	Close()
}

// DirectSetup describes the direct pair of a system.
type DirectSetup struct {
	From         string         `json:"from"`         // A, the sender
	To           string         `json:"to"`           // B, the reader
	Conversation string         `json:"conversation"` // Parley conversation id, or Centrifugo channel
	Group        string         `json:"group"`        // the group's conversation id or channel
	Partition    *PartitionInfo `json:"partition,omitempty"`
	Tries        int            `json:"tries,omitempty"` // pairs tried until one landed on the group's partition
	Error        string         `json:"error,omitempty"` // setup failed: the group ran without the pair
}

// PartitionInfo: Parley's `events` partitions of the group and of the direct conversation.
type PartitionInfo struct {
	Partitions int `json:"partitions"`
	Group      int `json:"group"`
	Direct     int `json:"direct"`
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
	// DirectDelivery: B read a direct message whose body is body.
	DirectDelivery(body string, at time.Time)
	// DirectAck: the server answered A's send identified by key; code is "" on success.
	DirectAck(key, code string, at time.Time)
	// DirectOther: something about the direct pair only (errors, closes, echoes),
	// counted apart from the group's so the pair never fails or stops the group's run.
	DirectOther(what string)
}

// Roles of a connection besides subscriber indexes (>= 0).
const (
	rolePublisher  = -1
	roleDirectFrom = -2 // A
	roleDirectTo   = -3 // B
)

func isDirect(role int) bool { return role == roleDirectFrom || role == roleDirectTo }

// roleAck, roleOther and roleClosed route a connection's callbacks by its role.
func roleAck(sink Sink, role int, key, code string, at time.Time) {
	if isDirect(role) {
		sink.DirectAck(key, code, at)
	} else {
		sink.Ack(key, code, at)
	}
}

func roleOther(sink Sink, role int, what string) {
	if isDirect(role) {
		sink.DirectOther(what)
	} else {
		sink.Other(what)
	}
}

func roleClosed(sink Sink, role int, err error) {
	switch role {
	case roleDirectFrom:
		sink.DirectOther("sender closed")
	case roleDirectTo:
		sink.DirectOther("receiver closed")
	default:
		sink.Closed(role, err)
	}
}

// The key of message seq of phase ph is "<ph>.<seq>" (Parley's client_msg_id; the
// publisher's own map for Centrifugo). Its body is
// "<ph>.<seq>.<scheduled send, unix ns>.xxx…": characters no JSON string escapes,
// so frames can be built and read without a JSON encoder on the hot path.
func msgKey(ph, seq int) string { return strconv.Itoa(ph) + "." + strconv.Itoa(seq) }

// directKey is the key of the direct pair's message seq of phase ph: "d<ph>.<seq>",
// so its body "d<ph>.<seq>.<scheduled send>.xxx…" is never taken for a group message.
func directKey(ph, seq int) string { return "d" + msgKey(ph, seq) }

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
