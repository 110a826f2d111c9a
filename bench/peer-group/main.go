// peer-group: large-group broadcast fanout, Parley vs Centrifugo v6. One publisher
// sends open-loop to a group that `-online` subscribers hold a WebSocket to; every
// delivery is timed from the message's scheduled send. A direct (1:1) pair runs
// alongside in every phase (-direct-rate). See README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

type Config struct {
	Online, Members, Body, DialWidth, Partitions int
	Rate, DirectRate                             float64
	Warmup, Duration, Grace                      time.Duration
	SatRates                                     []float64
	SatWarmup, SatDuration, SatGrace, Cooldown   time.Duration
	SLO, SetupTimeout                            time.Duration
	SatAll                                       bool
}

type Output struct {
	Machine   string         `json:"machine"`
	StartedAt time.Time      `json:"started_at"`
	Config    map[string]any `json:"config"`
	Systems   []SystemResult `json:"systems"`
}

// SystemResult is one system's run: its latency phase and its saturation steps.
type SystemResult struct {
	System     string        `json:"system"`
	Targets    []string      `json:"targets"`
	SetupError string        `json:"setup_error,omitempty"`
	SetupS     float64       `json:"setup_s"`
	Direct     *DirectSetup  `json:"direct,omitempty"` // the 1:1 pair (nil: -direct-rate 0)
	Latency    *PhaseResult  `json:"latency,omitempty"`
	Saturation []PhaseResult `json:"saturation,omitempty"`
	Stopped    string        `json:"stopped,omitempty"` // why the saturation ramp ended early
}

func main() {
	var parleyURLs listFlag
	flag.Var(&parleyURLs, "parley", "Parley gateway base URL with --dev-auth; repeat or comma-separate for several (subscribers round robin; default http://127.0.0.1:8085)")
	var (
		cfURL     = flag.String("centrifugo", "http://127.0.0.1:8000", "Centrifugo base URL")
		only      = flag.String("only", "", `run only "parley" or only "centrifugo"`)
		online    = flag.Int("online", 2000, "subscribers, one WebSocket each (plus one publisher connection)")
		members   = flag.Int("members", 10000, "Parley group members in all (publisher + subscribers + offline members)")
		rate      = flag.Float64("rate", 5, "latency phase: group messages per second")
		dRate     = flag.Float64("direct-rate", 200, "direct (1:1) pair alongside the group in every phase: messages per second from A to B (0: no pair)")
		parts     = flag.Int("partitions", 8, "partitions of Parley's events topic (as run-parley.sh creates it): the direct conversation is placed on the group's")
		warmup    = flag.Duration("warmup", 5*time.Second, "latency phase: warm-up (published, not measured)")
		duration  = flag.Duration("duration", 20*time.Second, "latency phase: measurement window")
		grace     = flag.Duration("grace", 10*time.Second, "after a schedule ends, how long to wait for outstanding acks and deliveries (lost after that)")
		satRates  = flag.String("sat-rates", "10,20,50,100", "saturation: group messages per second, comma list, in increasing order (empty: skip)")
		satWarmup = flag.Duration("sat-warmup", 2*time.Second, "saturation: warm-up per rate (published, not measured)")
		satDur    = flag.Duration("sat-duration", 10*time.Second, "saturation: measurement window per rate")
		satGrace  = flag.Duration("sat-grace", 5*time.Second, "saturation: grace per rate")
		cooldown  = flag.Duration("cooldown", 2*time.Second, "pause between phases")
		satAll    = flag.Bool("sat-all", false, "run every saturation rate (default: stop a system's ramp after the first rate that lost or left unacked any message, since its backlog would spill into the next)")
		slo       = flag.Duration("slo-p99", 100*time.Millisecond, "a saturation rate passes with 0 loss, nothing unsent/unacked/errored/disconnected, and p99 per delivery below this")
		body      = flag.Int("body", 100, "message body size in bytes (at least ~30: phase, seq and send time)")
		dialW     = flag.Int("dial-width", 100, "connections opened in parallel during setup")
		setupT    = flag.Duration("setup-timeout", 5*time.Minute, "limit for one system's setup (tokens, group, connections)")
		timeout   = flag.Duration("timeout", 30*time.Minute, "limit for the whole run")
		cfSecret  = flag.String("cf-secret", "peerbench-secret", "Centrifugo client.token.hmac_secret_key")
		cfChannel = flag.String("cf-channel", "group:bench", "Centrifugo channel; the run id is appended, so each run starts on a fresh channel")
		runID     = flag.String("run-id", "", "prefix of user ids (default: pg<unix time, base 36>)")
		jsonOut   = flag.String("json", "", "also write every figure as JSON to this file")
		remote    = flag.Bool("allow-remote", false, "allow non-loopback targets")
		burst     = flag.Int("burst", 0, "instead of the group phases: one session posts this many messages as fast as they are acknowledged, on each system (see burst.go)")
		burstWin  = flag.Int("burst-window", 256, "-burst: messages sent and not yet acknowledged, at most")
		idle      = flag.Int("idle", 0, "instead of the group phases: hold this many idle WebSockets on each system and report its RSS per connection (see idle.go)")
		idleSrc   = flag.Int("idle-sources", 8, "-idle: source addresses 127.0.0.2 … 127.0.0.(1+N)")
		idleWait  = flag.Duration("idle-settle", 15*time.Second, "-idle: pause between the last connection and the RSS reading")
		pSecret   = flag.String("parley-secret", "", "-idle: the gateway's PARLEY_JWT_SECRET (tokens are minted here)")
		pPID      = flag.Int("parley-pid", 0, "-idle: pid of the Parley process whose RSS is read (0: skip Parley); -burst: whose CPU per message is reported")
		cfPID     = flag.Int("centrifugo-pid", 0, "-idle: pid of Centrifugo (0: skip it); -burst: whose CPU per message is reported")
		pExtra    = flag.String("parley-extra-pids", "", "-idle and -burst: comma list of other pids whose CPU counts for Parley (the broker's)")
		idleCPU   = flag.Duration("idle-cpu", 30*time.Second, "-idle: after settling, how long to measure CPU with the connections idle (0: skip)")
		presence  = flag.Int("presence", 0, "instead of the group phases: this many users in groups of -presence-group connect, and the presence items each receives are counted (see presence.go)")
		presGroup = flag.Int("presence-group", 50, "-presence: users per group")
		presConn  = flag.Duration("presence-connect", 10*time.Second, "-presence: the users connect over this long")
		presWait  = flag.Duration("presence-settle", 30*time.Second, "-presence: counting goes on this long after the last connection")
		presNS    = flag.String("presence-namespace", "presence", "-presence: Centrifugo namespace with presence and join/leave (run-centrifugo.sh makes it)")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "peer-group: large-group broadcast fanout, Parley vs Centrifugo v6.\n\nUsage:\n  peer-group -parley http://127.0.0.1:8085,http://127.0.0.1:8086 -centrifugo http://127.0.0.1:8000 [flags]\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	allowRemote = *remote
	if len(parleyURLs) == 0 {
		parleyURLs = listFlag{"http://127.0.0.1:8085"}
	}
	cfg := Config{
		Online: *online, Members: *members, Body: *body, DialWidth: *dialW, Rate: *rate,
		DirectRate: *dRate, Partitions: *parts,
		Warmup: *warmup, Duration: *duration, Grace: *grace,
		SatWarmup: *satWarmup, SatDuration: *satDur, SatGrace: *satGrace, Cooldown: *cooldown,
		SLO: *slo, SetupTimeout: *setupT, SatAll: *satAll,
	}
	var err error
	if cfg.SatRates, err = parseRates(*satRates); err != nil {
		fatal(fmt.Errorf("-sat-rates: %w", err))
	}
	if err := cfg.check(); err != nil {
		fatal(err)
	}
	id := *runID
	if id == "" {
		id = "pg" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	if !validID(id) {
		fatal(fmt.Errorf("-run-id %q: want 1 to 24 of A-Z a-z 0-9 . _", id))
	}
	systems, err := buildSystems(*only, parleyURLs, *cfURL, *cfSecret, *cfChannel+"-"+id, id, cfg)
	if err != nil {
		fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *idle > 0 {
		if *idleSrc < 1 || *idleSrc > 250 {
			fatal(fmt.Errorf("-idle-sources must be 1 to 250"))
		}
		if *pPID > 0 && *pSecret == "" {
			fatal(fmt.Errorf("-idle with -parley-pid needs -parley-secret (the gateway's PARLEY_JWT_SECRET)"))
		}
		runIdles(ctx, *only, parleyURLs[0], *pSecret, *pPID, parsePIDs(*pExtra), *cfURL, *cfSecret, *cfPID, id, *idle, *idleSrc, *idleWait, *idleCPU, *jsonOut)
		return
	}
	if *presence > 0 {
		if *presGroup < 2 || *presence < *presGroup {
			fatal(fmt.Errorf("-presence-group must be at least 2 and at most -presence"))
		}
		if *only != "centrifugo" && *pSecret == "" {
			fatal(fmt.Errorf("-presence needs -parley-secret (the gateway's PARLEY_JWT_SECRET) unless -only centrifugo"))
		}
		runPresences(ctx, *only, parleyURLs[0], *pSecret, *cfURL, *cfSecret, *presNS, id, *presence, *presGroup, *idleSrc, *presConn, *presWait, *jsonOut)
		return
	}
	if *burst > 0 {
		pids := map[string][]int{}
		if *pPID > 0 {
			pids["parley"] = append([]int{*pPID}, parsePIDs(*pExtra)...)
		}
		if *cfPID > 0 {
			pids["centrifugo"] = []int{*cfPID}
		}
		runBursts(ctx, *only, parleyURLs[0], *cfURL, *cfSecret, id, *burst, *burstWin, *body, pids, *jsonOut)
		return
	}

	out := Output{Machine: machine(), StartedAt: time.Now().UTC(), Config: map[string]any{
		"online": cfg.Online, "members": cfg.Members, "rate": cfg.Rate, "warmup_s": cfg.Warmup.Seconds(),
		"duration_s": cfg.Duration.Seconds(), "grace_s": cfg.Grace.Seconds(), "sat_rates": cfg.SatRates,
		"sat_warmup_s": cfg.SatWarmup.Seconds(), "sat_duration_s": cfg.SatDuration.Seconds(),
		"sat_grace_s": cfg.SatGrace.Seconds(), "slo_p99_ms": float64(cfg.SLO) / 1e6, "body_bytes": cfg.Body,
		"direct_rate": cfg.DirectRate, "partitions": cfg.Partitions,
		"run_id": id, "parley": []string(parleyURLs), "centrifugo": *cfURL, "cf_channel": *cfChannel + "-" + id,
		"load_average_at_start": loadAvg(),
	}}
	logf("machine: %s; load average %s", out.Machine, loadAvg())
	for _, s := range systems {
		out.Systems = append(out.Systems, runSystem(ctx, s.sys, s.targets, cfg))
		if *jsonOut != "" {
			writeJSON(*jsonOut, out)
		}
	}
	out.Config["load_average_at_end"] = loadAvg()
	if *jsonOut != "" {
		writeJSON(*jsonOut, out)
		logf("results: %s", *jsonOut)
	}
	printReport(os.Stdout, out, cfg)
	for _, s := range out.Systems {
		if s.SetupError != "" {
			os.Exit(1)
		}
	}
}

type target struct {
	sys     System
	targets []string
}

func buildSystems(only string, parley []string, cfURL, cfSecret, cfChannel, id string, cfg Config) ([]target, error) {
	if only != "" && only != "parley" && only != "centrifugo" {
		return nil, fmt.Errorf("-only must be parley or centrifugo")
	}
	var ts []target
	if only != "centrifugo" {
		for _, g := range parley {
			if _, err := wsURL(g, "/v1/ws"); err != nil {
				return nil, fmt.Errorf("-parley: %w", err)
			}
		}
		ts = append(ts, target{&Parley{Gateways: parley, Users: userIDs(id+"-pa", cfg.Members),
			Online: cfg.Online, DialWidth: cfg.DialWidth, DirectPrefix: id, Partitions: cfg.Partitions}, parley})
	}
	if only != "parley" {
		if _, err := wsURL(cfURL, "/connection/websocket"); err != nil {
			return nil, fmt.Errorf("-centrifugo: %w", err)
		}
		if !strings.Contains(cfChannel, ":") {
			return nil, fmt.Errorf("-cf-channel %q: want <namespace>:<name>", cfChannel)
		}
		// Centrifugo has no membership: only the connected users exist there.
		ts = append(ts, target{&Centrifugo{Base: cfURL, Secret: cfSecret, Channel: cfChannel,
			Users: userIDs(id+"-cf", cfg.Online+1), Online: cfg.Online, DialWidth: cfg.DialWidth,
			DirectChannel: "direct:" + id, DirectUsers: [2]string{id + "-da", id + "-db"}}, []string{cfURL}})
	}
	return ts, nil
}

// runSystem sets one system up, runs its latency phase and its saturation steps, and
// closes its connections. Every step is bounded in time.
func runSystem(ctx context.Context, sys System, targets []string, cfg Config) SystemResult {
	res := SystemResult{System: sys.Name(), Targets: targets}
	rec := newRecorder()
	logf("== %s (%s): setup, %d subscribers ...", sys.Name(), strings.Join(targets, " "), cfg.Online)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	err := sys.Setup(sctx, rec)
	cancel()
	res.SetupS = time.Since(start).Seconds()
	if err != nil {
		logf("%s: setup failed after %.1fs: %v", sys.Name(), res.SetupS, err)
		res.SetupError = err.Error()
		return res
	}
	defer func() {
		n := cfg.Online + 1
		if res.Direct != nil && res.Direct.Error == "" {
			n += 2
		}
		logf("%s: closing %d connections ...", sys.Name(), n)
		sys.Close()
	}()
	logf("%s: setup done in %.1fs", sys.Name(), res.SetupS)

	// The direct pair: if it cannot be set up, the group runs without it.
	directRate := 0.0
	if cfg.DirectRate > 0 {
		dctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
		info, err := sys.SetupDirect(dctx, rec)
		cancel()
		if info == nil {
			info = &DirectSetup{}
		}
		if err != nil {
			info.Error = err.Error()
			logf("%s: direct pair failed, the group runs without it: %v", sys.Name(), err)
		} else {
			directRate = cfg.DirectRate
		}
		res.Direct = info
	}

	phaseID := 0
	run := func(pc PhaseConfig) PhaseResult {
		phaseID++
		direct := ""
		if pc.DirectRate > 0 {
			direct = fmt.Sprintf(", 1:1 pair alongside at %g msgs/s", pc.DirectRate)
		}
		logf("%s: %s phase, %.0f msgs/s to %d subscribers (%.0f deliveries/s)%s: warm-up %s, measure %s, grace up to %s ...",
			sys.Name(), pc.Kind, pc.Rate, cfg.Online, pc.Rate*float64(cfg.Online), direct, pc.Warmup, pc.Duration, pc.Grace)
		r := rec.runPhase(ctx, sys, cfg.Online, phaseID, pc)
		r.System = sys.Name()
		logf("%s", r.oneLine())
		return r
	}
	lat := run(PhaseConfig{Kind: "latency", Rate: cfg.Rate, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Grace: cfg.Grace, Body: cfg.Body, SLO: cfg.SLO, DirectRate: directRate})
	res.Latency = &lat
	for _, rate := range cfg.SatRates {
		if ctx.Err() != nil {
			res.Stopped = "interrupted: " + context.Cause(ctx).Error()
			break
		}
		if rec.disconnects.Load() > 0 {
			res.Stopped = fmt.Sprintf("%d connection(s) closed: later rates would count them as lost", rec.disconnects.Load())
			logf("%s: saturation stopped: %s", sys.Name(), res.Stopped)
			break
		}
		sleepCtx(ctx, cfg.Cooldown)
		r := run(PhaseConfig{Kind: "saturation", Rate: rate, Warmup: cfg.SatWarmup, Duration: cfg.SatDuration,
			Grace: cfg.SatGrace, Body: cfg.Body, SLO: cfg.SLO, DirectRate: directRate})
		res.Saturation = append(res.Saturation, r)
		if !cfg.SatAll && (r.Lost > 0 || r.Unacked > 0 || r.Sent < r.Scheduled) {
			res.Stopped = fmt.Sprintf("%g msgs/s lost or left unacked messages (-sat-all runs every rate anyway)", rate)
			logf("%s: saturation stopped: %s", sys.Name(), res.Stopped)
			break
		}
	}
	return res
}

func (c Config) check() error {
	switch {
	case c.Online < 1:
		return fmt.Errorf("-online must be at least 1")
	case c.Members < c.Online+1:
		return fmt.Errorf("-members (%d) must be at least -online + 1 (%d): the publisher is a member too", c.Members, c.Online+1)
	case c.Rate <= 0:
		return fmt.Errorf("-rate must be > 0")
	case c.DirectRate < 0:
		return fmt.Errorf("-direct-rate must be >= 0 (0: no direct pair)")
	case c.Partitions < 1:
		return fmt.Errorf("-partitions must be at least 1")
	case c.Duration <= 0 || c.SatDuration <= 0:
		return fmt.Errorf("-duration and -sat-duration must be > 0")
	case c.Warmup < 0 || c.SatWarmup < 0 || c.Grace < 0 || c.SatGrace < 0:
		return fmt.Errorf("warm-ups and grace periods must be >= 0")
	case c.DialWidth < 1:
		return fmt.Errorf("-dial-width must be at least 1")
	case c.Body > 16384:
		return fmt.Errorf("-body must be at most 16384 (Parley's limit)")
	}
	return nil
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", p)
		}
		out = append(out, v)
	}
	return out, nil
}

func userIDs(prefix string, n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return u
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 24 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func writeJSON(path string, v any) {
	data, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		logf("writing %s: %v", path, err)
	}
}

// parsePIDs reads -parley-extra-pids (a comma list of pids); a bad entry is fatal.
func parsePIDs(list string) []int {
	var pids []int
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-parley-extra-pids: %q is not a pid", f))
		}
		pids = append(pids, n)
	}
	return pids
}
