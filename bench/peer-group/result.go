package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// PhaseResult is what one phase measured. Message counts are of the messages
// scheduled inside the measurement window.
type PhaseResult struct {
	System      string  `json:"system"`
	Kind        string  `json:"kind"`
	Rate        float64 `json:"rate"`
	Subscribers int     `json:"subscribers"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`
	GraceS      float64 `json:"grace_s"`

	Scheduled int64 `json:"scheduled"`
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Errors    int64 `json:"errors"`
	Unacked   int64 `json:"unacked"`
	HeldByAll int64 `json:"held_by_all"`
	// Deliveries read of the window's messages; Lost: deliveries of the window's
	// messages (sent and not refused) that no subscriber had read by the end of grace.
	Deliveries int64 `json:"deliveries"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`

	// Receipts read inside the window (of any message) / window, and what the rate asks.
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	TargetPerSec     float64 `json:"target_deliveries_per_s"`

	HeldAll Percentiles `json:"held_by_all_latency"`  // scheduled -> read by the last subscriber
	Each    Percentiles `json:"per_delivery_latency"` // scheduled -> read, per delivery
	Ack     Percentiles `json:"ack_latency"`          // scheduled -> ack at the publisher
	GenLag  Percentiles `json:"generator_lag"`        // scheduled -> written

	SendFailures int64            `json:"send_failures"`
	Disconnects  int64            `json:"disconnects"`
	Stale        int64            `json:"stale_frames"`
	Other        map[string]int64 `json:"other,omitempty"`
	GenCPU       float64          `json:"generator_cpu_cores"` // CPU seconds of this process / wall seconds

	Pass       bool   `json:"pass"`
	FailReason string `json:"fail_reason,omitempty"`

	// The direct pair alongside the group (nil: none); it does not decide Pass.
	Direct *DirectResult `json:"direct,omitempty"`
}

// DirectResult is what the direct (1:1) pair measured in a phase; counts are of the
// messages scheduled inside the measurement window.
type DirectResult struct {
	Rate      float64 `json:"rate"`
	Scheduled int64   `json:"scheduled"`
	Sent      int64   `json:"sent"`
	Acked     int64   `json:"acked"`
	Errors    int64   `json:"errors"`
	Unacked   int64   `json:"unacked"`
	Received  int64   `json:"received"`
	// Lost: sent, not refused, and not read by B by the end of grace.
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`

	Latency Percentiles `json:"latency"`     // scheduled -> read by B
	Ack     Percentiles `json:"ack_latency"` // scheduled -> ack at A

	SendFailures int64            `json:"send_failures"`
	Stale        int64            `json:"stale_frames"`
	Other        map[string]int64 `json:"other,omitempty"`
}

func (r *recorder) collect(ph *phase, cfg PhaseConfig, disconnects int64, cpu float64) PhaseResult {
	res := PhaseResult{
		Kind: cfg.Kind, Rate: cfg.Rate, Subscribers: ph.subs,
		WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(), GraceS: cfg.Grace.Seconds(),
	}
	for j := range ph.recs {
		m := &ph.recs[j]
		if m.sched < ph.from || m.sched >= ph.to {
			continue
		}
		res.Scheduled++
		got := int64(m.got.Load())
		res.Deliveries += got
		if got == int64(ph.subs) {
			res.HeldByAll++
		}
		if m.sent.Load() == 0 {
			continue
		}
		res.Sent++
		switch {
		case m.ack.Load() == 0:
			res.Unacked++
		case m.err.Load():
			res.Errors++
			continue
		default:
			res.Acked++
		}
		res.Lost += int64(ph.subs) - got
	}
	d := cfg.Duration.Seconds()
	res.DeliveriesPerSec = math.Round(float64(ph.inWindow.Load())/d*10) / 10
	res.TargetPerSec = cfg.Rate * float64(ph.subs)
	res.HeldAll = ph.heldAll.summary()
	res.Each = ph.each.summary()
	res.Ack = ph.ackLat.summary()
	res.GenLag = ph.genLag.summary()
	res.Duplicates = ph.dups.Load()
	res.SendFailures = ph.sendFailures.Load()
	res.Disconnects = disconnects
	res.Stale = r.stale.Load() // before or during this phase: late frames of an earlier one
	res.GenCPU = math.Round(cpu*100) / 100
	r.mu.Lock()
	if len(r.other) > 0 {
		res.Other = r.other
	}
	r.mu.Unlock()

	var why []string
	add := func(cond bool, format string, a ...any) {
		if cond {
			why = append(why, fmt.Sprintf(format, a...))
		}
	}
	add(res.Scheduled == 0, "nothing scheduled")
	add(res.Lost > 0, "lost %d", res.Lost)
	add(res.Sent < res.Scheduled, "unsent %d", res.Scheduled-res.Sent)
	add(res.Unacked > 0, "unacked %d", res.Unacked)
	add(res.Errors > 0, "errors %d", res.Errors)
	add(res.Disconnects > 0, "disconnects %d", res.Disconnects)
	slo := float64(cfg.SLO) / 1e6
	add(res.Each.N > 0 && res.Each.P99 >= slo, "p99 %.1f ms >= %g ms", res.Each.P99, slo)
	res.Pass = len(why) == 0
	res.FailReason = strings.Join(why, ", ")
	if ph.direct != nil {
		res.Direct = r.collectDirect(ph)
	}
	return res
}

func (r *recorder) collectDirect(ph *phase) *DirectResult {
	d := ph.direct
	res := &DirectResult{Rate: d.rate}
	for j := range d.recs {
		m := &d.recs[j]
		if m.sched < ph.from || m.sched >= ph.to {
			continue
		}
		res.Scheduled++
		got := m.got.Load() > 0
		if got {
			res.Received++
		}
		if m.sent.Load() == 0 {
			continue
		}
		res.Sent++
		switch {
		case m.ack.Load() == 0:
			res.Unacked++
		case m.err.Load():
			res.Errors++
			continue
		default:
			res.Acked++
		}
		if !got {
			res.Lost++
		}
	}
	res.Latency = d.lat.summary()
	res.Ack = d.ackLat.summary()
	res.Duplicates = d.dups.Load()
	res.SendFailures = d.sendFailures.Load()
	res.Stale = r.directStale.Load()
	r.mu.Lock()
	if len(r.directOther) > 0 {
		res.Other = r.directOther
	}
	r.mu.Unlock()
	return res
}

func (r PhaseResult) oneLine() string {
	s := fmt.Sprintf("  -> %s %s %.0f/s: sched %d sent %d acked %d held-by-all %d lost %d dup %d | held-by-all p50 %.2f p99 %.2f ms | per delivery p50 %.2f p99 %.2f ms | ack p99 %.2f ms | gen lag p99 %.2f ms | %.0f deliveries/s of %.0f | gen CPU %.2f",
		r.System, r.Kind, r.Rate, r.Scheduled, r.Sent, r.Acked, r.HeldByAll, r.Lost, r.Duplicates,
		r.HeldAll.P50, r.HeldAll.P99, r.Each.P50, r.Each.P99, r.Ack.P99, r.GenLag.P99,
		r.DeliveriesPerSec, r.TargetPerSec, r.GenCPU)
	if o := r.others(); o != "" {
		s += " | " + o
	}
	if d := r.Direct; d != nil {
		s += fmt.Sprintf(" | direct %g/s: sched %d sent %d acked %d received %d lost %d, p50 %.2f p99 %.2f max %.2f ms",
			d.Rate, d.Scheduled, d.Sent, d.Acked, d.Received, d.Lost, d.Latency.P50, d.Latency.P99, d.Latency.Max)
		if o := d.others(); o != "" {
			s += " (" + o + ")"
		}
	}
	if r.Pass {
		return s + " | PASS"
	}
	return s + " | FAIL: " + r.FailReason
}

func (r PhaseResult) others() string { return othersText(r.Other, r.Stale) }

func (d DirectResult) others() string {
	s := othersText(d.Other, d.Stale)
	if d.Duplicates > 0 {
		s = strings.TrimPrefix(s+fmt.Sprintf(", dup ×%d", d.Duplicates), ", ")
	}
	return s
}

func othersText(other map[string]int64, stale int64) string {
	keys := make([]string, 0, len(other))
	for k := range other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, other[k]))
	}
	if stale > 0 {
		parts = append(parts, fmt.Sprintf("stale ×%d", stale))
	}
	return strings.Join(parts, ", ")
}
