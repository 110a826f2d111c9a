package main

import (
	"math"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in µs, 1 µs to 10 min, 3 significant digits.
const histMax = 600_000_000

type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	N   int64   `json:"n"`
}

func newHDR() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, 3) }

func recordNS(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns/1000, 1), histMax))
}

func summarize(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)),
		P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)),
		Max: ms(h.Max()),
		N:   h.TotalCount(),
	}
}

// lockedHist is a histogram for a few writers.
type lockedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLockedHist() *lockedHist { return &lockedHist{h: newHDR()} }

func (l *lockedHist) add(ns int64) {
	l.mu.Lock()
	recordNS(l.h, ns)
	l.mu.Unlock()
}

func (l *lockedHist) summary() Percentiles {
	l.mu.Lock()
	defer l.mu.Unlock()
	return summarize(l.h)
}

// shardedHist takes one record per delivery from thousands of reader goroutines:
// writers pick a shard by subscriber, so they rarely wait on each other.
type shardedHist struct {
	shards [16]lockedHist
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = newHDR()
	}
	return s
}

func (s *shardedHist) add(key int, ns int64) { s.shards[key%len(s.shards)].add(ns) }

func (s *shardedHist) summary() Percentiles {
	all := newHDR()
	for i := range s.shards {
		s.shards[i].mu.Lock()
		all.Merge(s.shards[i].h)
		s.shards[i].mu.Unlock()
	}
	return summarize(all)
}
