package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

func (s *store) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	if err := backend.CheckName("group name", name); err != nil {
		return 0, err
	}
	if owner == 0 {
		return 0, fmt.Errorf("%w: group without owner", storage.ErrInvalid)
	}
	now := backend.NowMilli()
	var id uint64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO im_groups (name, owner, highest_seq, members, created_at)
			VALUES (?, ?, 0, 1, ?)`, name, owner, now)
		if err != nil {
			return err
		}
		gid, err := res.LastInsertId()
		if err != nil {
			return err
		}
		id = uint64(gid)
		_, err = tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id, join_seq, acked_seq, joined_at)
			VALUES (?, ?, 0, 0, ?)`, id, owner, now)
		return err
	})
	if err != nil {
		return 0, s.fail("create group", err)
	}
	return id, nil
}

// lockGroup reads the group row FOR UPDATE: the lock that serialises seq
// assignment, joins and leaves of one group.
func lockGroup(ctx context.Context, tx *sql.Tx, group uint64) (highest uint64, members uint32, err error) {
	err = tx.QueryRowContext(ctx, "SELECT highest_seq, members FROM im_groups WHERE id = ? FOR UPDATE", group).
		Scan(&highest, &members)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("%w: group %d", storage.ErrNotFound, group)
	}
	return highest, members, err
}

func (s *store) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	if user == 0 {
		return 0, fmt.Errorf("%w: user 0", storage.ErrInvalid)
	}
	now := backend.NowMilli()
	var joinSeq uint64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		highest, _, err := lockGroup(ctx, tx, group)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, "SELECT join_seq FROM group_members WHERE group_id = ? AND user_id = ? FOR UPDATE",
			group, user).Scan(&joinSeq)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		joinSeq = highest
		if _, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id, join_seq, acked_seq, joined_at)
			VALUES (?, ?, ?, 0, ?)`, group, user, highest, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE im_groups SET members = members + 1 WHERE id = ?", group)
		return err
	})
	if err != nil {
		return 0, s.fail("join group", err)
	}
	return joinSeq, nil
}

// sqlCountDelivered adds 1 to sent_count of the group's messages in (from, to]
// and deletes those that reached member_count.
func sqlCountDelivered(ctx context.Context, tx *sql.Tx, group, from, to uint64) error {
	if to <= from {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE group_msgs SET sent_count = sent_count + 1
		WHERE group_id = ? AND seq > ? AND seq <= ?`, group, from, to); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM group_msgs
		WHERE group_id = ? AND seq > ? AND seq <= ? AND sent_count >= member_count`, group, from, to)
	return err
}

func (s *store) LeaveGroup(ctx context.Context, group, user uint64) error {
	err := s.withTx(ctx, readCommitted, func(tx *sql.Tx) error {
		highest, _, err := lockGroup(ctx, tx, group)
		if err != nil {
			return err
		}
		var joinSeq, ackedSeq uint64
		err = tx.QueryRowContext(ctx, `SELECT join_seq, acked_seq FROM group_members
			WHERE group_id = ? AND user_id = ? FOR UPDATE`, group, user).Scan(&joinSeq, &ackedSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sqlCountDelivered(ctx, tx, group, max(joinSeq, ackedSeq), highest); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", group, user); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE im_groups SET members = members - 1 WHERE id = ?", group)
		return err
	})
	return s.fail("leave group", err)
}

func (s *store) GroupMembers(ctx context.Context, group uint64) ([]storage.Member, error) {
	if err := s.exists(ctx, "SELECT 1 FROM im_groups WHERE id = ?", group, "group"); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT m.user_id, m.join_seq, m.acked_seq, m.joined_at,
		IF(m.user_id = g.owner, ?, m.role)
		FROM group_members m JOIN im_groups g ON g.id = m.group_id
		WHERE m.group_id = ? ORDER BY m.user_id`, storage.RoleOwner, group)
	if err != nil {
		return nil, s.fail("group members", err)
	}
	defer rows.Close()
	var out []storage.Member
	for rows.Next() {
		var m storage.Member
		if err := rows.Scan(&m.User, &m.JoinSeq, &m.AckedSeq, &m.JoinedAt, &m.Role); err != nil {
			return nil, s.fail("group members", err)
		}
		out = append(out, m)
	}
	return out, s.fail("group members", rows.Err())
}

func (s *store) GroupInfo(ctx context.Context, group uint64) (storage.Group, error) {
	g := storage.Group{ID: group}
	err := s.db.QueryRowContext(ctx, "SELECT name, owner, highest_seq, members, is_open FROM im_groups WHERE id = ?", group).
		Scan(&g.Name, &g.Owner, &g.HighestSeq, &g.Members, &g.Open)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Group{}, fmt.Errorf("%w: group %d", storage.ErrNotFound, group)
	}
	if err != nil {
		return storage.Group{}, s.fail("group info", err)
	}
	return g, nil
}

func (s *store) SetGroupOpen(ctx context.Context, group uint64, open bool) error {
	res, err := s.db.ExecContext(ctx, "UPDATE im_groups SET is_open = ? WHERE id = ?", open, group)
	if err != nil {
		return s.fail("set group open", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// 0 rows also when the value was already set: tell the two apart.
		return s.exists(ctx, "SELECT 1 FROM im_groups WHERE id = ?", group, "group")
	}
	return nil
}

func (s *store) SetGroupRole(ctx context.Context, group, user uint64, role uint8) error {
	if role != storage.RoleMember && role != storage.RoleAdmin {
		return fmt.Errorf("%w: role %d cannot be given", storage.ErrInvalid, role)
	}
	var owner uint64
	err := s.db.QueryRowContext(ctx, "SELECT owner FROM im_groups WHERE id = ?", group).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: group %d", storage.ErrNotFound, group)
	}
	if err != nil {
		return s.fail("set group role", err)
	}
	if owner == user {
		return fmt.Errorf("%w: the owner's role does not change", storage.ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, "UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?", role, group, user)
	if err != nil {
		return s.fail("set group role", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		err := s.db.QueryRowContext(ctx, "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?", group, user).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: user %d is not a member of group %d", storage.ErrNotFound, user, group)
		}
		return s.fail("set group role", err)
	}
	return nil
}

func (s *store) AppendGroupMsg(ctx context.Context, m storage.GroupMessage) (uint64, error) {
	ms := [1]storage.GroupMessage{m}
	if err := s.AppendGroupMsgs(ctx, ms[:]); err != nil {
		return 0, err
	}
	return ms[0].Seq, nil
}

// maxInsertRows bounds the rows of one multi-row INSERT: 9 placeholders a
// row stay far below the 65,535 a prepared statement may have.
const maxInsertRows = 1000

// AppendGroupMsgs locks each group's row in ascending id order (so that two
// batches naming the same groups never deadlock), inserts every message
// in one statement and moves each group's highest seq once.
func (s *store) AppendGroupMsgs(ctx context.Context, ms []storage.GroupMessage) error {
	if len(ms) == 0 {
		if s.closed.Load() {
			return storage.ErrClosed
		}
		return backend.CtxErr(ctx.Err())
	}
	for i := range ms {
		if err := backend.CheckGroupMsg(&ms[i]); err != nil {
			return err
		}
	}
	groups := make([]uint64, 0, 1)
	for i := range ms {
		if !slices.Contains(groups, ms[i].Group) {
			groups = append(groups, ms[i].Group)
		}
	}
	slices.Sort(groups)
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		highest := make([]uint64, len(groups))
		members := make([]uint32, len(groups))
		for i, g := range groups {
			var err error
			if highest[i], members[i], err = lockGroup(ctx, tx, g); err != nil {
				return err
			}
		}
		for lo := 0; lo < len(ms); lo += maxInsertRows {
			part := ms[lo:min(lo+maxInsertRows, len(ms))]
			q := make([]byte, 0, 160+len(part)*32)
			q = append(q, "INSERT INTO group_msgs (group_id, seq, from_user, `time`, cid, mid, "+
				"sent_count, member_count, expires_at, content) VALUES "...)
			args := make([]any, 0, 9*len(part))
			for i := range part {
				m := &part[i]
				j, _ := slices.BinarySearch(groups, m.Group)
				highest[j]++
				m.Seq, m.SentCount, m.MemberCount = highest[j], 0, members[j]
				if i > 0 {
					q = append(q, ',')
				}
				q = append(q, "(?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"...)
				args = append(args, m.Group, m.Seq, m.From, m.Time, m.CID, m.MID, m.MemberCount, m.ExpiresAt, nonNil(m.Content))
			}
			if _, err := tx.ExecContext(ctx, string(q), args...); err != nil {
				return err
			}
		}
		for i, g := range groups {
			if _, err := tx.ExecContext(ctx, "UPDATE im_groups SET highest_seq = ? WHERE id = ?", highest[i], g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail("append group messages", err)
	}
	return nil
}

// member returns a member's delivery floor, or ErrNotFound naming the
// group or the membership that is missing.
func (s *store) member(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, group, user uint64, forUpdate string) (joinSeq, ackedSeq uint64, err error) {
	err = q.QueryRowContext(ctx, "SELECT join_seq, acked_seq FROM group_members WHERE group_id = ? AND user_id = ?"+forUpdate,
		group, user).Scan(&joinSeq, &ackedSeq)
	if errors.Is(err, sql.ErrNoRows) {
		if err = s.exists(ctx, "SELECT 1 FROM im_groups WHERE id = ?", group, "group"); err == nil {
			err = fmt.Errorf("%w: user %d is not a member of group %d", storage.ErrNotFound, user, group)
		}
	}
	return joinSeq, ackedSeq, err
}

func (s *store) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]storage.GroupMessage, error) {
	joinSeq, ackedSeq, err := s.member(ctx, s.db, group, user, "")
	if err != nil {
		return nil, s.fail("fetch group", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, from_user, `time`, cid, mid, sent_count, member_count, expires_at, content "+
		"FROM group_msgs WHERE group_id = ? AND seq > ? AND (expires_at = 0 OR expires_at > ?) ORDER BY seq LIMIT ?",
		group, max(afterSeq, joinSeq, ackedSeq), backend.NowMilli(), backend.ClampLimit(limit))
	if err != nil {
		return nil, s.fail("fetch group", err)
	}
	defer rows.Close()
	var out []storage.GroupMessage
	for rows.Next() {
		m := storage.GroupMessage{Group: group}
		if err := rows.Scan(&m.Seq, &m.From, &m.Time, &m.CID, &m.MID, &m.SentCount, &m.MemberCount,
			&m.ExpiresAt, &m.Content); err != nil {
			return nil, s.fail("fetch group", err)
		}
		m.Content = nilIfEmpty(m.Content)
		out = append(out, m)
	}
	return out, s.fail("fetch group", rows.Err())
}

func (s *store) AckGroup(ctx context.Context, group, user, seq uint64) error {
	err := s.withTx(ctx, readCommitted, func(tx *sql.Tx) error {
		// Lock the member row only; the group row is read without a lock
		// so that acks do not queue behind appends.
		err := ackGroupTx(ctx, tx, group, user, seq)
		if errors.Is(err, sql.ErrNoRows) {
			_, _, err = s.member(ctx, tx, group, user, "")
		}
		return err
	})
	return s.fail("ack group", err)
}

// AckGroups runs each ack as AckGroup does, in one transaction, in
// (group, user) order so that two batches lock member rows in one order.
func (s *store) AckGroups(ctx context.Context, acks []storage.GroupAck) error {
	if len(acks) == 0 {
		if s.closed.Load() {
			return storage.ErrClosed
		}
		return backend.CtxErr(ctx.Err())
	}
	sorted := slices.Clone(acks)
	slices.SortFunc(sorted, func(a, b storage.GroupAck) int {
		if c := cmp.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return cmp.Compare(a.User, b.User)
	})
	err := s.withTx(ctx, readCommitted, func(tx *sql.Tx) error {
		for _, a := range sorted {
			if err := ackGroupTx(ctx, tx, a.Group, a.User, a.Seq); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		return nil
	})
	return s.fail("ack groups", err)
}

// ackGroupTx is AckGroup's work in tx; sql.ErrNoRows when the member is
// not one.
func ackGroupTx(ctx context.Context, tx *sql.Tx, group, user, seq uint64) error {
	var joinSeq, ackedSeq, highest uint64
	err := tx.QueryRowContext(ctx, `SELECT join_seq, acked_seq, (SELECT highest_seq FROM im_groups WHERE id = ?)
		FROM group_members WHERE group_id = ? AND user_id = ? FOR UPDATE`, group, group, user).
		Scan(&joinSeq, &ackedSeq, &highest)
	if err != nil {
		return err
	}
	upTo := min(seq, highest)
	floor := max(joinSeq, ackedSeq)
	if upTo <= floor {
		return nil
	}
	if err := sqlCountDelivered(ctx, tx, group, floor, upTo); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "UPDATE group_members SET acked_seq = ? WHERE group_id = ? AND user_id = ?",
		upTo, group, user)
	return err
}

func (s *store) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
	total := 0
	for {
		res, err := s.db.ExecContext(ctx, "DELETE FROM group_msgs WHERE expires_at > 0 AND expires_at <= ? LIMIT ?",
			now, purgeRowsPerStmt)
		if err != nil {
			return total, s.fail("purge group messages", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.fail("purge group messages", err)
		}
		total += int(n)
		if n < purgeRowsPerStmt {
			return total, nil
		}
	}
}

func (s *store) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_msgs WHERE group_id = ?", group).Scan(&n)
	return n, s.fail("count group messages", err)
}
