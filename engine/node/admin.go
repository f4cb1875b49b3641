package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/engine/internal/httpjson"
	"github.com/myim/myim/engine/login"
	"github.com/myim/myim/route"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// Admin serves the operator API under /v1/admin/, and pprof under
// /debug/pprof/ when PProf is set. Every route wants the header
// "Authorization: Bearer <Secret>" (401 otherwise) and every call is logged.
// With an empty Secret nothing is registered and the routes answer 404.
type Admin struct {
	Secret   string
	Store    storage.Store
	Hasher   *session.Hasher
	Identity *clusterca.Identity
	Endpoint *endpoint.Handler   // nil on a node without the endpoint role
	Center   *center.LocalCenter // nil on a node without the center role
	// Revocations shares revoked tokens with the cluster (nil: the
	// endpoint's own list only).
	Revocations *clusterca.RevocationList
	Monitor     *Monitor
	// Servers returns the server list, the same the login service returns.
	Servers func(ctx context.Context) []login.ServerInfo
	// PProf serves net/http/pprof under /debug/pprof/, behind the secret.
	PProf  bool
	Logger *slog.Logger
	// Invites, when set, serves POST /v1/admin/invites: a single-use
	// registration code for --registration invite.
	Invites *Invites
	// Node, when set, is marked ready again when a drain is undone.
	Node *Node
	// OnDrain, when set, is called after a drain starts (true) or is undone
	// (false), e.g. to update the server registry at once.
	OnDrain func(draining bool)
}

// Admin request bounds. A load generator provisions at most this many users
// or tokens per call: 100,000 tokens take about two seconds to sign and a
// few megabytes of JSON.
const (
	maxAdminBatch   = 100_000
	maxAdminBody    = 8 << 20
	maxOnlineList   = 10_000
	defaultOnline   = 1000
	bulkCreateProcs = 8 // concurrent CreateUser calls: a MySQL store overlaps them
)

// Register adds the admin routes to n, unless the secret is empty.
func (a *Admin) Register(n *Node) {
	if a.Secret == "" {
		return
	}
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	want := sha256.Sum256([]byte(a.Secret))
	handle := func(pattern string, f http.HandlerFunc) { n.HandleAdmin(pattern, a.guard(want, f)) }
	handle("GET /v1/admin/stats", a.stats)
	handle("GET /v1/admin/users/online", a.online)
	handle("GET /v1/admin/users/{id}", a.user)
	handle("POST /v1/admin/users/{id}/kick", a.kick)
	handle("POST /v1/admin/users/{id}/devices/{device}/kick", a.kickDevice)
	handle("POST /v1/admin/tokens/revoke", a.revoke)
	handle("POST /v1/admin/users/bulk", a.bulkUsers)
	handle("POST /v1/admin/tokens", a.tokens)
	handle("POST /v1/admin/drain", a.drain)
	handle("GET /v1/admin/drain", a.drainState)
	handle("GET /v1/admin/groups/{id}", a.group)
	if a.Invites != nil {
		handle("POST /v1/admin/invites", a.invite)
	}
	if a.PProf {
		handle("GET /debug/pprof/", pprof.Index)
		handle("GET /debug/pprof/cmdline", pprof.Cmdline)
		handle("GET /debug/pprof/profile", pprof.Profile)
		handle("GET /debug/pprof/symbol", pprof.Symbol)
		handle("POST /debug/pprof/symbol", pprof.Symbol)
		handle("GET /debug/pprof/trace", pprof.Trace)
	}
}

// guard checks the bearer secret in constant time (comparing SHA-256
// digests, so that not even the length leaks) and logs the call.
func (a *Admin) guard(want [32]byte, f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="myim-admin"`)
			httpjson.Error(w, http.StatusUnauthorized, "admin secret required")
			a.Logger.Warn("admin call refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		f(rec, r)
		a.Logger.Info("admin call", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
			"status", rec.code, "took", time.Since(start))
	})
}

// statusRecorder remembers the status code for the log line.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush lets pprof's streaming handlers flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func readAdminJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil || len(b) > maxAdminBody {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "body too large")
		return false
	}
	if sonic.Unmarshal(b, v) != nil {
		httpjson.Error(w, http.StatusBadRequest, "body must be a JSON object")
		return false
	}
	return true
}

// AdminStats is GET /v1/admin/stats: the node's figures plus the counters
// only operators need.
type AdminStats struct {
	*NodeStats
	Handshakes map[string]map[string]uint64 `json:"handshakes"`
	Closed     map[string]map[string]uint64 `json:"closed"`
	// Errors are the last warnings and errors logged (message and "err"
	// attribute), oldest first.
	Errors []RecentError `json:"recent_errors"`
}

func (a *Admin) stats(w http.ResponseWriter, r *http.Request) {
	out := AdminStats{NodeStats: &NodeStats{}, Handshakes: map[string]map[string]uint64{},
		Closed: map[string]map[string]uint64{}, Errors: []RecentError{}}
	if a.Monitor != nil {
		out.NodeStats = a.Monitor.Stats()
		if a.Monitor.cfg.Logs != nil {
			out.Errors = a.Monitor.cfg.Logs.Recent()
		}
		if n := a.Monitor.cfg.Node; n != nil {
			for _, name := range n.order {
				m := map[string]uint64{}
				st := n.servers[name].Stats()
				for r := engine.ReasonPeer; r < engine.NumReasons; r++ {
					if v := st.Closed[r].Load(); v > 0 {
						m[r.String()] = v
					}
				}
				out.Closed[name] = m
			}
		}
	}
	hs := func(role string, h *im.HandshakeStats) {
		m := map[string]uint64{"ok": h.OK.Load()}
		for f := im.HandshakeFailure(0); f < im.NumHandshakeFailures; f++ {
			if v := h.Failed[f].Load(); v > 0 {
				m[f.String()] = v
			}
		}
		out.Handshakes[role] = m
	}
	if a.Endpoint != nil {
		hs("endpoint", a.Endpoint.Handshakes())
	}
	if a.Monitor != nil && a.Monitor.cfg.Login != nil {
		hs("login", a.Monitor.cfg.Login.Handshakes())
	}
	httpjson.Write(w, http.StatusOK, out)
}

// OnlineSession is one session as the admin API lists it: the address of
// the session (endpoint, center, session id) and the peer.
type OnlineSession struct {
	User     uint64    `json:"user"`
	Endpoint uint32    `json:"endpoint"`
	Center   uint32    `json:"center"`
	Session  uint64    `json:"session"`
	Remote   string    `json:"remote,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	SID      string    `json:"sid,omitempty"`    // the token's session id: what revoke takes
	Device   string    `json:"device,omitempty"` // hex hash of the device key: what a device kick takes
}

func (a *Admin) centerID() uint32 {
	if a.Center != nil {
		return a.Center.ID()
	}
	return 0
}

func (a *Admin) online(w http.ResponseWriter, r *http.Request) {
	limit := defaultOnline
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			httpjson.Error(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = min(n, maxOnlineList)
	}
	list := make([]OnlineSession, 0, min(limit, 256))
	total, truncated := 0, false
	switch {
	case a.Endpoint != nil:
		total = a.Endpoint.Sessions()
		cid := a.centerID()
		a.Endpoint.RangeSessions(func(s endpoint.SessionInfo) bool {
			if len(list) == limit {
				truncated = true
				return false
			}
			list = append(list, OnlineSession{User: s.User, Endpoint: s.Endpoint, Center: cid, Session: s.Session,
				Remote: s.Remote, Since: s.Since, SID: s.TokenSession, Device: s.Device})
			return true
		})
	case a.Center != nil:
		total = a.Center.Routes().Len()
		a.Center.Routes().Range(func(user uint64, ad route.Addr, _ any) bool {
			if len(list) == limit {
				truncated = true
				return false
			}
			list = append(list, OnlineSession{User: user, Endpoint: ad.Endpoint, Center: ad.Center, Session: ad.Session})
			return true
		})
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"sessions": list, "total": total, "truncated": truncated})
}

// sessionsOf returns the addresses of user's sessions: from the center's
// routing table when this node runs one, else from the endpoint's sessions.
func (a *Admin) sessionsOf(user uint64) []OnlineSession {
	list := []OnlineSession{}
	local := map[uint64]endpoint.SessionInfo{}
	if a.Endpoint != nil {
		a.Endpoint.RangeSessions(func(s endpoint.SessionInfo) bool {
			if s.User == user {
				local[s.Session] = s
			}
			return true
		})
	}
	if a.Center != nil {
		a.Center.Routes().Lookup(user, func(ad route.Addr, _ any) {
			o := OnlineSession{User: user, Endpoint: ad.Endpoint, Center: ad.Center, Session: ad.Session}
			if s, ok := local[ad.Session]; ok && ad.Endpoint == s.Endpoint {
				o.Remote, o.Since = s.Remote, s.Since
			}
			list = append(list, o)
		})
		return list
	}
	for _, s := range local {
		list = append(list, OnlineSession{User: user, Endpoint: s.Endpoint, Session: s.Session, Remote: s.Remote, Since: s.Since})
	}
	return list
}

func (a *Admin) user(w http.ResponseWriter, r *http.Request) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	u, err := a.Store.UserByID(r.Context(), id)
	if err != nil {
		(&API{}).storeErr(w, err)
		return
	}
	devs, err := a.Store.Devices(r.Context(), id)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	offline, err := a.Store.CountOffline(r.Context(), id)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	s := a.sessionsOf(id)
	httpjson.Write(w, http.StatusOK, map[string]any{"id": u.ID, "name": u.Name, "online": len(s) > 0, "sessions": s,
		"devices": deviceJSONs(devs), "offline": offline})
}

// DeviceJSON is one of a user's devices in the admin user view; Device is
// the hex key hash that kicking a device names.
type DeviceJSON struct {
	Device      string `json:"device"`
	Fingerprint string `json:"fingerprint"`
	FirstSeen   int64  `json:"first_seen"`
	LastSeen    int64  `json:"last_seen"`
	Addr        string `json:"addr"`
}

func deviceJSONs(ds []storage.Device) []DeviceJSON {
	out := make([]DeviceJSON, len(ds))
	for i, d := range ds {
		out[i] = DeviceJSON{Device: hex.EncodeToString(d.KeyHash[:]), Fingerprint: d.Fingerprint,
			FirstSeen: d.FirstSeen, LastSeen: d.LastSeen, Addr: d.Addr}
	}
	return out
}

// group shows a group to the operator: its record and how many of its
// messages the store holds (expired ones the sweep has not deleted yet
// included).
func (a *Admin) group(w http.ResponseWriter, r *http.Request) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	g, err := a.Store.GroupInfo(r.Context(), id)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	n, err := a.Store.CountGroupMsgs(r.Context(), id)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"id": g.ID, "name": g.Name, "owner": g.Owner,
		"highest_seq": g.HighestSeq, "members": g.Members, "stored_messages": n})
}

// kickDevice closes a user's sessions on one device, named by the hex hash
// of its key (the "device" of the online list).
func (a *Admin) kickDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	var dev [32]byte
	if b, err := hex.DecodeString(r.PathValue("device")); err != nil || len(b) != len(dev) {
		httpjson.Error(w, http.StatusBadRequest, "device must be the 64 hex digits of the device key hash")
		return
	} else {
		copy(dev[:], b)
	}
	if a.Endpoint == nil {
		httpjson.Error(w, http.StatusNotFound, "no endpoint on this node")
		return
	}
	n := a.Endpoint.KickDevice(id, dev)
	a.Logger.Info("admin kick device", "user", id, "device", r.PathValue("device"), "sessions", n)
	httpjson.Write(w, http.StatusOK, map[string]any{"user": id, "kicked": n})
}

// revoke refuses a token from now on and closes its sessions. The body
// names it by {"sid": "..."} (the online list shows it) or gives the
// {"token": "..."} itself.
func (a *Admin) revoke(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SID   string `json:"sid"`
		Token string `json:"token"`
	}
	if !httpjson.Read(w, r, &in) {
		return
	}
	until := time.Now().Add(session.MaxTokenTTL + session.Leeway)
	if in.Token != "" {
		claims, err := session.VerifyToken(a.Identity.TokenKeys(), in.Token, a.Identity.Audience, time.Now())
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "not a valid token of this cluster")
			return
		}
		in.SID, until = claims.SessionID, claims.ExpiresAt.Add(session.Leeway)
	}
	if in.SID == "" {
		httpjson.Error(w, http.StatusBadRequest, "sid or token required")
		return
	}
	if a.Endpoint == nil && a.Revocations == nil {
		httpjson.Error(w, http.StatusNotFound, "no endpoint on this node")
		return
	}
	if a.Revocations != nil {
		if err := a.Revocations.Revoke(r.Context(), in.SID, until); err != nil {
			a.Logger.Error("admin revoke: not shared with the cluster", "sid", in.SID, "err", err)
			httpjson.Error(w, http.StatusServiceUnavailable, "revocation not stored; try again")
			return
		}
	}
	n := 0
	if a.Endpoint != nil {
		n = a.Endpoint.Revoke(in.SID, until)
	}
	a.Logger.Info("admin revoke", "sid", in.SID, "sessions", n)
	httpjson.Write(w, http.StatusOK, map[string]any{"sid": in.SID, "kicked": n})
}

func (a *Admin) kick(w http.ResponseWriter, r *http.Request) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	if a.Endpoint == nil {
		httpjson.Error(w, http.StatusNotFound, "no endpoint on this node")
		return
	}
	n := a.Endpoint.Kick(id)
	a.Logger.Info("admin kick", "user", id, "sessions", n)
	httpjson.Write(w, http.StatusOK, map[string]any{"user": id, "kicked": n})
}

// drain starts or ends a drain. The body is optional: {"draining":false}
// undoes a drain, {"draining":true,"spread":"30s"} (or no body) starts
// one, the move notices spread over "spread" (default: all at once).
func (a *Admin) drain(w http.ResponseWriter, r *http.Request) {
	if a.Endpoint == nil {
		httpjson.Error(w, http.StatusNotFound, "no endpoint on this node")
		return
	}
	in := struct {
		Draining *bool  `json:"draining"`
		Spread   string `json:"spread"`
	}{}
	if r.ContentLength != 0 {
		b, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
		if err != nil || (len(strings.TrimSpace(string(b))) > 0 && sonic.Unmarshal(b, &in) != nil) {
			httpjson.Error(w, http.StatusBadRequest, `body must be {"draining":true|false,"spread":"30s"}`)
			return
		}
	}
	var spread time.Duration
	if in.Spread != "" {
		d, err := time.ParseDuration(in.Spread)
		if err != nil || d < 0 || d > time.Hour {
			httpjson.Error(w, http.StatusBadRequest, "spread must be a duration up to 1h")
			return
		}
		spread = d
	}
	if in.Draining != nil && !*in.Draining {
		a.Endpoint.Undrain()
		if a.Node != nil {
			a.Node.SetDraining(false)
		}
		if a.OnDrain != nil {
			a.OnDrain(false)
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"draining": false, "sessions": a.Endpoint.Sessions()})
		return
	}
	n := a.Endpoint.DrainOver(spread)
	if a.OnDrain != nil {
		a.OnDrain(true)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"draining": true, "notified": n, "sessions": a.Endpoint.Sessions()})
}

func (a *Admin) drainState(w http.ResponseWriter, r *http.Request) {
	if a.Endpoint == nil {
		httpjson.Error(w, http.StatusNotFound, "no endpoint on this node")
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"draining": a.Endpoint.Draining(), "sessions": a.Endpoint.Sessions()})
}

// BulkUser is one entry of POST /v1/admin/users/bulk's answer.
type BulkUser struct {
	Name string `json:"name"`
	ID   uint64 `json:"id"`
}

// bulkUsers creates users prefix+N for N in [first, first+count), all with
// one password, hashed once; existing names are kept and listed.
func (a *Admin) bulkUsers(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Prefix   string `json:"prefix"`
		First    int64  `json:"first"`
		Count    int    `json:"count"`
		Password string `json:"password"`
	}
	if !readAdminJSON(w, r, &in) {
		return
	}
	switch {
	case in.Count <= 0 || in.Count > maxAdminBatch:
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("count must be 1 to %d", maxAdminBatch))
		return
	case in.First < 0:
		httpjson.Error(w, http.StatusBadRequest, "first must not be negative")
		return
	}
	if msg := checkCredentials(in.Prefix+strconv.FormatInt(in.First+int64(in.Count)-1, 10), in.Password); msg != "" {
		httpjson.Error(w, http.StatusBadRequest, "prefix+N: "+msg)
		return
	}
	ctx := r.Context()
	hash, err := a.Hasher.Hash(ctx, []byte(in.Password))
	if err != nil {
		httpjson.Error(w, http.StatusServiceUnavailable, "busy; retry")
		return
	}
	users := make([]BulkUser, in.Count)
	var (
		created  int
		firstErr error
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range bulkCreateProcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := in.Prefix + strconv.FormatInt(in.First+int64(i), 10)
				id, isNew, err := a.ensureUser(ctx, name, hash)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if isNew {
					created++
				}
				mu.Unlock()
				users[i] = BulkUser{Name: name, ID: id}
			}
		}()
	}
feed:
	for i := range in.Count {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		a.Logger.Warn("admin bulk users failed", "prefix", in.Prefix, "created", created, "err", firstErr)
		(&API{}).storeErr(w, firstErr)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"users": users, "created": created})
}

// ensureUser returns the id of the user called name, creating it with hash
// if it does not exist.
func (a *Admin) ensureUser(ctx context.Context, name, hash string) (uint64, bool, error) {
	if u, err := a.Store.UserByName(ctx, name); err == nil {
		return u.ID, false, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return 0, false, err
	}
	id, err := a.Store.CreateUser(ctx, storage.User{Name: name, PassHash: hash, CreatedAt: time.Now().UnixMilli()})
	if errors.Is(err, storage.ErrExists) { // created meanwhile
		u, err := a.Store.UserByName(ctx, name)
		return u.ID, false, err
	}
	return id, err == nil, err
}

// tokens issues access tokens for users, bound to one device key, as the
// login service would after a password check.
func (a *Admin) tokens(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Users     []uint64 `json:"users"`
		DeviceKey string   `json:"device_key"`
		TTL       string   `json:"ttl"`
	}
	if !readAdminJSON(w, r, &in) {
		return
	}
	if len(in.Users) == 0 || len(in.Users) > maxAdminBatch {
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("users must list 1 to %d ids", maxAdminBatch))
		return
	}
	key, err := base64.StdEncoding.DecodeString(in.DeviceKey)
	if err != nil || len(key) != 32 {
		httpjson.Error(w, http.StatusBadRequest, "device_key must be a standard base64 32-byte X25519 public key")
		return
	}
	ttl := time.Hour
	if in.TTL != "" {
		if ttl, err = time.ParseDuration(in.TTL); err != nil || ttl <= 0 || ttl > session.MaxTokenTTL {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("ttl must be a duration up to %v", session.MaxTokenTTL))
			return
		}
	}
	now := time.Now()
	toks := make([]string, len(in.Users))
	for i, u := range in.Users {
		if u == 0 {
			httpjson.Error(w, http.StatusBadRequest, "user id 0")
			return
		}
		toks[i], err = session.IssueToken(a.Identity.TokenKey, session.TokenRequest{UserID: u,
			Audience: a.Identity.Audience, DeviceKey: key, TTL: ttl}, now)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "token: "+err.Error())
			return
		}
	}
	servers := []login.ServerInfo{}
	if a.Servers != nil {
		servers = a.Servers(r.Context())
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"tokens": toks, "servers": servers,
		"expires_at": now.Add(ttl).UnixMilli()})
}

// invite issues a single-use registration code.
func (a *Admin) invite(w http.ResponseWriter, r *http.Request) {
	code, exp, err := a.Invites.Issue(r.Context(), 0)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, map[string]any{"code": code, "expires_at": exp.UnixMilli()})
}
