package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

type groupRec struct {
	owner, highest uint64
	members        uint32
	createdAt      int64
	name           string
	open           bool
}

func (s *store) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	if err := backend.CheckName("group name", name); err != nil {
		return 0, err
	}
	if owner == 0 {
		return 0, fmt.Errorf("%w: group without owner", storage.ErrInvalid)
	}
	now := backend.NowMilli()
	var id uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		groups := tx.Bucket(bktGroups)
		var err error
		if id, err = groups.NextSequence(); err != nil {
			return err
		}
		g := groupRec{owner: owner, members: 1, createdAt: now, name: name}
		if err := groups.Put(be64(id), encodeGroup(&g)); err != nil {
			return err
		}
		return putMember(tx, id, owner, storage.Member{User: owner, JoinedAt: now})
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func getGroup(tx *bbolt.Tx, id uint64) (groupRec, error) {
	var g groupRec
	v := tx.Bucket(bktGroups).Get(be64(id))
	if v == nil {
		return g, fmt.Errorf("%w: group %d", storage.ErrNotFound, id)
	}
	return g, decodeGroup(v, &g)
}

func getMember(tx *bbolt.Tx, group, user uint64) (storage.Member, bool, error) {
	v := tx.Bucket(bktGMembers).Get(pair(group, user))
	if v == nil {
		return storage.Member{}, false, nil
	}
	m, err := decodeMember(user, v)
	return m, err == nil, err
}

func putMember(tx *bbolt.Tx, group, user uint64, m storage.Member) error {
	v := make([]byte, 0, 25)
	v = binary.BigEndian.AppendUint64(v, m.JoinSeq)
	v = binary.BigEndian.AppendUint64(v, m.AckedSeq)
	v = binary.BigEndian.AppendUint64(v, uint64(m.JoinedAt))
	v = append(v, m.Role)
	if err := tx.Bucket(bktGMembers).Put(pair(group, user), v); err != nil {
		return err
	}
	return tx.Bucket(bktUGroups).Put(pair(user, group), nil)
}

func (s *store) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	if user == 0 {
		return 0, fmt.Errorf("%w: user 0", storage.ErrInvalid)
	}
	now := backend.NowMilli()
	var joinSeq uint64
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if ok {
			joinSeq = m.JoinSeq
			return nil
		}
		joinSeq = g.highest
		if err := putMember(tx, group, user, storage.Member{User: user, JoinSeq: g.highest, JoinedAt: now}); err != nil {
			return err
		}
		g.members++
		return tx.Bucket(bktGroups).Put(be64(group), encodeGroup(&g))
	})
	return joinSeq, err
}

func (s *store) LeaveGroup(ctx context.Context, group, user uint64) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil || !ok {
			return err
		}
		// Whatever was waiting for this member counts as delivered.
		if err := countDelivered(tx, group, max(m.JoinSeq, m.AckedSeq), g.highest); err != nil {
			return err
		}
		if err := tx.Bucket(bktGMembers).Delete(pair(group, user)); err != nil {
			return err
		}
		if err := tx.Bucket(bktUGroups).Delete(pair(user, group)); err != nil {
			return err
		}
		g.members--
		return tx.Bucket(bktGroups).Put(be64(group), encodeGroup(&g))
	})
}

// countDelivered adds 1 to SentCount of the group's stored messages in
// (from, to] and deletes those that reached MemberCount.
func countDelivered(tx *bbolt.Tx, group, from, to uint64) error {
	return countDeliveredRanges(tx, group, []seqRange{{from, to}})
}

func (s *store) GroupMembers(ctx context.Context, group uint64) ([]storage.Member, error) {
	var out []storage.Member
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		out = make([]storage.Member, 0, g.members)
		prefix := be64(group)
		c := tx.Bucket(bktGMembers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			m, err := decodeMember(binary.BigEndian.Uint64(k[8:]), v)
			if err != nil {
				return err
			}
			if m.User == g.owner {
				m.Role = storage.RoleOwner
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *store) GroupInfo(ctx context.Context, group uint64) (storage.Group, error) {
	var out storage.Group
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		out = storage.Group{ID: group, Name: g.name, Owner: g.owner, HighestSeq: g.highest, Members: int(g.members), Open: g.open}
		return nil
	})
	return out, err
}

func (s *store) SetGroupOpen(ctx context.Context, group uint64, open bool) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		g.open = open
		return tx.Bucket(bktGroups).Put(be64(group), encodeGroup(&g))
	})
}

func (s *store) SetGroupRole(ctx context.Context, group, user uint64, role uint8) error {
	if role != storage.RoleMember && role != storage.RoleAdmin {
		return fmt.Errorf("%w: role %d cannot be given", storage.ErrInvalid, role)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		if user == g.owner {
			return fmt.Errorf("%w: the owner's role does not change", storage.ErrInvalid)
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", storage.ErrNotFound, user, group)
		}
		m.Role = role
		return putMember(tx, group, user, m)
	})
}

func (s *store) AppendGroupMsg(ctx context.Context, m storage.GroupMessage) (uint64, error) {
	ms := [1]storage.GroupMessage{m}
	if err := s.AppendGroupMsgs(ctx, ms[:]); err != nil {
		return 0, err
	}
	return ms[0].Seq, nil
}

func (s *store) AppendGroupMsgs(ctx context.Context, ms []storage.GroupMessage) error {
	if len(ms) == 0 {
		return s.begin(ctx)
	}
	for i := range ms {
		if err := backend.CheckGroupMsg(&ms[i]); err != nil {
			return err
		}
	}
	return s.batch(ctx, func(tx *bbolt.Tx) error {
		for i := range ms {
			if err := appendGroupMsg(tx, &ms[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendGroupMsg stores m under its group's next seq, which it sets in m.
// A later call in the same transaction sees the group as this one left it.
func appendGroupMsg(tx *bbolt.Tx, m *storage.GroupMessage) error {
	g, err := getGroup(tx, m.Group)
	if err != nil {
		return err
	}
	g.highest++
	m.Seq, m.SentCount, m.MemberCount = g.highest, 0, g.members
	if err := tx.Bucket(bktGMsgs).Put(pair(m.Group, m.Seq), encodeGroupMsg(m)); err != nil {
		return err
	}
	if m.ExpiresAt != 0 {
		if err := tx.Bucket(bktGExp).Put(expKey(m.ExpiresAt, m.Group, m.Seq), nil); err != nil {
			return err
		}
	}
	return tx.Bucket(bktGroups).Put(be64(m.Group), encodeGroup(&g))
}

func (s *store) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]storage.GroupMessage, error) {
	limit = backend.ClampLimit(limit)
	now := backend.NowMilli()
	var out []storage.GroupMessage
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if _, err := getGroup(tx, group); err != nil {
			return err
		}
		mem, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", storage.ErrNotFound, user, group)
		}
		floor := max(afterSeq, mem.JoinSeq, mem.AckedSeq)
		if floor == ^uint64(0) {
			return nil
		}
		prefix := be64(group)
		c := tx.Bucket(bktGMsgs).Cursor()
		for k, v := c.Seek(pair(group, floor+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var gm storage.GroupMessage
			if err := decodeGroupMsg(k, v, &gm); err != nil {
				return err
			}
			if gm.ExpiresAt != 0 && gm.ExpiresAt <= now {
				continue
			}
			out = append(out, gm)
		}
		return nil
	})
	return out, err
}

func (s *store) AckGroup(ctx context.Context, group, user, seq uint64) error {
	return s.batch(ctx, func(tx *bbolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", storage.ErrNotFound, user, group)
		}
		upTo := min(seq, g.highest)
		floor := max(m.JoinSeq, m.AckedSeq)
		if upTo <= floor {
			return nil
		}
		if err := countDelivered(tx, group, floor, upTo); err != nil {
			return err
		}
		m.AckedSeq = upTo
		return putMember(tx, group, user, m)
	})
}

// purgeBatch bounds the messages one purge transaction deletes, as the
// MySQL backend bounds one purge DELETE (10,000 rows): a large backlog does
// not make one huge commit that holds the writer lock.
const purgeBatch = 10000

// PurgeExpiredGroupMsgs deletes in transactions of at most purgeBatch
// messages.
func (s *store) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
	total := 0
	for {
		var n int
		err := s.update(ctx, func(tx *bbolt.Tx) error {
			var keys [][]byte
			// Only ExpiresAt in [1, now] qualifies; 0 means never.
			end := putTime(nil, now)
			c := tx.Bucket(bktGExp).Cursor()
			for k, _ := c.Seek(putTime(nil, 1)); k != nil && bytes.Compare(k[:8], end) <= 0 &&
				len(keys) < purgeBatch; k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			exp, msgs := tx.Bucket(bktGExp), tx.Bucket(bktGMsgs)
			for _, k := range keys {
				if err := exp.Delete(k); err != nil {
					return err
				}
				if err := msgs.Delete(k[8:]); err != nil {
					return err
				}
			}
			n = len(keys)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}
