package main

// -presence N: N users in groups of -presence-group connect over -presence-connect,
// spread evenly, on each system in turn; every presence item a user receives about
// someone else is counted, per second, until -presence-settle after the last connection.
//
//   Parley:     the groups are made over REST (POST /v1/conversations, tokens minted
//               with -parley-secret); each user opens /v1/ws and counts
//               {"type":"presence",…} frames (one per contact when its contacts are
//               loaded, one per later change).
//   Centrifugo: each user connects, subscribes to its group's channel
//               "<-presence-namespace>:<run>-g<k>" (join/leave and presence on, see
//               run-centrifugo.sh), and asks for the channel's presence once: each
//               entry but its own counts as an item, and so does each join/leave push.
// Both give a user the state of the others in its group and news of later changes.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// PresenceResult is one system's presence run.
type PresenceResult struct {
	System        string  `json:"system"`
	Users         int     `json:"users"`
	Group         int     `json:"group"`
	Connected     int64   `json:"connected"`
	Failed        int64   `json:"failed"`
	Items         int64   `json:"items"`
	PerSecond     []int64 `json:"items_per_second"`
	MinPerUser    int64   `json:"min_per_user"`
	MedianPerUser int64   `json:"median_per_user"`
	MaxPerUser    int64   `json:"max_per_user"`
	UsersWithNone int     `json:"users_with_none"`
	LastItemS     float64 `json:"last_item_s"`
	Error         string  `json:"error,omitempty"`
}

func parleyMakeGroups(ctx context.Context, base, secret, id string, n, group int) error {
	groups := (n + group - 1) / group
	return parallel(ctx, groups, 8, "parley groups", 0, func(ctx context.Context, g int) error {
		first := g * group
		var members []string
		for k := first + 1; k < first+group && k < n; k++ {
			members = append(members, id+"-u"+strconv.Itoa(k))
		}
		body, _ := json.Marshal(map[string]any{"type": "group", "title": "g" + strconv.Itoa(g), "members": members})
		token := hs256(secret, map[string]any{"sub": id + "-u" + strconv.Itoa(first), "exp": time.Now().Add(24 * time.Hour).Unix()})
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/conversations", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("group %d: HTTP %d", g, resp.StatusCode)
		}
		return nil
	})
}

func runPresenceOne(ctx context.Context, system, base, secret, ns, id string, n, group, sources int, connect, settle time.Duration) PresenceResult {
	res := PresenceResult{System: system, Users: n, Group: group}
	if system == "parley" {
		if err := parleyMakeGroups(ctx, base, secret, id, n, group); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	seconds := int((connect + settle).Seconds()) + 1
	perSecond := make([]atomic.Int64, seconds+120)
	perUser := make([]atomic.Int64, n)
	var connected, failed atomic.Int64
	var lastNanos atomic.Int64
	start := time.Now()
	count := func(k int, items int64) {
		if items <= 0 {
			return
		}
		el := time.Since(start)
		if s := int(el.Seconds()); s < len(perSecond) {
			perSecond[s].Add(items)
		}
		perUser[k].Add(items)
		for {
			old := lastNanos.Load()
			if int64(el) <= old || lastNanos.CompareAndSwap(old, int64(el)) {
				break
			}
		}
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	gap := connect / time.Duration(n)
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			sleepCtx(rctx, time.Until(start.Add(gap*time.Duration(k))))
			user := id + "-u" + strconv.Itoa(k)
			token := hs256(secret, map[string]any{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()})
			if system == "parley" {
				wsu, _ := wsURL(base, "/v1/ws")
				ws, err := dialFrom(rctx, wsu+"?token="+url.QueryEscape(token), k, sources)
				if err != nil {
					failed.Add(1)
					return
				}
				defer ws.CloseNow()
				ws.SetReadLimit(1 << 20)
				connected.Add(1)
				for {
					_, data, err := ws.Read(rctx)
					if err != nil {
						return
					}
					if bytes.HasPrefix(data, []byte(`{"type":"presence"`)) {
						count(k, 1)
					}
				}
			}
			wsu, _ := wsURL(base, "/connection/websocket")
			ws, err := dialFrom(rctx, wsu, k, sources)
			if err != nil {
				failed.Add(1)
				return
			}
			defer ws.CloseNow()
			ws.SetReadLimit(16 << 20)
			channel := ns + ":" + id + "-g" + strconv.Itoa(k/group)
			cmds, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "presence"}})
			sub, _ := json.Marshal(map[string]any{"id": 2, "subscribe": map[string]any{"channel": channel}})
			pres, _ := json.Marshal(map[string]any{"id": 3, "presence": map[string]any{"channel": channel}})
			for _, c := range [][]byte{cmds, sub, pres} {
				if err := ws.Write(rctx, websocket.MessageText, c); err != nil {
					failed.Add(1)
					return
				}
			}
			connected.Add(1)
			for {
				_, data, err := ws.Read(rctx)
				if err != nil {
					return
				}
				for _, line := range bytes.Split(data, []byte("\n")) {
					switch {
					case len(line) == 0:
					case bytes.Contains(line, []byte(`"join":`)), bytes.Contains(line, []byte(`"leave":`)):
						if !bytes.Contains(line, []byte(`"user":"`+user+`"`)) {
							count(k, 1)
						}
					case bytes.HasPrefix(line, []byte(`{"id":3,`)):
						// Every client in the channel but this one.
						count(k, int64(bytes.Count(line, []byte(`"user":`)))-1)
					case bytes.Equal(line, []byte("{}")):
						_ = ws.Write(rctx, websocket.MessageText, []byte("{}")) // ping → pong
					}
				}
			}
		}(k)
	}
	sleepCtx(ctx, connect+settle)
	stop()
	wg.Wait()
	res.Connected, res.Failed = connected.Load(), failed.Load()
	res.LastItemS = time.Duration(lastNanos.Load()).Seconds()
	got := make([]int64, n)
	for k := range perUser {
		got[k] = perUser[k].Load()
		res.Items += got[k]
		if got[k] == 0 {
			res.UsersWithNone++
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	res.MinPerUser, res.MedianPerUser, res.MaxPerUser = got[0], got[n/2], got[n-1]
	for s := 0; s < seconds; s++ {
		res.PerSecond = append(res.PerSecond, perSecond[s].Load())
	}
	logf("%s: %d connected (%d failed), %d presence items, per user min %d median %d max %d, %d with none, last at %.1f s",
		system, res.Connected, res.Failed, res.Items, res.MinPerUser, res.MedianPerUser, res.MaxPerUser, res.UsersWithNone, res.LastItemS)
	return res
}

func runPresences(ctx context.Context, only, parleyURL, parleySecret, cfURL, cfSecret, ns, id string,
	n, group, sources int, connect, settle time.Duration, jsonOut string) {
	logf("machine: %s; load average %s", machine(), loadAvg())
	var results []PresenceResult
	for _, s := range []struct{ name, base, secret string }{{"parley", parleyURL, parleySecret}, {"centrifugo", cfURL, cfSecret}} {
		if only != "" && only != s.name {
			continue
		}
		results = append(results, runPresenceOne(ctx, s.name, s.base, s.secret, ns, id+s.name[:1], n, group, sources, connect, settle))
		sleepCtx(ctx, 10*time.Second)
	}
	fmt.Printf("\n| system | users | contacts each | connected | items | per user min / median / max | users with none | peak items/s | last item at s | note |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, r := range results {
		var peak int64
		for _, v := range r.PerSecond {
			if v > peak {
				peak = v
			}
		}
		fmt.Printf("| %s | %d | %d | %d | %d | %d / %d / %d | %d | %d | %.1f | %s |\n", r.System, r.Users, r.Group-1, r.Connected,
			r.Items, r.MinPerUser, r.MedianPerUser, r.MaxPerUser, r.UsersWithNone, peak, r.LastItemS, r.Error)
	}
	if jsonOut != "" {
		writeJSON(jsonOut, map[string]any{"machine": machine(), "presence": results})
	}
}
