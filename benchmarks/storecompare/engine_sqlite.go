package main

import (
	"database/sql"
	"fmt"
	"path/filepath"

	_ "modernc.org/sqlite"
)

// sqliteQueue is the offline queue on modernc.org/sqlite: a rowid table
// with an index on (to_user, time, mid), WAL, and every write through one
// connection, with the same group commit as the bbolt engines (concurrent
// writers share a transaction). Reads use a separate pool, which WAL lets
// run beside the writer.
type sqliteQueue struct {
	w, r          *sql.DB
	ins, del, sel *sql.Stmt
	gc            groupCommit[*sql.Tx]
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS offline (
	to_user   INTEGER NOT NULL,
	time      INTEGER NOT NULL,
	mid       INTEGER NOT NULL,
	from_user INTEGER NOT NULL,
	cid       INTEGER NOT NULL,
	content   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_fetch ON offline (to_user, time, mid);`

// sqliteDSN sets the pragmas in the DSN so that every pooled connection
// gets them. synchronous=FULL makes WAL mode fsync the WAL at every
// commit; NORMAL would only fsync at checkpoints, and a power loss could
// then undo acknowledged commits.
func sqliteDSN(path string, noSync, readOnly bool) string {
	sync := "FULL"
	if noSync {
		sync = "OFF"
	}
	dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=cache_size(-%d)",
		path, sync, cacheBytes>>10)
	if readOnly {
		dsn += "&_pragma=query_only(1)"
	}
	return dsn
}

func openSQLite(dir string, noSync bool) (q Queue, err error) {
	path := filepath.Join(dir, "queue.sqlite")
	s := &sqliteQueue{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.w, err = sql.Open("sqlite", sqliteDSN(path, noSync, false)); err != nil {
		return nil, err
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	if _, err = s.w.Exec(sqliteSchema); err != nil {
		return nil, err
	}
	// The DSN pragmas are applied per connection; make sure they took.
	var mode string
	var syncLevel int
	if err = s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		return nil, err
	}
	if err = s.w.QueryRow(`PRAGMA synchronous`).Scan(&syncLevel); err != nil {
		return nil, err
	}
	if want := map[bool]int{false: 2, true: 0}[noSync]; mode != "wal" || syncLevel != want {
		return nil, fmt.Errorf("sqlite: journal_mode=%s synchronous=%d, want wal and %d", mode, syncLevel, want)
	}
	if s.r, err = sql.Open("sqlite", sqliteDSN(path, noSync, true)); err != nil {
		return nil, err
	}
	s.r.SetMaxOpenConns(4)
	s.r.SetMaxIdleConns(4)
	s.r.SetConnMaxLifetime(0)
	if s.ins, err = s.w.Prepare(`INSERT INTO offline (to_user, time, mid, from_user, cid, content) VALUES (?, ?, ?, ?, ?, ?)`); err != nil {
		return nil, err
	}
	if s.del, err = s.w.Prepare(`DELETE FROM offline WHERE to_user = ? AND time = ? AND mid = ?`); err != nil {
		return nil, err
	}
	if s.sel, err = s.r.Prepare(`SELECT time, mid, from_user, cid, content FROM offline WHERE to_user = ? ORDER BY time, mid LIMIT ?`); err != nil {
		return nil, err
	}
	s.gc.commit = func(fns []func(*sql.Tx) error) error {
		tx, err := s.w.Begin()
		if err != nil {
			return err
		}
		for _, fn := range fns {
			if err := fn(tx); err != nil {
				tx.Rollback()
				return err
			}
		}
		return tx.Commit()
	}
	return s, nil
}

func (s *sqliteQueue) Append(msgs []Msg) error {
	return s.gc.do(func(tx *sql.Tx) error {
		st := tx.Stmt(s.ins)
		for i := range msgs {
			m := &msgs[i]
			if _, err := st.Exec(int64(m.To), m.Time, int64(m.MID), int64(m.From), int64(m.CID), m.Content); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqliteQueue) Fetch(user uint64, limit int, buf []Msg) ([]Msg, error) {
	rows, err := s.sel.Query(int64(user), limit)
	if err != nil {
		return buf[:0], err
	}
	defer rows.Close()
	out := buf[:0]
	var content sql.RawBytes
	for rows.Next() {
		var m *Msg
		out, m = grow(out)
		var mid, from, cid int64
		if err := rows.Scan(&m.Time, &mid, &from, &cid, &content); err != nil {
			return out, err
		}
		m.To, m.MID, m.From, m.CID = user, uint64(mid), uint64(from), uint64(cid)
		m.Content = append(m.Content[:0], content...)
	}
	return out, rows.Err()
}

func (s *sqliteQueue) Ack(user uint64, keys []Key) error {
	return s.gc.do(func(tx *sql.Tx) error {
		st := tx.Stmt(s.del)
		for _, k := range keys {
			if _, err := st.Exec(int64(user), k.Time, int64(k.MID)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqliteQueue) Close() error {
	for _, st := range []*sql.Stmt{s.ins, s.del, s.sel} {
		if st != nil {
			st.Close()
		}
	}
	var err error
	if s.r != nil {
		err = s.r.Close()
	}
	if s.w != nil {
		if e := s.w.Close(); err == nil {
			err = e
		}
	}
	return err
}
