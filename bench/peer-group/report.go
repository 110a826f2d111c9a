package main

import (
	"fmt"
	"io"
	"strings"
)

func ms(v float64) string { return fmt.Sprintf("%.2f", v) }

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("×%.2f", a/b)
}

// best is the saturation step with the most deliveries/s among those that passed.
func (s SystemResult) best() *PhaseResult {
	var b *PhaseResult
	for i := range s.Saturation {
		r := &s.Saturation[i]
		if r.Pass && (b == nil || r.DeliveriesPerSec > b.DeliveriesPerSec) {
			b = r
		}
	}
	return b
}

// summary: held-by-all p50/p99, per-delivery p50/p99, direct (1:1) p99 (latency phase),
// max passing deliveries/s.
func (s SystemResult) summary() [6]float64 {
	var v [6]float64
	if l := s.Latency; l != nil {
		v[0], v[1], v[2], v[3] = l.HeldAll.P50, l.HeldAll.P99, l.Each.P50, l.Each.P99
		if l.Direct != nil {
			v[4] = l.Direct.Latency.P99
		}
	}
	if b := s.best(); b != nil {
		v[5] = b.DeliveriesPerSec
	}
	return v
}

// directCols: the direct pair's p50, p99 and lost of a phase ("–" without a pair).
func directCols(r PhaseResult) (p50, p99, lost string) {
	d := r.Direct
	if d == nil {
		return "–", "–", "–"
	}
	p50, p99, lost = ms(d.Latency.P50), ms(d.Latency.P99), fmt.Sprintf("%d", d.Lost)
	if d.Latency.N == 0 {
		p50, p99 = "–", "–"
	}
	return p50, p99, lost
}

// msOrDash is ms(v), or "–" for no figure.
func msOrDash(v float64) string {
	if v == 0 {
		return "–"
	}
	return ms(v)
}

func printReport(w io.Writer, o Output, cfg Config) {
	fmt.Fprintf(w, "# Large-group broadcast fanout: Parley vs Centrifugo, %s\n\n", o.StartedAt.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "machine: %s; load average %v at start, %v at end; everything (servers, broker, load generator) shares it\n\n",
		o.Machine, o.Config["load_average_at_start"], o.Config["load_average_at_end"])
	fmt.Fprintf(w, "workload: %d subscribers (one WebSocket each) + 1 publisher; Parley group of %d members (the rest offline); %d-byte bodies; "+
		"latency phase %g msgs/s, warm-up %s, window %s; saturation at %s msgs/s, warm-up %s, window %s, grace %s. "+
		"Latency runs from each message's scheduled send (open loop) to a subscriber reading it.",
		cfg.Online, cfg.Members, cfg.Body, cfg.Rate, cfg.Warmup, cfg.Duration, joinRates(cfg.SatRates),
		cfg.SatWarmup, cfg.SatDuration, cfg.SatGrace)
	if cfg.DirectRate > 0 {
		fmt.Fprintf(w, " In every phase a direct (1:1) pair runs alongside: A sends to B open loop at %g msgs/s, timed from the "+
			"scheduled send to B reading it, in the same window (Parley: a direct conversation on the group's partition of `events`, "+
			"%d partitions; Centrifugo: a channel of its own).", cfg.DirectRate, cfg.Partitions)
	}
	fmt.Fprint(w, "\n\n")
	for _, s := range o.Systems {
		fmt.Fprintf(w, "- %s: %s, setup %.1fs", s.System, strings.Join(s.Targets, " "), s.SetupS)
		if s.SetupError != "" {
			fmt.Fprintf(w, ", **setup failed**: %s", s.SetupError)
		}
		if d := s.Direct; d != nil {
			fmt.Fprintf(w, ", direct pair %s → %s on %s", d.From, d.To, d.Conversation)
			if p := d.Partition; p != nil {
				fmt.Fprintf(w, " (events partition %d of %d; the group's: %d)", p.Direct, p.Partitions, p.Group)
			}
			if d.Error != "" {
				fmt.Fprintf(w, ", **direct pair failed** (the group ran without it): %s", d.Error)
			}
		}
		if s.Stopped != "" {
			fmt.Fprintf(w, ", saturation stopped: %s", s.Stopped)
		}
		fmt.Fprintln(w)
	}

	slo := float64(cfg.SLO) / 1e6
	fmt.Fprintf(w, "\n### Summary (ms; max deliveries/s = best saturation rate with 0 loss and p99 per delivery < %g ms)\n\n", slo)
	fmt.Fprintln(w, "| system | held by all p50 | held by all p99 | per delivery p50 | per delivery p99 | 1:1 p99 (latency phase) | max deliveries/s | at msgs/s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range o.Systems {
		if s.Latency == nil {
			fmt.Fprintf(w, "| %s | – | – | – | – | – | – | setup failed |\n", s.System)
			continue
		}
		v := s.summary()
		at := "none passed"
		if b := s.best(); b != nil {
			at = fmt.Sprintf("%.0f", b.Rate)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.0f | %s |\n", s.System, ms(v[0]), ms(v[1]), ms(v[2]), ms(v[3]), msOrDash(v[4]), v[5], at)
	}
	if p, c := find(o, "parley"), find(o, "centrifugo"); p != nil && c != nil {
		a, b := p.summary(), c.summary()
		fmt.Fprintf(w, "| **parley ÷ centrifugo** | %s | %s | %s | %s | %s | %s | |\n",
			ratio(a[0], b[0]), ratio(a[1], b[1]), ratio(a[2], b[2]), ratio(a[3], b[3]), ratio(a[4], b[4]), ratio(a[5], b[5]))
		fmt.Fprintln(w, "\nLatency ratios above 1: Parley is slower; deliveries/s ratio above 1: Parley delivered more.")
	}

	fmt.Fprintln(w, "\n### Every phase")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| system | phase | msgs/s | target deliv/s | deliveries/s | sched | sent | acked | held by all | lost | dup | held-all p50 | held-all p99 | held-all max | deliv p50 | deliv p90 | deliv p99 | deliv max | ack p99 | direct p50 | direct p99 | direct lost | gen lag p99 | gen CPU | pass |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, row := range phaseRows(o) {
		for _, r := range row {
			pass := "✅"
			if !r.Pass {
				pass = "❌ " + r.FailReason
			}
			if o := r.others(); o != "" {
				pass += " (" + o + ")"
			}
			if d := r.Direct; d != nil {
				if o := d.others(); o != "" {
					pass += " (direct: " + o + ")"
				}
				if d.Sent < d.Scheduled || d.Unacked > 0 || d.Errors > 0 {
					pass += fmt.Sprintf(" (direct: %d of %d sent, %d unacked, %d refused)", d.Sent, d.Scheduled, d.Unacked, d.Errors)
				}
			}
			dp50, dp99, dlost := directCols(r)
			fmt.Fprintf(w, "| %s | %s | %g | %.0f | %.0f | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %s |\n",
				r.System, r.Kind, r.Rate, r.TargetPerSec, r.DeliveriesPerSec, r.Scheduled, r.Sent, r.Acked, r.HeldByAll,
				r.Lost, r.Duplicates, ms(r.HeldAll.P50), ms(r.HeldAll.P99), ms(r.HeldAll.Max),
				ms(r.Each.P50), ms(r.Each.P90), ms(r.Each.P99), ms(r.Each.Max), ms(r.Ack.P99),
				dp50, dp99, dlost, ms(r.GenLag.P99), r.GenCPU, pass)
		}
		if len(row) == 2 && row[0].System == "parley" && row[1].System == "centrifugo" {
			a, b := row[0], row[1]
			var ad, bd DirectResult
			if a.Direct != nil && b.Direct != nil {
				ad, bd = *a.Direct, *b.Direct
			}
			fmt.Fprintf(w, "| **parley ÷ centrifugo** | %s | %g | | %s | | | | | | | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | | | | |\n",
				a.Kind, a.Rate, ratio(a.DeliveriesPerSec, b.DeliveriesPerSec),
				ratio(a.HeldAll.P50, b.HeldAll.P50), ratio(a.HeldAll.P99, b.HeldAll.P99), ratio(a.HeldAll.Max, b.HeldAll.Max),
				ratio(a.Each.P50, b.Each.P50), ratio(a.Each.P90, b.Each.P90), ratio(a.Each.P99, b.Each.P99),
				ratio(a.Each.Max, b.Each.Max), ratio(a.Ack.P99, b.Ack.P99),
				ratio(ad.Latency.P50, bd.Latency.P50), ratio(ad.Latency.P99, bd.Latency.P99))
		}
	}
	fmt.Fprintln(w, "\nheld by all: until the last subscriber read the message; deliv: per delivery; lost: deliveries not read by the end of grace; "+
		"direct: the 1:1 pair alongside the group, scheduled send → read by B, lost = sent and not read by the end of grace (it does not decide pass); "+
		"gen lag: how late the generator wrote a publish; gen CPU: cores the load generator used (when it nears the machine's cores, the figures say more about the machine than the servers).")
	fmt.Fprintln(w)
}

func find(o Output, name string) *SystemResult {
	for i := range o.Systems {
		if o.Systems[i].System == name {
			return &o.Systems[i]
		}
	}
	return nil
}

// phaseRows groups the phases of every system by (kind, rate), in run order.
func phaseRows(o Output) [][]PhaseResult {
	type k struct {
		kind string
		rate float64
	}
	var keys []k
	by := map[k][]PhaseResult{}
	add := func(r PhaseResult) {
		key := k{r.Kind, r.Rate}
		if _, ok := by[key]; !ok {
			keys = append(keys, key)
		}
		by[key] = append(by[key], r)
	}
	for _, s := range o.Systems {
		if s.Latency != nil {
			add(*s.Latency)
		}
		for _, r := range s.Saturation {
			add(r)
		}
	}
	rows := make([][]PhaseResult, 0, len(keys))
	for _, key := range keys {
		rows = append(rows, by[key])
	}
	return rows
}

func joinRates(r []float64) string {
	if len(r) == 0 {
		return "(none)"
	}
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = fmt.Sprintf("%g", v)
	}
	return strings.Join(s, ",")
}
