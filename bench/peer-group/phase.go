package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// One group message of a phase. Times are ns since the phase's origin; 0 is "not yet".
type msgRec struct {
	sched int64
	sent  atomic.Int64
	ack   atomic.Int64
	err   atomic.Bool
	got   atomic.Int32    // distinct subscribers that read it (direct: times B read it)
	seen  []atomic.Uint64 // which ones (a bit per subscriber; none for direct messages)
}

// phase is one open-loop run at a fixed rate: warm-up, measurement window, grace.
type phase struct {
	id       int
	origin   time.Time
	subs     int
	recs     []msgRec
	from, to int64 // measurement window, ns since origin

	each    *shardedHist // scheduled -> read, per delivery (messages scheduled in the window)
	heldAll *lockedHist  // scheduled -> read by the last subscriber, per message
	ackLat  *lockedHist  // scheduled -> ack at the publisher
	genLag  *lockedHist  // scheduled -> written by the generator

	inWindow                   atomic.Int64 // deliveries read inside the window (any message)
	dups, stale, sendFailures  atomic.Int64
	sentN, ackN, errN, allHeld atomic.Int64

	direct *directPhase // nil: no direct pair in this phase
}

// directPhase is the direct pair's stream of a phase: A sends open loop at its own
// rate on the same origin and window as the group, B reads.
type directPhase struct {
	rate   float64
	recs   []msgRec
	lat    *lockedHist // scheduled -> read by B (messages scheduled in the window)
	ackLat *lockedHist // scheduled -> ack at A

	dups, sendFailures, sentN, ackN, errN, gotN atomic.Int64
}

const originLead = int64(time.Second)

// recorder is the Sink of one system; it routes callbacks to the current phase.
type recorder struct {
	cur         atomic.Pointer[phase]
	stale       atomic.Int64
	disconnects atomic.Int64
	directStale atomic.Int64
	mu          sync.Mutex
	other       map[string]int64
	directOther map[string]int64
}

func newRecorder() *recorder {
	return &recorder{other: map[string]int64{}, directOther: map[string]int64{}}
}

func (r *recorder) lookup(key string) (*phase, *msgRec) {
	ph := r.cur.Load()
	if ph == nil {
		return nil, nil
	}
	id, seq, ok := parseBody(key)
	if !ok || id != ph.id || seq >= len(ph.recs) {
		return nil, nil
	}
	return ph, &ph.recs[seq]
}

func (r *recorder) Delivery(sub int, body string, at time.Time) {
	ph, m := r.lookup(body)
	if m == nil || sub < 0 || sub >= ph.subs {
		r.stale.Add(1)
		return
	}
	bit := uint64(1) << (sub % 64)
	if m.seen[sub/64].Or(bit)&bit != 0 {
		ph.dups.Add(1)
		return
	}
	t := int64(at.Sub(ph.origin))
	if t >= ph.from && t < ph.to {
		ph.inWindow.Add(1)
	}
	measured := m.sched >= ph.from && m.sched < ph.to
	if measured {
		ph.each.add(sub, t-m.sched)
	}
	if int(m.got.Add(1)) == ph.subs {
		ph.allHeld.Add(1)
		if measured {
			ph.heldAll.add(t - m.sched)
		}
	}
}

func (r *recorder) Ack(key, code string, at time.Time) {
	ph, m := r.lookup(key)
	if m == nil {
		r.stale.Add(1)
		return
	}
	if !m.ack.CompareAndSwap(0, int64(at.Sub(ph.origin))) {
		r.Other("second ack")
		return
	}
	ph.ackN.Add(1)
	if code != "" {
		m.err.Store(true)
		ph.errN.Add(1)
		r.Other("error " + code)
	} else if m.sched >= ph.from && m.sched < ph.to {
		ph.ackLat.add(int64(at.Sub(ph.origin)) - m.sched)
	}
}

func (r *recorder) Other(what string) {
	r.mu.Lock()
	r.other[what]++
	r.mu.Unlock()
}

// lookupDirect finds the direct message of a key or body "d<ph>.<seq>…".
func (r *recorder) lookupDirect(key string) (*phase, *msgRec) {
	ph := r.cur.Load()
	if ph == nil || ph.direct == nil || !strings.HasPrefix(key, "d") {
		return nil, nil
	}
	id, seq, ok := parseBody(key[1:])
	if !ok || id != ph.id || seq >= len(ph.direct.recs) {
		return nil, nil
	}
	return ph, &ph.direct.recs[seq]
}

func (r *recorder) DirectDelivery(body string, at time.Time) {
	ph, m := r.lookupDirect(body)
	if m == nil {
		r.directStale.Add(1)
		return
	}
	d := ph.direct
	if m.got.Add(1) > 1 {
		d.dups.Add(1)
		return
	}
	d.gotN.Add(1)
	if m.sched >= ph.from && m.sched < ph.to {
		d.lat.add(int64(at.Sub(ph.origin)) - m.sched)
	}
}

func (r *recorder) DirectAck(key, code string, at time.Time) {
	ph, m := r.lookupDirect(key)
	if m == nil {
		r.directStale.Add(1)
		return
	}
	d := ph.direct
	if !m.ack.CompareAndSwap(0, int64(at.Sub(ph.origin))) {
		r.DirectOther("second ack")
		return
	}
	d.ackN.Add(1)
	if code != "" {
		m.err.Store(true)
		d.errN.Add(1)
		r.DirectOther("error " + code)
	} else if m.sched >= ph.from && m.sched < ph.to {
		d.ackLat.add(int64(at.Sub(ph.origin)) - m.sched)
	}
}

func (r *recorder) DirectOther(what string) {
	r.mu.Lock()
	r.directOther[what]++
	r.mu.Unlock()
}

func (r *recorder) Closed(sub int, err error) {
	r.disconnects.Add(1)
	if sub < 0 {
		r.Other("publisher closed")
	} else {
		r.Other("subscriber closed")
	}
}

// PhaseConfig is one open-loop run.
type PhaseConfig struct {
	Kind     string // "latency" or "saturation"
	Rate     float64
	Warmup   time.Duration
	Duration time.Duration
	Grace    time.Duration
	Body     int
	SLO      time.Duration
	// DirectRate: the direct pair's messages per second alongside the group (0: none).
	DirectRate float64
}

// runPhase publishes open-loop at cfg.Rate for warm-up + duration (and, with
// cfg.DirectRate, sends from A to B at that rate alongside), then waits up to the
// grace period for every message to be acked and read by every subscriber (and B).
// It returns within warm-up + duration + grace + ~1 s.
func (r *recorder) runPhase(ctx context.Context, sys System, subs, id int, cfg PhaseConfig) PhaseResult {
	total := cfg.Warmup + cfg.Duration
	t0 := time.Now().Add(300 * time.Millisecond)
	ph := &phase{
		id: id, origin: t0.Add(-time.Duration(originLead)), subs: subs,
		from: originLead + int64(cfg.Warmup), to: originLead + int64(total),
		each: newShardedHist(), heldAll: newLockedHist(), ackLat: newLockedHist(), genLag: newLockedHist(),
	}
	// Message j is due at j/rate: a uniform grid, open loop.
	gap := float64(time.Second) / cfg.Rate
	n := int(math.Ceil(float64(total) / gap))
	ph.recs = make([]msgRec, n)
	words := (subs + 63) / 64
	for j := range ph.recs {
		ph.recs[j].sched = originLead + int64(float64(j)*gap)
		ph.recs[j].seen = make([]atomic.Uint64, words)
	}
	if cfg.DirectRate > 0 {
		dgap := float64(time.Second) / cfg.DirectRate
		ph.direct = &directPhase{rate: cfg.DirectRate, lat: newLockedHist(), ackLat: newLockedHist(),
			recs: make([]msgRec, int(math.Ceil(float64(total)/dgap)))}
		for j := range ph.direct.recs {
			ph.direct.recs[j].sched = originLead + int64(float64(j)*dgap)
		}
	}
	r.mu.Lock()
	r.other = map[string]int64{}
	r.directOther = map[string]int64{}
	r.mu.Unlock()
	r.stale.Store(0)
	r.directStale.Store(0)
	disc0, cpu0, wall0 := r.disconnects.Load(), cpuSeconds(), time.Now()
	r.cur.Store(ph)

	hard := t0.Add(total + cfg.Grace)
	pctx, cancel := context.WithDeadline(ctx, hard)
	defer cancel()
	queue := make(chan int, n) // never blocks the pacer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher's writer: one frame at a time, in schedule order
		defer wg.Done()
		for j := range queue {
			if pctx.Err() != nil {
				return
			}
			key := msgKey(id, j)
			m := &ph.recs[j]
			body := msgBody(key, ph.origin.Add(time.Duration(m.sched)), cfg.Body)
			if err := sys.Publish(pctx, key, body); err != nil {
				ph.sendFailures.Add(1)
				r.Other("publish failed: " + err.Error())
				return
			}
			sent := int64(time.Since(ph.origin))
			m.sent.Store(sent)
			ph.sentN.Add(1)
			if m.sched >= ph.from && m.sched < ph.to {
				ph.genLag.add(sent - m.sched)
			}
		}
	}()
	go pace(pctx, ph.origin, ph.recs, queue)
	if d := ph.direct; d != nil {
		dqueue := make(chan int, len(d.recs))
		wg.Add(1)
		go func() { // A's writer: a failure stops the pair for this phase, never the group
			defer wg.Done()
			for j := range dqueue {
				if pctx.Err() != nil {
					return
				}
				m := &d.recs[j]
				key := directKey(id, j)
				if err := sys.PublishDirect(pctx, key, msgBody(key, ph.origin.Add(time.Duration(m.sched)), cfg.Body)); err != nil {
					d.sendFailures.Add(1)
					r.DirectOther("send failed: " + err.Error())
					return
				}
				m.sent.Store(int64(time.Since(ph.origin)))
				d.sentN.Add(1)
			}
		}()
		go pace(pctx, ph.origin, d.recs, dqueue)
	}

	// Progress every 5 s until the schedule ends, then the grace period.
	end := t0.Add(total)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-time.After(time.Until(end)):
			break wait
		case <-tick.C:
			line := fmt.Sprintf("  [%2.0fs] sent %d of %d, held by all %d, deliveries in window %d",
				time.Since(t0).Seconds(), ph.sentN.Load(), n, ph.allHeld.Load(), ph.inWindow.Load())
			if d := ph.direct; d != nil {
				line += fmt.Sprintf("; direct sent %d of %d, read %d", d.sentN.Load(), len(d.recs), d.gotN.Load())
			}
			logf("%s", line)
		}
	}
	for time.Now().Before(hard) && ctx.Err() == nil && !ph.settled() {
		time.Sleep(50 * time.Millisecond)
	}
	// From here on, what still comes for this phase is late: the next phase counts it
	// as stale.
	r.cur.Store(nil)
	disc, cpu := r.disconnects.Load()-disc0, (cpuSeconds()-cpu0)/time.Since(wall0).Seconds()
	cancel()
	wg.Wait()
	return r.collect(ph, cfg, disc, cpu)
}

// settled: everything written is answered, and everything not refused is held by all
// (and, for the direct pair, read by B).
func (ph *phase) settled() bool {
	sent := ph.sentN.Load()
	if ph.ackN.Load() < sent || ph.allHeld.Load()+ph.errN.Load() < sent {
		return false
	}
	d := ph.direct
	return d == nil || d.ackN.Load() >= d.sentN.Load() && d.gotN.Load()+d.errN.Load() >= d.sentN.Load()
}

// pace releases message j of recs to the writer at its due time. It runs on its own OS
// thread and sleeps with nanosleep (timer slack 1 ns), because Go timers wake up to
// ~1 ms late, which would be charged to the server as latency.
func pace(ctx context.Context, origin time.Time, recs []msgRec, queue chan<- int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(queue)
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, 29 /* PR_SET_TIMERSLACK */, 1, 0)
	for j := range recs {
		due := origin.Add(time.Duration(recs[j].sched))
		for {
			d := time.Until(due)
			if d <= 5*time.Microsecond {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if d > 3*time.Millisecond {
				time.Sleep(d - 2*time.Millisecond) // coarse, then precise
				continue
			}
			ts := syscall.NsecToTimespec(int64(d))
			_ = syscall.Nanosleep(&ts, nil)
		}
		queue <- j
	}
}
