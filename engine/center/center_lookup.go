package center

import (
	"context"
	"errors"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/route"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// maxFetch is the storage layer's cap on one fetch.
const maxFetch = 1000

// fetch sends a page of offline messages, then a FETCH answer. Cursor 0
// starts from the lowest MID; any other cursor continues after the last
// message this session was sent by a fetch. A p2p fetch skips what the
// session already has (the drain pushes stored messages by itself) and
// stops at the horizon.
func (c *LocalCenter) fetch(user uint64, s im.SessionRef, req uint32, kind byte, cursor uint64, count uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limit := int(count)
	if limit <= 0 || limit > maxFetch {
		limit = 100
	}
	var st *sessState
	c.routes.Lookup(user, func(a route.Addr, v any) {
		if a.Session == s.Session {
			st = v.(*sessState)
		}
	})
	if st == nil {
		return
	}
	var sent int
	var more, ok bool
	var last uint64
	switch kind {
	case frame.FetchP2P:
		defer c.resumeDrain(user, st) // the rest, and back to live pushes
		sent, more, last, ok = c.fetchP2P(ctx, user, s, st, req, cursor, limit)
	case frame.FetchGroup:
		sent, more, last, ok = c.fetchGroups(ctx, user, s, st, req, cursor, limit)
	default:
		c.errorTo(s, frame.ErrCodeBadRequest, uint64(req), "unknown fetch kind")
		return
	}
	if !ok {
		return // the store failed; the session was told
	}
	var flags byte
	if more {
		flags = frame.FetchMore
	}
	b, _ := frame.AppendFetch(nil, req, kind, flags, last, uint16(sent))
	c.sendRef(s, b)
}

// fetchP2P answers a FETCH of stored point-to-point messages: it pushes up
// to limit of them past the session's cursor (from the start when cursor
// is 0) that the drain would not push itself, holding the session's pushMu
// so that no drain pushes meanwhile. ok is false when the store failed
// (the session was told).
func (c *LocalCenter) fetchP2P(ctx context.Context, user uint64, s im.SessionRef, st *sessState, req uint32,
	cursor uint64, limit int) (sent int, more bool, last uint64, ok bool) {
	st.pushMu.Lock()
	st.mu.Lock()
	st.holdUntil = 0
	if cursor == 0 {
		st.fetchAfter = 0
	}
	after := st.fetchAfter
	have := len(st.flight) + len(st.acked)
	st.mu.Unlock()
	defer st.beginRead()() // center_acks.go: acks of what the read returns stay visible
	h := min(c.horizon(user, st), c.storingFloor(user))
	msgs, err := c.cfg.Store.FetchOffline(ctx, user, after, min(limit+have+1, maxFetch))
	if err != nil {
		st.pushMu.Unlock()
		c.storeError(s, req, err)
		return 0, false, 0, false
	}
	for _, m := range msgs {
		if st.has(m.MID) {
			continue
		}
		if m.MID >= h {
			break // the drain pushes it once the horizon moves
		}
		if sent == limit {
			more = true
			break
		}
		if !c.pushStored(st, m.MID, appendStored(m, s.Endpoint)) {
			break // refused: the drain pushes it and what follows, in order
		}
		sent++
		last = m.MID
		st.mu.Lock()
		st.fetchAfter = m.MID
		st.mu.Unlock()
	}
	if !more && len(msgs) == min(limit+have+1, maxFetch) && sent > 0 {
		more = true // a full read: there may be more past it
	}
	st.pushMu.Unlock()
	return sent, more, last, true
}

// fetchGroups answers a FETCH of group messages: the user's groups in
// ascending id, each from the session's cursor or its own ack, up to limit
// messages in all. ok is false when the store failed (the session was
// told).
func (c *LocalCenter) fetchGroups(ctx context.Context, user uint64, s im.SessionRef, st *sessState, req uint32,
	cursor uint64, limit int) (sent int, more bool, last uint64, ok bool) {
	groups, err := c.cfg.Store.UserGroups(ctx, user)
	if err != nil {
		c.storeError(s, req, err)
		return 0, false, 0, false
	}
	// Groups are walked in ascending id and each from its cursor: the
	// last (group, seq) this session was sent, or its own ack.
	st.mu.Lock()
	if cursor == 0 {
		st.gCurGroup, st.gCurSeq = 0, 0
	}
	curGroup, curSeq := st.gCurGroup, st.gCurSeq
	st.mu.Unlock()
	for _, g := range groups {
		if g < curGroup {
			continue
		}
		after := uint64(0)
		if g == curGroup {
			after = curSeq
		}
		st.mu.Lock()
		after = max(after, st.groupAcked[g])
		st.mu.Unlock()
		msgs, err := c.cfg.Store.FetchGroup(ctx, g, user, after, limit-sent+1)
		if errors.Is(err, storage.ErrNotFound) {
			continue // left the group meanwhile
		}
		if err != nil {
			c.storeError(s, req, err)
			return 0, false, 0, false
		}
		for _, m := range msgs {
			if sent == limit {
				more = true
				break
			}
			b, _ := frame.AppendMsg(nil, frame.CmdGroupMsg, frame.QoS1, frame.MsgHeader{From: m.From, To: g,
				Time: m.Time, CID: m.CID, MID: m.Seq, DSrv: s.Endpoint}, m.Content)
			if c.sendRef(s, b) {
				sent++
			}
			last = m.Seq
			st.mu.Lock()
			st.gCurGroup, st.gCurSeq = g, m.Seq
			st.mu.Unlock()
		}
		if more {
			break
		}
	}
	return sent, more, last, true
}

// UserJSON is what SIGNATURE, FRIEND_INFO and PROFILE answer. Status and
// Text, the live presence, are there only when the asker is the user or a
// friend of the user: presence is never shown to others.
type UserJSON struct {
	User      uint64 `json:"user"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
	Status    *byte  `json:"status,omitempty"`
	Text      string `json:"text,omitempty"`
	Profile   any    `json:"profile,omitempty"`
}

// FriendStatus is one entry of a FRIENDS_ONLINE answer. Text is the
// friend's status text when its status comes from a session on this
// center (the route table of a cluster carries statuses, not texts).
type FriendStatus struct {
	User   uint64 `json:"user"`
	Status byte   `json:"status"`
	Text   string `json:"text,omitempty"`
}

// presenceOf is friendStatus with the status text: the text of this
// center's sessions when they hold the status shown.
func (c *LocalCenter) presenceOf(ctx context.Context, user uint64) (byte, string) {
	return c.withText(user, c.friendStatus(ctx, user))
}

// withText returns st and, when this center's sessions of user show st, their text.
func (c *LocalCenter) withText(user uint64, st byte) (byte, string) {
	if local, text := c.statusText(user); local == st && st != frame.StatusOffline {
		return st, text
	}
	return st, ""
}

func (c *LocalCenter) lookup(user uint64, s im.SessionRef, cmd frame.Cmd, req uint32, target uint64, js []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if js != nil {
		var ok bool
		if target, ok = c.lookupName(ctx, user, s, req, target, js); !ok {
			return
		}
	} else if cmd == frame.CmdSignature && target != 0 && target != user && !c.isFriend(ctx, user, target) &&
		!c.strangerLookups.take(user) {
		c.errorTo(s, frame.ErrCodeRetry, uint64(req), ErrLookupLimit.Error())
		return
	}
	if target == 0 {
		target = user
	}
	var doc any
	switch cmd {
	case frame.CmdSignature, frame.CmdFriendInfo:
		friend := target == user || c.isFriend(ctx, user, target)
		if cmd == frame.CmdFriendInfo && !friend {
			c.storeError(s, req, errNotFriend)
			return
		}
		u, err := c.cfg.Store.UserByID(ctx, target)
		if err != nil {
			c.storeError(s, req, err)
			return
		}
		j := UserJSON{User: u.ID, Name: u.Name, Signature: u.Signature}
		if friend { // presence only to the user and its friends
			st, text := c.presenceOf(ctx, u.ID)
			j.Status, j.Text = &st, text
		}
		if cmd == frame.CmdFriendInfo && len(u.Profile) > 0 {
			var p any
			if sonic.Unmarshal(u.Profile, &p) == nil {
				j.Profile = p
			}
		}
		doc = j
	case frame.CmdFriendsOnline:
		friends, err := c.cfg.Store.Friends(ctx, user)
		if err != nil {
			c.storeError(s, req, err)
			return
		}
		sts := make([]byte, len(friends))
		c.friendStatuses(ctx, friends, sts)
		list := make([]FriendStatus, 0, len(friends))
		for i, f := range friends {
			if sts[i] != frame.StatusOffline {
				_, text := c.withText(f, sts[i])
				list = append(list, FriendStatus{User: f, Status: sts[i], Text: text})
			}
		}
		doc = list
	case frame.CmdServerList:
		var list []session.ServerInfo
		if c.cfg.Servers != nil {
			list = c.cfg.Servers(ctx)
		}
		doc = list
	}
	j, err := sonic.Marshal(doc)
	if err != nil {
		c.errorTo(s, frame.ErrCodeInternal, uint64(req), "encode")
		return
	}
	b, _ := frame.AppendLookup(nil, cmd, req, target, j)
	c.sendRef(s, b)
}

func (c *LocalCenter) isFriend(ctx context.Context, a, b uint64) bool {
	friends, err := c.cfg.Store.Friends(ctx, a)
	if err != nil {
		return false
	}
	for _, f := range friends {
		if f == b {
			return true
		}
	}
	return false
}

// storeError answers a failed request through the one mapping of
// refusal.go.
func (c *LocalCenter) storeError(s im.SessionRef, req uint32, err error) {
	c.refuseErr(s, uint64(req), err)
}
