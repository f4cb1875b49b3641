package mysql

import (
	"context"
	"database/sql"
	"strings"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

func (s *store) StoreOffline(ctx context.Context, msgs []storage.Message) error {
	if len(msgs) == 0 {
		return backend.CtxErr(ctx.Err())
	}
	if err := backend.CheckMessages(msgs); err != nil {
		return err
	}
	// Split into statements by rows and bytes; one statement is atomic on
	// its own, several share a transaction.
	var chunks [][]storage.Message
	for start := 0; start < len(msgs); {
		end, size := start, 0
		for end < len(msgs) && end-start < insertRowsPerStmt &&
			(end == start || size+len(msgs[end].Content) <= insertBytesPerStmt) {
			size += len(msgs[end].Content)
			end++
		}
		chunks = append(chunks, msgs[start:end])
		start = end
	}
	if len(chunks) == 1 {
		query, args := offlineInsert(chunks[0])
		_, err := s.db.ExecContext(ctx, query, args...)
		return s.fail("store offline", err)
	}
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		for _, c := range chunks {
			query, args := offlineInsert(c)
			if _, err := tx.ExecContext(ctx, query, args...); err != nil {
				return err
			}
		}
		return nil
	})
	return s.fail("store offline", err)
}

// offlineInsert builds one multi-row INSERT. A row that hits uk_offline_mid
// or uk_offline_cid turns into a no-op update: unlike INSERT IGNORE, this
// does not also swallow errors such as truncation.
func offlineInsert(msgs []storage.Message) (string, []any) {
	const head = "INSERT INTO offline_msgs (to_user, `time`, mid, from_user, cid, srv, qos, content) VALUES "
	const row = "(?,?,?,?,?,?,?,?)"
	const tail = " ON DUPLICATE KEY UPDATE mid = mid"
	var b strings.Builder
	b.Grow(len(head) + len(msgs)*(len(row)+1) + len(tail))
	b.WriteString(head)
	args := make([]any, 0, len(msgs)*offlineInsertColumns)
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
		var cid any // NULL: no deduplication
		if m.CID != 0 {
			cid = m.CID
		}
		args = append(args, m.To, m.Time, m.MID, m.From, cid, m.Srv, m.QoS, nonNil(m.Content))
	}
	b.WriteString(tail)
	return b.String(), args
}

func (s *store) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]storage.Message, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT `time`, mid, from_user, COALESCE(cid, 0), srv, qos, content "+
		"FROM offline_msgs WHERE to_user = ? AND mid > ? ORDER BY mid LIMIT ?", user, afterMID, backend.ClampLimit(limit))
	if err != nil {
		return nil, s.fail("fetch offline", err)
	}
	defer rows.Close()
	var out []storage.Message
	for rows.Next() {
		m := storage.Message{To: user}
		if err := rows.Scan(&m.Time, &m.MID, &m.From, &m.CID, &m.Srv, &m.QoS, &m.Content); err != nil {
			return nil, s.fail("fetch offline", err)
		}
		m.Content = nilIfEmpty(m.Content)
		out = append(out, m)
	}
	return out, s.fail("fetch offline", rows.Err())
}

func (s *store) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	if len(mids) == 0 {
		return backend.CtxErr(ctx.Err())
	}
	del := func(ex interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}, mids []uint64) error {
		var b strings.Builder
		b.WriteString("DELETE FROM offline_msgs WHERE to_user = ? AND mid IN (?")
		b.WriteString(strings.Repeat(",?", len(mids)-1))
		b.WriteByte(')')
		args := make([]any, 0, len(mids)+1)
		args = append(args, user)
		for _, m := range mids {
			args = append(args, m)
		}
		_, err := ex.ExecContext(ctx, b.String(), args...)
		return err
	}
	if len(mids) <= deleteIDsPerStmt {
		return s.fail("delete offline", retryDeadlock(ctx, func() error { return del(s.db, mids) }))
	}
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		for start := 0; start < len(mids); start += deleteIDsPerStmt {
			if err := del(tx, mids[start:min(start+deleteIDsPerStmt, len(mids))]); err != nil {
				return err
			}
		}
		return nil
	})
	return s.fail("delete offline", err)
}

func (s *store) CountOffline(ctx context.Context, user uint64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM offline_msgs WHERE to_user = ?", user).Scan(&n)
	return n, s.fail("count offline", err)
}
