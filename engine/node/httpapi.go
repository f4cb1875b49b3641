package node

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/myim/myim/engine/center"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/internal/httpjson"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// API serves MyIM's HTTP API: registration, friendships and groups. JSON in
// and out through sonic; errors are {"error": "..."} with a 4xx or 5xx code.
type API struct {
	Store    storage.Store
	Hasher   *session.Hasher
	Identity *clusterca.Identity
	// Center, when set, is told about friendship changes (each friend then
	// sees the other's presence) and serves profile updates and the file
	// routes; nil is fine (a login-only node), and those routes answer 404.
	Center *center.LocalCenter
	// Registration is RegistrationOpen (""), RegistrationInvite or
	// RegistrationClosed; Invites holds the codes of the invite mode and
	// serves POST /v1/invites.
	Registration string
	Invites      *Invites
	// RegisterRate, when set, limits registrations per client address
	// (checked before anything is hashed).
	RegisterRate *AddrRate
	// Revocations, when set, refuses revoked tokens (the same list the
	// endpoint checks).
	Revocations *clusterca.RevocationList

	lookups     *center.LookupBudget // name lookups when there is no Center
	lookupsOnce sync.Once
}

// Register adds the API's routes to a node.
func (a *API) Register(n *Node) {
	n.HandleHTTP("POST /v1/users", http.HandlerFunc(a.createUser))
	a.lookupsOnce.Do(func() { a.lookups = center.NewLookupBudget(center.NameLookups) })
	n.HandleHTTP("GET /v1/users", a.authed(a.findUserHTTP))
	n.HandleHTTP("POST /v1/friends/requests", a.authed(a.requestFriend))
	n.HandleHTTP("POST /v1/friends/accept", a.authed(a.acceptFriend))
	n.HandleHTTP("DELETE /v1/friends/{id}", a.authed(a.removeFriend))
	n.HandleHTTP("GET /v1/friends", a.authed(a.listFriends))
	n.HandleHTTP("POST /v1/groups", a.authed(a.groupRoute(frame.GroupCreate, http.StatusCreated)))
	n.HandleHTTP("GET /v1/groups", a.authed(a.groupRoute(frame.GroupList, http.StatusOK)))
	n.HandleHTTP("PATCH /v1/groups/{id}", a.authed(a.groupRoute(frame.GroupOpen, http.StatusOK)))
	n.HandleHTTP("POST /v1/groups/{id}/join", a.authed(a.groupRoute(frame.GroupJoin, http.StatusOK)))
	n.HandleHTTP("POST /v1/groups/{id}/leave", a.authed(a.groupRoute(frame.GroupLeave, http.StatusNoContent)))
	n.HandleHTTP("GET /v1/groups/{id}/members", a.authed(a.groupRoute(frame.GroupMembers, http.StatusOK)))
	n.HandleHTTP("POST /v1/groups/{id}/invite", a.authed(a.groupRoute(frame.GroupInvite, http.StatusOK)))
	n.HandleHTTP("POST /v1/groups/{id}/remove", a.authed(a.groupRoute(frame.GroupRemove, http.StatusOK)))
	n.HandleHTTP("POST /v1/groups/{id}/role", a.authed(a.groupRoute(frame.GroupRole, http.StatusOK)))
	n.HandleHTTP("PUT /v1/me", a.authed(a.putMe))
	if a.Invites != nil {
		n.HandleHTTP("POST /v1/invites", a.authed(a.issueInvite))
	}
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Password bounds: NIST SP 800-63B asks for at least 8 characters and
// allows long passphrases; the upper bound matches the login request's.
const (
	minPassword = 8
	maxPassword = session.MaxPassword
)

// storeErr answers a failed Store call through the one mapping of
// refusal.go.
func (a *API) storeErr(w http.ResponseWriter, err error) { center.WriteRefusal(w, err) }

// checkCredentials returns why a name or password is refused, or "".
func checkCredentials(name, password string) string {
	switch {
	case !nameRe.MatchString(name):
		return "name must be 1 to 64 letters, digits, '_', '.' or '-'"
	case len(password) < minPassword:
		return "password must be at least 8 characters"
	case len(password) > maxPassword:
		return "password too long"
	}
	return ""
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Invite   string `json:"invite"`
	}
	if a.Registration == RegistrationClosed {
		httpjson.Error(w, http.StatusForbidden, "registration closed")
		return
	}
	if a.RegisterRate != nil {
		if ok, wait := a.RegisterRate.Allow(clientHost(r.RemoteAddr)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			httpjson.Error(w, http.StatusTooManyRequests, "too many registrations from this address; retry later")
			return
		}
	}
	if !httpjson.Read(w, r, &in) {
		return
	}
	if msg := checkCredentials(in.Name, in.Password); msg != "" {
		httpjson.Error(w, http.StatusBadRequest, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	created := false
	if a.Registration == RegistrationInvite {
		// The code is used up before anything is hashed: a request without
		// one costs no hash.
		err := storage.ErrNotFound
		var inv storage.Invite
		if a.Invites != nil && in.Invite != "" {
			inv, err = a.Invites.take(ctx, in.Invite)
		}
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				httpjson.Error(w, http.StatusForbidden, "a valid invite code is required")
			} else {
				a.storeErr(w, err)
			}
			return
		}
		defer func() {
			if !created {
				a.Invites.give(inv) // the code was not used up
			}
		}()
	}
	// The hash comes first, for a taken name too: the answer's timing does
	// not tell which names exist.
	hash, err := a.Hasher.Hash(ctx, []byte(in.Password))
	if err != nil {
		httpjson.Error(w, http.StatusServiceUnavailable, "busy; retry")
		return
	}
	id, err := a.Store.CreateUser(ctx, storage.User{Name: in.Name, PassHash: hash, CreatedAt: time.Now().UnixMilli()})
	if err != nil {
		if errors.Is(err, storage.ErrExists) {
			httpjson.Error(w, http.StatusConflict, "name taken")
			return
		}
		a.storeErr(w, err)
		return
	}
	created = true
	httpjson.Write(w, http.StatusCreated, map[string]any{"id": id, "name": in.Name})
}

type authedFunc func(w http.ResponseWriter, r *http.Request, user uint64)

// authed checks the bearer token (the one the login service issued).
func (a *API) authed(f authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			httpjson.Error(w, http.StatusUnauthorized, "bearer token required")
			return
		}
		claims, err := session.VerifyToken(a.Identity.TokenKeys(), tok, a.Identity.Audience, time.Now())
		if err != nil {
			httpjson.Error(w, http.StatusUnauthorized, "invalid token")
			return
		}
		if a.Revocations != nil && a.Revocations.Has(claims.SessionID) {
			httpjson.Error(w, http.StatusUnauthorized, "token revoked")
			return
		}
		f(w, r, claims.UserID)
	})
}

func (a *API) requestFriend(w http.ResponseWriter, r *http.Request, user uint64) {
	var in struct {
		To uint64 `json:"to"`
	}
	if !httpjson.Read(w, r, &in) {
		return
	}
	if in.To == 0 || in.To == user {
		httpjson.Error(w, http.StatusBadRequest, "bad friend id")
		return
	}
	if _, err := a.Store.UserByID(r.Context(), in.To); err != nil {
		a.storeErr(w, err)
		return
	}
	if err := a.Store.RequestFriend(r.Context(), user, in.To); err != nil {
		a.storeErr(w, err)
		return
	}
	httpjson.Write(w, http.StatusAccepted, map[string]any{"from": user, "to": in.To, "state": "requested"})
}

func (a *API) acceptFriend(w http.ResponseWriter, r *http.Request, user uint64) {
	var in struct {
		From uint64 `json:"from"`
	}
	if !httpjson.Read(w, r, &in) {
		return
	}
	if err := a.Store.AcceptFriend(r.Context(), user, in.From); err != nil {
		a.storeErr(w, err)
		return
	}
	if a.Center != nil { // each now sees the other's presence
		a.Center.Announce(user, in.From)
		a.Center.Announce(in.From, user)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"user": user, "friend": in.From, "state": "friends"})
}

func (a *API) removeFriend(w http.ResponseWriter, r *http.Request, user uint64) {
	id, ok := httpjson.PathID(w, r)
	if !ok {
		return
	}
	if err := a.Store.RemoveFriend(r.Context(), user, id); err != nil {
		a.storeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listFriends(w http.ResponseWriter, r *http.Request, user uint64) {
	friends, err := a.Store.Friends(r.Context(), user)
	if err != nil {
		a.storeErr(w, err)
		return
	}
	pending, err := a.Store.PendingFriendRequests(r.Context(), user)
	if err != nil {
		a.storeErr(w, err)
		return
	}
	if friends == nil {
		friends = []uint64{}
	}
	if pending == nil {
		pending = []uint64{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"friends": friends, "requests": pending})
}

// groupRoute serves a group operation (groups.go) over HTTP: the path's
// {id} is the group (none for create and list), the body the request JSON;
// the answer is the JSON a GROUP frame gets, with status ok, or the
// refusal's status.
func (a *API) groupRoute(op byte, ok int) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, user uint64) {
		var group uint64
		if r.PathValue("id") != "" {
			id, good := httpjson.PathID(w, r)
			if !good {
				return
			}
			group = id
		}
		var in center.GroupRequest
		if r.Method != http.MethodGet && r.ContentLength != 0 && !httpjson.Read(w, r, &in) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		out, err := center.GroupOp(ctx, a.Store, user, op, group, in)
		if err != nil {
			ge := center.GroupFailure(err)
			httpjson.Error(w, ge.Status, ge.Msg)
			return
		}
		if ok == http.StatusNoContent {
			w.WriteHeader(ok)
			return
		}
		httpjson.Write(w, ok, out)
	}
}

// putMe sets the caller's signature and profile (profile.go). It needs the
// center, which reads presence for the answer.
func (a *API) putMe(w http.ResponseWriter, r *http.Request, user uint64) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "body must be a JSON object")
		return
	}
	in, err := center.ParseProfile(b)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	if a.Center == nil {
		httpjson.Error(w, http.StatusNotFound, "no center on this node")
		return
	}
	j, err := a.Center.UpdateProfile(r.Context(), user, in)
	if err != nil {
		center.WriteRefusal(w, err)
		return
	}
	httpjson.Write(w, http.StatusOK, j)
}

// issueInvite gives a user a registration code, when Invites.PerUser lets
// users issue them.
func (a *API) issueInvite(w http.ResponseWriter, r *http.Request, user uint64) {
	code, exp, err := a.Invites.Issue(r.Context(), user)
	switch {
	case errors.Is(err, ErrNoInviteRight):
		httpjson.Error(w, http.StatusForbidden, "users may not issue invites on this server")
	case errors.Is(err, ErrInvitesUsedUp):
		httpjson.Error(w, http.StatusForbidden, "invite allowance used up")
	case err != nil:
		a.storeErr(w, err)
	default:
		httpjson.Write(w, http.StatusCreated, map[string]any{"code": code, "expires_at": exp.UnixMilli()})
	}
}

// clientHost is the host part of a client's address (the whole address
// when it has no port).
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// findUserHTTP serves GET /v1/users?name=N.
func (a *API) findUserHTTP(w http.ResponseWriter, r *http.Request, user uint64) {
	b := a.lookups
	if a.Center != nil {
		b = a.Center.NameLookupBudget() // one budget for frames and HTTP
	}
	u, err := center.FindUser(r.Context(), a.Store, b, user, r.URL.Query().Get("name"))
	switch {
	case errors.Is(err, center.ErrLookupLimit):
		w.Header().Set("Retry-After", "60")
		httpjson.Error(w, http.StatusTooManyRequests, "too many lookups; retry later")
	case errors.Is(err, storage.ErrNotFound):
		httpjson.Error(w, http.StatusNotFound, "no such user")
	case err != nil:
		a.storeErr(w, err)
	default:
		httpjson.Write(w, http.StatusOK, center.UserCard{User: u.ID, Name: u.Name, Signature: u.Signature})
	}
}

// RegisterFiles adds the file server's routes (files_http.go); a no-op
// when the node has no center or its center no file server.
func (a *API) RegisterFiles(n *Node) {
	if a.Center != nil {
		a.Center.RegisterFiles(n.HandleHTTP,
			func(f func(http.ResponseWriter, *http.Request, uint64)) http.Handler { return a.authed(f) })
	}
}
