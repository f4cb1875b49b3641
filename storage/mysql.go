package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL backend (MySQL 8 or MariaDB 10.6+, InnoDB, utf8mb4).
//
// Durability: a method returns only after its transaction committed, and a
// commit survives a crash only if the server runs with
// innodb_flush_log_at_trx_commit=1 (redo log flushed at each commit) and, when
// the binary log is on, sync_binlog=1. Both are the recommended settings and
// the store relies on them; with other values a server crash can lose
// messages the store already acknowledged.
//
// Lock order inside transactions: im_groups row, then group_members row,
// then group_msgs rows in seq order. AckGroup takes no group row lock, so
// acks of one group do not queue behind its appends; it runs at READ
// COMMITTED, as does LeaveGroup, so their seq-range updates take no gap locks
// that would block AppendGroupMsg's insert at the end of the range.

// Tuned constants.
const (
	// mysqlConnMaxLifetime stays under the ~5 min after which NATs and
	// proxies silently drop idle TCP connections (driver README).
	mysqlConnMaxLifetime = 3 * time.Minute
	// mysqlConnMaxIdleTime sheds a burst's extra connections within a
	// minute instead of holding them for their whole lifetime.
	mysqlConnMaxIdleTime = time.Minute
	// insertRowsPerStmt caps rows per multi-row INSERT. 1000 rows of 8
	// columns is 8000 placeholders, far under the 65,535 a prepared
	// statement allows, and large enough that round trips stop
	// mattering.
	insertRowsPerStmt = 1000
	// insertBytesPerStmt caps the content bytes per INSERT. Parameters are
	// interpolated client side, so the statement travels as one packet
	// that must fit the server's max_allowed_packet (16 MiB by default on
	// MariaDB, 64 MiB on MySQL 8); escaping can double binary content.
	insertBytesPerStmt = 4 << 20
	// deleteIDsPerStmt caps the MIDs in one DELETE ... IN (...).
	deleteIDsPerStmt = 1000
	// purgeRowsPerStmt bounds one purge DELETE, so that a large backlog is
	// removed in short transactions rather than one that holds locks and
	// undo for minutes.
	purgeRowsPerStmt = 10000
	// deadlockRetries is how often a transaction that InnoDB chose as a
	// deadlock victim is rerun before the error is returned.
	deadlockRetries = 3
	// schemaLockTimeout bounds the wait for another server that is
	// migrating the same database (seconds, for GET_LOCK).
	schemaLockTimeout = 60
)

// MySQL error numbers the store reacts to.
const (
	erDupEntry           = 1062
	erDupFieldName       = 1060
	erConCount           = 1040
	erServerShutdown     = 1053
	erTooManyUserConns   = 1203
	erLockWaitTimeout    = 1205
	erLockDeadlock       = 1213
	erUserLimitReached   = 1226
	erReadOnly           = 1290
	erQueryInterrupted   = 1317
	erReadOnlyTx         = 1792
	erConnectionKilled   = 1927 // MariaDB
	erStatementTimeout   = 1969 // MariaDB max_statement_time
	erQueryTimeout       = 3024 // MySQL max_execution_time
	erServerGone         = 2006
	erServerLost         = 2013
	schemaLockName       = "myim_schema"
	offlineInsertColumns = 8
)

// mysqlStore is the MySQL backend. Safe for concurrent use.
type mysqlStore struct {
	db     *sql.DB
	closed atomic.Bool
}

// openMySQL connects and migrates the schema. It forces the driver options
// the store relies on: ParseTime, Loc UTC, InterpolateParams (one round trip
// per statement instead of prepare, execute, close; safe with utf8mb4),
// ClientFoundRows off (TouchDevice reads "1 row affected" as "inserted"),
// RejectReadOnly (a failed-over primary that became read-only is dropped from
// the pool), and the configured timeouts unless the DSN sets its own.
func openMySQL(ctx context.Context, cfg Config) (*mysqlStore, error) {
	mc, err := mysql.ParseDSN(cfg.MySQLDSN)
	if err != nil {
		// The DSN holds a password: do not echo it.
		return nil, fmt.Errorf("storage: invalid MySQL DSN: %w", err)
	}
	mc.ParseTime = true
	mc.Loc = time.UTC
	mc.InterpolateParams = true
	mc.ClientFoundRows = false
	mc.MultiStatements = false
	mc.RejectReadOnly = true
	mc.Logger = driverLogger{cfg.Logger}
	if mc.Timeout == 0 {
		mc.Timeout = cfg.DialTimeout
	}
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = cfg.IOTimeout
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = cfg.IOTimeout
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("storage: invalid MySQL config: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns) // fewer idle than open means constant reconnects under load
	db.SetConnMaxLifetime(mysqlConnMaxLifetime)
	db.SetConnMaxIdleTime(mysqlConnMaxIdleTime)
	s := &mysqlStore{db: db}
	// The driver's Timeout covers the TCP dial only; a peer that accepts
	// and then never speaks would hold Open for the whole OpenTimeout.
	pctx, cancel := context.WithTimeout(ctx, 2*cfg.DialTimeout)
	err = db.PingContext(pctx)
	cancel()
	if err != nil {
		db.Close()
		return nil, s.fail("connect", err)
	}
	if err := s.migrate(ctx, cfg); err != nil {
		db.Close()
		return nil, s.fail("migrate", err)
	}
	return s, nil
}

// driverLogger sends the driver's own messages (mostly about connections
// it dropped) to the configured slog.Logger instead of stderr.
type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Print(v ...any) {
	d.l.Warn("storage: mysql driver", "msg", strings.TrimSpace(fmt.Sprint(v...)))
}

// mysqlMigrations[i] brings the schema from version i to i+1. DDL commits
// implicitly, so every statement must be safe to run again after a crash
// half way through a step (IF NOT EXISTS and the like).
var mysqlMigrations = [][]string{
	{
		`CREATE TABLE IF NOT EXISTS users (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			name VARCHAR(128) NOT NULL,
			pass_hash VARCHAR(255) NOT NULL,
			signature VARCHAR(255) NOT NULL,
			profile BLOB NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (id),
			UNIQUE KEY uk_users_name (name)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS devices (
			user_id BIGINT UNSIGNED NOT NULL,
			key_hash BINARY(32) NOT NULL,
			fingerprint VARCHAR(255) NOT NULL,
			first_seen BIGINT NOT NULL,
			last_seen BIGINT NOT NULL,
			addr VARCHAR(255) NOT NULL,
			PRIMARY KEY (user_id, key_hash)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		// Both directions are stored, so Friends is one index range.
		`CREATE TABLE IF NOT EXISTS friends (
			user_id BIGINT UNSIGNED NOT NULL,
			friend_id BIGINT UNSIGNED NOT NULL,
			since BIGINT NOT NULL,
			PRIMARY KEY (user_id, friend_id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS friend_requests (
			to_user BIGINT UNSIGNED NOT NULL,
			from_user BIGINT UNSIGNED NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (to_user, from_user)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		// Point-to-point offline messages. The clustered key is the fetch
		// order, so a fetch reads one contiguous range. cid is NULL when
		// the sender gave none: NULLs never collide in uk_offline_cid.
		`CREATE TABLE IF NOT EXISTS offline_msgs (
			to_user BIGINT UNSIGNED NOT NULL,
			` + "`time`" + ` BIGINT NOT NULL,
			mid BIGINT UNSIGNED NOT NULL,
			from_user BIGINT UNSIGNED NOT NULL,
			cid BIGINT UNSIGNED NULL,
			srv INT UNSIGNED NOT NULL,
			qos TINYINT UNSIGNED NOT NULL,
			content MEDIUMBLOB NOT NULL,
			PRIMARY KEY (to_user, ` + "`time`" + `, mid),
			UNIQUE KEY uk_offline_mid (to_user, mid),
			UNIQUE KEY uk_offline_cid (to_user, from_user, cid)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		// "groups" is a reserved word in MySQL 8.
		`CREATE TABLE IF NOT EXISTS im_groups (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			name VARCHAR(128) NOT NULL,
			owner BIGINT UNSIGNED NOT NULL,
			highest_seq BIGINT UNSIGNED NOT NULL,
			members INT UNSIGNED NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS group_members (
			group_id BIGINT UNSIGNED NOT NULL,
			user_id BIGINT UNSIGNED NOT NULL,
			join_seq BIGINT UNSIGNED NOT NULL,
			acked_seq BIGINT UNSIGNED NOT NULL,
			joined_at BIGINT NOT NULL,
			PRIMARY KEY (group_id, user_id),
			KEY k_members_user (user_id, group_id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		// Group messages, separate from point-to-point ones: different
		// keys, and rows here are updated (sent_count) while those are not.
		`CREATE TABLE IF NOT EXISTS group_msgs (
			group_id BIGINT UNSIGNED NOT NULL,
			seq BIGINT UNSIGNED NOT NULL,
			from_user BIGINT UNSIGNED NOT NULL,
			` + "`time`" + ` BIGINT NOT NULL,
			cid BIGINT UNSIGNED NOT NULL,
			mid BIGINT UNSIGNED NOT NULL,
			sent_count INT UNSIGNED NOT NULL,
			member_count INT UNSIGNED NOT NULL,
			expires_at BIGINT NOT NULL,
			content MEDIUMBLOB NOT NULL,
			PRIMARY KEY (group_id, seq),
			KEY k_gmsgs_expires (expires_at)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
	},
	// Version 2: the private file server's metadata (see files.go).
	{
		`CREATE TABLE IF NOT EXISTS file_uploads (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			owner BIGINT UNSIGNED NOT NULL,
			name VARCHAR(255) NOT NULL,
			size BIGINT NOT NULL,
			sha256 BINARY(32) NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (id),
			KEY k_uploads_created (created_at, id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS files (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			owner BIGINT UNSIGNED NOT NULL,
			name VARCHAR(255) NOT NULL,
			size BIGINT NOT NULL,
			sha256 BINARY(32) NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (id),
			KEY k_files_owner (owner, id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		// How many files reference each content; a row at 0 is deleted.
		`CREATE TABLE IF NOT EXISTS blob_refs (
			sha256 BINARY(32) NOT NULL,
			refs BIGINT NOT NULL,
			PRIMARY KEY (sha256)
		) ENGINE=InnoDB`,
		// kind 0: target is a user; 1: a group.
		`CREATE TABLE IF NOT EXISTS file_shares (
			file_id BIGINT UNSIGNED NOT NULL,
			kind TINYINT UNSIGNED NOT NULL,
			target BIGINT UNSIGNED NOT NULL,
			PRIMARY KEY (file_id, kind, target)
		) ENGINE=InnoDB`,
		// Quota usage: files plus open uploads' reservations. The row is
		// also the lock that serializes one owner's reservations.
		`CREATE TABLE IF NOT EXISTS file_usage (
			owner BIGINT UNSIGNED NOT NULL,
			used BIGINT NOT NULL,
			PRIMARY KEY (owner)
		) ENGINE=InnoDB`,
	},
	// Version 3: group roles and the open flag. Existing groups become
	// closed (DEFAULT 0) and their members plain members; the owner's role
	// is read from im_groups.owner, so nothing is rewritten. MySQL 8 has no
	// ADD COLUMN IF NOT EXISTS: migrate skips a column already added.
	{
		"ALTER TABLE im_groups ADD COLUMN is_open TINYINT UNSIGNED NOT NULL DEFAULT 0",
		"ALTER TABLE group_members ADD COLUMN role TINYINT UNSIGNED NOT NULL DEFAULT 0",
	},
	// Version 4: revoked access tokens, by session id, until they expire.
	{
		`CREATE TABLE IF NOT EXISTS revoked_tokens (
			sid VARBINARY(64) NOT NULL,
			until_ms BIGINT NOT NULL,
			PRIMARY KEY (sid)
		) ENGINE=InnoDB`,
	},
	// Version 5: offline messages are kept in the center's order (MID),
	// not the sender's clock (time), so the clustered key that a fetch
	// reads in one range becomes (to_user, mid). Rerunning it rebuilds
	// the same key.
	{
		"ALTER TABLE offline_msgs DROP PRIMARY KEY, ADD PRIMARY KEY (to_user, mid)",
	},
	// Version 6: registration invites (SHA-256 of the code) and how many
	// each user has issued.
	{
		`CREATE TABLE IF NOT EXISTS invites (
			hash BINARY(32) NOT NULL,
			issuer BIGINT UNSIGNED NOT NULL,
			expires_at BIGINT NOT NULL,
			PRIMARY KEY (hash)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS invite_counts (
			user_id BIGINT UNSIGNED NOT NULL,
			issued BIGINT UNSIGNED NOT NULL,
			PRIMARY KEY (user_id)
		) ENGINE=InnoDB`,
	},
}

// migrate brings the schema to len(mysqlMigrations), holding a named lock
// so that servers starting together migrate one at a time.
func (s *mysqlStore) migrate(ctx context.Context, cfg Config) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", schemaLockName, schemaLockTimeout).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("%w: timed out waiting for the schema lock", ErrUnavailable)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", schemaLockName)

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INT UNSIGNED NOT NULL,
		applied_at BIGINT NOT NULL,
		PRIMARY KEY (version)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`); err != nil {
		return err
	}
	var version int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&version); err != nil {
		return err
	}
	if version > len(mysqlMigrations) {
		return fmt.Errorf("storage: database schema version %d is newer than this binary's %d",
			version, len(mysqlMigrations))
	}
	for v := version; v < len(mysqlMigrations); v++ {
		for _, stmt := range mysqlMigrations[v] {
			if _, err := conn.ExecContext(ctx, stmt); err != nil && !isMySQLError(err, erDupFieldName) {
				return fmt.Errorf("schema version %d: %w", v+1, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
			v+1, nowMilli()); err != nil {
			return err
		}
		cfg.Logger.Info("storage: applied MySQL schema migration", "version", v+1)
	}
	return nil
}

// fail turns a driver error into the package's: sentinels pass through,
// errors after Close become ErrClosed, connection-level failures wrap
// ErrUnavailable, ctx cancellation stays context.Canceled.
func (s *mysqlStore) fail(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExists),
		errors.Is(err, ErrInvalid), errors.Is(err, ErrUnavailable):
		return err
	case s.closed.Load():
		return ErrClosed
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("storage: %s: %w", op, err)
	case isUnavailable(err): // a passed ctx deadline included
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("storage: %s: %w", op, err)
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if ne := net.Error(nil); errors.As(err, &ne) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erConCount, erServerShutdown, erTooManyUserConns, erLockWaitTimeout, erLockDeadlock,
			erUserLimitReached, erReadOnly, erQueryInterrupted, erReadOnlyTx, erConnectionKilled,
			erStatementTimeout, erQueryTimeout, erServerGone, erServerLost:
			return true
		}
	}
	return false
}

func isMySQLError(err error, number uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// withTx runs fn in a transaction, rerunning it when InnoDB picked it as a
// deadlock victim. fn must set its outputs afresh on every run.
func (s *mysqlStore) withTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, opts, fn)
		if err == nil || attempt > deadlockRetries || !isMySQLError(err, erLockDeadlock) {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctxErr(ctx.Err())
		case <-t.C:
		}
	}
}

func (s *mysqlStore) tryTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readCommitted avoids gap locks in seq-range updates (see the file comment).
var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

func (s *mysqlStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.fail("ping", s.db.PingContext(ctx))
}

func (s *mysqlStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}

// nonNil maps nil to an empty slice: the driver sends nil as NULL, and the
// content columns are NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nilIfEmpty matches the embedded backend, which returns nil for empty.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// ---- users

func (s *mysqlStore) CreateUser(ctx context.Context, u User) (uint64, error) {
	if err := checkUser(&u); err != nil {
		return 0, err
	}
	if u.CreatedAt == 0 {
		u.CreatedAt = nowMilli()
	}
	res, err := s.db.ExecContext(ctx,
		"INSERT INTO users (name, pass_hash, signature, profile, created_at) VALUES (?, ?, ?, ?, ?)",
		u.Name, u.PassHash, u.Signature, nilIfEmpty(u.Profile), u.CreatedAt)
	if isMySQLError(err, erDupEntry) {
		return 0, fmt.Errorf("%w: user %q", ErrExists, u.Name)
	}
	if err != nil {
		return 0, s.fail("create user", err)
	}
	id, err := res.LastInsertId()
	return uint64(id), s.fail("create user", err)
}

const userColumns = "id, name, pass_hash, signature, profile, created_at"

func (s *mysqlStore) UserByName(ctx context.Context, name string) (User, error) {
	return s.user(ctx, "SELECT "+userColumns+" FROM users WHERE name = ?", name)
}

func (s *mysqlStore) UserByID(ctx context.Context, id uint64) (User, error) {
	return s.user(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id)
}

func (s *mysqlStore) user(ctx context.Context, query string, arg any) (User, error) {
	var u User
	err := s.db.QueryRowContext(ctx, query, arg).Scan(&u.ID, &u.Name, &u.PassHash, &u.Signature, &u.Profile, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: user %v", ErrNotFound, arg)
	}
	if err != nil {
		return User{}, s.fail("get user", err)
	}
	u.Profile = nilIfEmpty(u.Profile)
	return u, nil
}

func (s *mysqlStore) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	if err := checkProfile(signature, profile); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, "UPDATE users SET signature = ?, profile = ? WHERE id = ?",
		signature, nilIfEmpty(profile), id)
	if err != nil {
		return s.fail("update profile", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return s.fail("update profile", err)
	}
	// 0 rows: no such user, or the values did not change.
	return s.exists(ctx, "SELECT 1 FROM users WHERE id = ?", id, "user")
}

// exists returns nil if query finds a row, else ErrNotFound naming what.
func (s *mysqlStore) exists(ctx context.Context, query string, id uint64, what string) error {
	var one int
	err := s.db.QueryRowContext(ctx, query, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s %d", ErrNotFound, what, id)
	}
	return s.fail("lookup "+what, err)
}

// ---- devices

func (s *mysqlStore) TouchDevice(ctx context.Context, d Device) (bool, error) {
	if err := checkDevice(&d); err != nil {
		return false, err
	}
	if d.LastSeen == 0 {
		d.LastSeen = nowMilli()
	}
	// Affected rows: 1 inserted, 2 updated, 0 unchanged (ClientFoundRows
	// is off).
	res, err := s.db.ExecContext(ctx, `INSERT INTO devices (user_id, key_hash, fingerprint, first_seen, last_seen, addr)
		VALUES (?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint), last_seen = VALUES(last_seen), addr = VALUES(addr)`,
		d.User, d.KeyHash[:], d.Fingerprint, d.LastSeen, d.LastSeen, d.Addr)
	if err != nil {
		return false, s.fail("touch device", err)
	}
	n, err := res.RowsAffected()
	return n == 1, s.fail("touch device", err)
}

func (s *mysqlStore) Devices(ctx context.Context, user uint64) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_hash, fingerprint, first_seen, last_seen, addr
		FROM devices WHERE user_id = ? ORDER BY key_hash`, user)
	if err != nil {
		return nil, s.fail("devices", err)
	}
	defer rows.Close()
	var out []Device
	var key sql.RawBytes
	for rows.Next() {
		d := Device{User: user}
		if err := rows.Scan(&key, &d.Fingerprint, &d.FirstSeen, &d.LastSeen, &d.Addr); err != nil {
			return nil, s.fail("devices", err)
		}
		copy(d.KeyHash[:], key)
		out = append(out, d)
	}
	return out, s.fail("devices", rows.Err())
}

// ---- friends

func (s *mysqlStore) RequestFriend(ctx context.Context, from, to uint64) error {
	if err := checkFriends(from, to); err != nil {
		return err
	}
	var userExists, friends bool
	err := s.db.QueryRowContext(ctx, `SELECT
		EXISTS(SELECT 1 FROM users WHERE id = ?),
		EXISTS(SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?)`, to, from, to).Scan(&userExists, &friends)
	if err != nil {
		return s.fail("request friend", err)
	}
	if !userExists {
		return fmt.Errorf("%w: user %d", ErrNotFound, to)
	}
	if friends {
		return fmt.Errorf("%w: %d and %d are friends", ErrExists, from, to)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO friend_requests (to_user, from_user, created_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE to_user = to_user`, to, from, nowMilli())
	return s.fail("request friend", err)
}

func (s *mysqlStore) AcceptFriend(ctx context.Context, user, requester uint64) error {
	if err := checkFriends(user, requester); err != nil {
		return err
	}
	since := nowMilli()
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM friend_requests WHERE to_user = ? AND from_user = ?", user, requester)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: friend request from %d to %d", ErrNotFound, requester, user)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM friend_requests WHERE to_user = ? AND from_user = ?", requester, user); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO friends (user_id, friend_id, since) VALUES (?, ?, ?), (?, ?, ?)
			ON DUPLICATE KEY UPDATE since = since`, user, requester, since, requester, user, since)
		return err
	})
	return s.fail("accept friend", err)
}

func (s *mysqlStore) RemoveFriend(ctx context.Context, a, b uint64) error {
	if err := checkFriends(a, b); err != nil {
		return err
	}
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM friends
			WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)`, a, b, b, a); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM friend_requests
			WHERE (to_user = ? AND from_user = ?) OR (to_user = ? AND from_user = ?)`, a, b, b, a)
		return err
	})
	return s.fail("remove friend", err)
}

func (s *mysqlStore) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "friends", "SELECT friend_id FROM friends WHERE user_id = ? ORDER BY friend_id", user)
}

func (s *mysqlStore) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "friend requests", "SELECT from_user FROM friend_requests WHERE to_user = ? ORDER BY from_user", user)
}

func (s *mysqlStore) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	return s.ids(ctx, "user groups", "SELECT group_id FROM group_members WHERE user_id = ? ORDER BY group_id", user)
}

func (s *mysqlStore) ids(ctx context.Context, op, query string, arg uint64) ([]uint64, error) {
	rows, err := s.db.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, id)
	}
	return out, s.fail(op, rows.Err())
}

// ---- point-to-point offline messages

func (s *mysqlStore) StoreOffline(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return ctxErr(ctx.Err())
	}
	if err := checkMessages(msgs); err != nil {
		return err
	}
	// Split into statements by rows and bytes; one statement is atomic on
	// its own, several share a transaction.
	var chunks [][]Message
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
func offlineInsert(msgs []Message) (string, []any) {
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

func (s *mysqlStore) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT `time`, mid, from_user, COALESCE(cid, 0), srv, qos, content "+
		"FROM offline_msgs WHERE to_user = ? AND mid > ? ORDER BY mid LIMIT ?", user, afterMID, clampLimit(limit))
	if err != nil {
		return nil, s.fail("fetch offline", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m := Message{To: user}
		if err := rows.Scan(&m.Time, &m.MID, &m.From, &m.CID, &m.Srv, &m.QoS, &m.Content); err != nil {
			return nil, s.fail("fetch offline", err)
		}
		m.Content = nilIfEmpty(m.Content)
		out = append(out, m)
	}
	return out, s.fail("fetch offline", rows.Err())
}

func (s *mysqlStore) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	if len(mids) == 0 {
		return ctxErr(ctx.Err())
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
		return s.fail("delete offline", del(s.db, mids))
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

func (s *mysqlStore) CountOffline(ctx context.Context, user uint64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM offline_msgs WHERE to_user = ?", user).Scan(&n)
	return n, s.fail("count offline", err)
}

// ---- groups

func (s *mysqlStore) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	if err := checkName("group name", name); err != nil {
		return 0, err
	}
	if owner == 0 {
		return 0, fmt.Errorf("%w: group without owner", ErrInvalid)
	}
	now := nowMilli()
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
		err = fmt.Errorf("%w: group %d", ErrNotFound, group)
	}
	return highest, members, err
}

func (s *mysqlStore) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	if user == 0 {
		return 0, fmt.Errorf("%w: user 0", ErrInvalid)
	}
	now := nowMilli()
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

func (s *mysqlStore) LeaveGroup(ctx context.Context, group, user uint64) error {
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

func (s *mysqlStore) GroupMembers(ctx context.Context, group uint64) ([]Member, error) {
	if err := s.exists(ctx, "SELECT 1 FROM im_groups WHERE id = ?", group, "group"); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT m.user_id, m.join_seq, m.acked_seq, m.joined_at,
		IF(m.user_id = g.owner, ?, m.role)
		FROM group_members m JOIN im_groups g ON g.id = m.group_id
		WHERE m.group_id = ? ORDER BY m.user_id`, RoleOwner, group)
	if err != nil {
		return nil, s.fail("group members", err)
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.User, &m.JoinSeq, &m.AckedSeq, &m.JoinedAt, &m.Role); err != nil {
			return nil, s.fail("group members", err)
		}
		out = append(out, m)
	}
	return out, s.fail("group members", rows.Err())
}

func (s *mysqlStore) GroupInfo(ctx context.Context, group uint64) (Group, error) {
	g := Group{ID: group}
	err := s.db.QueryRowContext(ctx, "SELECT name, owner, highest_seq, members, is_open FROM im_groups WHERE id = ?", group).
		Scan(&g.Name, &g.Owner, &g.HighestSeq, &g.Members, &g.Open)
	if errors.Is(err, sql.ErrNoRows) {
		return Group{}, fmt.Errorf("%w: group %d", ErrNotFound, group)
	}
	if err != nil {
		return Group{}, s.fail("group info", err)
	}
	return g, nil
}

func (s *mysqlStore) SetGroupOpen(ctx context.Context, group uint64, open bool) error {
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

func (s *mysqlStore) SetGroupRole(ctx context.Context, group, user uint64, role uint8) error {
	if role != RoleMember && role != RoleAdmin {
		return fmt.Errorf("%w: role %d cannot be given", ErrInvalid, role)
	}
	var owner uint64
	err := s.db.QueryRowContext(ctx, "SELECT owner FROM im_groups WHERE id = ?", group).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: group %d", ErrNotFound, group)
	}
	if err != nil {
		return s.fail("set group role", err)
	}
	if owner == user {
		return fmt.Errorf("%w: the owner's role does not change", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, "UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?", role, group, user)
	if err != nil {
		return s.fail("set group role", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		err := s.db.QueryRowContext(ctx, "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?", group, user).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: user %d is not a member of group %d", ErrNotFound, user, group)
		}
		return s.fail("set group role", err)
	}
	return nil
}

func (s *mysqlStore) AppendGroupMsg(ctx context.Context, m GroupMessage) (uint64, error) {
	if err := checkGroupMsg(&m); err != nil {
		return 0, err
	}
	var seq uint64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		highest, members, err := lockGroup(ctx, tx, m.Group)
		if err != nil {
			return err
		}
		seq = highest + 1
		if _, err := tx.ExecContext(ctx, "INSERT INTO group_msgs (group_id, seq, from_user, `time`, cid, mid, "+
			"sent_count, member_count, expires_at, content) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
			m.Group, seq, m.From, m.Time, m.CID, m.MID, members, m.ExpiresAt, nonNil(m.Content)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE im_groups SET highest_seq = ? WHERE id = ?", seq, m.Group)
		return err
	})
	if err != nil {
		return 0, s.fail("append group message", err)
	}
	return seq, nil
}

// member returns a member's delivery floor, or ErrNotFound naming the
// group or the membership that is missing.
func (s *mysqlStore) member(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, group, user uint64, forUpdate string) (joinSeq, ackedSeq uint64, err error) {
	err = q.QueryRowContext(ctx, "SELECT join_seq, acked_seq FROM group_members WHERE group_id = ? AND user_id = ?"+forUpdate,
		group, user).Scan(&joinSeq, &ackedSeq)
	if errors.Is(err, sql.ErrNoRows) {
		if err = s.exists(ctx, "SELECT 1 FROM im_groups WHERE id = ?", group, "group"); err == nil {
			err = fmt.Errorf("%w: user %d is not a member of group %d", ErrNotFound, user, group)
		}
	}
	return joinSeq, ackedSeq, err
}

func (s *mysqlStore) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]GroupMessage, error) {
	joinSeq, ackedSeq, err := s.member(ctx, s.db, group, user, "")
	if err != nil {
		return nil, s.fail("fetch group", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, from_user, `time`, cid, mid, sent_count, member_count, expires_at, content "+
		"FROM group_msgs WHERE group_id = ? AND seq > ? AND (expires_at = 0 OR expires_at > ?) ORDER BY seq LIMIT ?",
		group, max(afterSeq, joinSeq, ackedSeq), nowMilli(), clampLimit(limit))
	if err != nil {
		return nil, s.fail("fetch group", err)
	}
	defer rows.Close()
	var out []GroupMessage
	for rows.Next() {
		m := GroupMessage{Group: group}
		if err := rows.Scan(&m.Seq, &m.From, &m.Time, &m.CID, &m.MID, &m.SentCount, &m.MemberCount,
			&m.ExpiresAt, &m.Content); err != nil {
			return nil, s.fail("fetch group", err)
		}
		m.Content = nilIfEmpty(m.Content)
		out = append(out, m)
	}
	return out, s.fail("fetch group", rows.Err())
}

func (s *mysqlStore) AckGroup(ctx context.Context, group, user, seq uint64) error {
	err := s.withTx(ctx, readCommitted, func(tx *sql.Tx) error {
		// Lock the member row only; the group row is read without a lock
		// so that acks do not queue behind appends.
		var joinSeq, ackedSeq, highest uint64
		err := tx.QueryRowContext(ctx, `SELECT join_seq, acked_seq, (SELECT highest_seq FROM im_groups WHERE id = ?)
			FROM group_members WHERE group_id = ? AND user_id = ? FOR UPDATE`, group, group, user).
			Scan(&joinSeq, &ackedSeq, &highest)
		if errors.Is(err, sql.ErrNoRows) {
			_, _, err = s.member(ctx, tx, group, user, "")
		}
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
	})
	return s.fail("ack group", err)
}

func (s *mysqlStore) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
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

func (s *mysqlStore) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM group_msgs WHERE group_id = ?", group).Scan(&n)
	return n, s.fail("count group messages", err)
}

func (s *mysqlStore) RevokeToken(ctx context.Context, sid string, until int64) error {
	if sid == "" || len(sid) > MaxSIDLen {
		return fmt.Errorf("%w: token session id of %d bytes", ErrInvalid, len(sid))
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO revoked_tokens (sid, until_ms) VALUES (?, ?)
		ON DUPLICATE KEY UPDATE until_ms = GREATEST(until_ms, VALUES(until_ms))`, sid, until)
	return s.fail("revoke token", err)
}

func (s *mysqlStore) RevokedTokens(ctx context.Context, now int64) (map[string]int64, error) {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM revoked_tokens WHERE until_ms <= ?", now); err != nil {
		return nil, s.fail("revoked tokens", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT sid, until_ms FROM revoked_tokens WHERE until_ms > ?", now)
	if err != nil {
		return nil, s.fail("revoked tokens", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sid string
		var until int64
		if err := rows.Scan(&sid, &until); err != nil {
			return nil, s.fail("revoked tokens", err)
		}
		out[sid] = until
	}
	return out, s.fail("revoked tokens", rows.Err())
}

func (s *mysqlStore) CreateInvite(ctx context.Context, inv Invite, limit int) error {
	return s.fail("create invite", s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if limit > 0 {
			// The row lock taken by the upsert serializes one issuer's calls.
			if _, err := tx.ExecContext(ctx, `INSERT INTO invite_counts (user_id, issued) VALUES (?, 0)
				ON DUPLICATE KEY UPDATE issued = issued`, inv.Issuer); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, "UPDATE invite_counts SET issued = issued + 1 WHERE user_id = ? AND issued < ?",
				inv.Issuer, limit)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("%w: user %d has issued %d invites", ErrQuota, inv.Issuer, limit)
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO invites (hash, issuer, expires_at) VALUES (?, ?, ?)",
			inv.Hash[:], inv.Issuer, inv.ExpiresAt)
		if isMySQLError(err, erDupEntry) {
			return fmt.Errorf("%w: invite", ErrExists)
		}
		return err
	}))
}

func (s *mysqlStore) UseInvite(ctx context.Context, hash [32]byte, now int64) (Invite, error) {
	var inv Invite
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		inv = Invite{Hash: hash}
		err := tx.QueryRowContext(ctx, "SELECT issuer, expires_at FROM invites WHERE hash = ? FOR UPDATE",
			hash[:]).Scan(&inv.Issuer, &inv.ExpiresAt)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: invite", ErrNotFound)
		} else if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM invites WHERE hash = ?", hash[:])
		return err
	})
	if err == nil && inv.ExpiresAt <= now {
		err = fmt.Errorf("%w: invite expired", ErrNotFound)
	}
	if err != nil {
		return Invite{}, s.fail("use invite", err)
	}
	return inv, nil
}

// ---- files

const uploadCols = "id, owner, name, size, sha256, created_at"

type rowScanner interface{ Scan(dest ...any) error }

func scanUpload(r rowScanner) (Upload, error) {
	var u Upload
	var sha []byte
	err := r.Scan(&u.ID, &u.Owner, &u.Name, &u.Size, &sha, &u.Created)
	copy(u.SHA256[:], sha)
	return u, err
}

func scanFile(r rowScanner) (File, error) {
	u, err := scanUpload(r)
	return File(u), err
}

func (s *mysqlStore) CreateUpload(ctx context.Context, u Upload, quota int64) (uint64, error) {
	if err := checkUpload(&u); err != nil {
		return 0, err
	}
	if u.Created == 0 {
		u.Created = nowMilli()
	}
	// The usage row exists before the transaction, which then locks just
	// that row with a conditional UPDATE: no gap locks, so concurrent
	// reservations queue instead of deadlocking.
	if _, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO file_usage (owner, used) VALUES (?, 0)", u.Owner); err != nil {
		return 0, s.fail("create upload", err)
	}
	var id uint64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		if u.Size > 0 { // (an UPDATE that changes nothing affects no row)
			res, err := tx.ExecContext(ctx, "UPDATE file_usage SET used = used + ? WHERE owner = ? AND (? <= 0 OR used + ? <= ?)",
				u.Size, u.Owner, quota, u.Size, quota)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				var used int64
				_ = tx.QueryRowContext(ctx, "SELECT used FROM file_usage WHERE owner = ?", u.Owner).Scan(&used)
				return fmt.Errorf("%w: %d of %d bytes used, upload needs %d", ErrQuota, used, quota, u.Size)
			}
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO file_uploads (owner, name, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
			u.Owner, u.Name, u.Size, u.SHA256[:], u.Created)
		if err != nil {
			return err
		}
		n, err := res.LastInsertId()
		id = uint64(n)
		return err
	})
	if err != nil {
		return 0, s.fail("create upload", err)
	}
	return id, nil
}

func (s *mysqlStore) UploadByID(ctx context.Context, id uint64) (Upload, error) {
	u, err := scanUpload(s.db.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Upload{}, fmt.Errorf("%w: upload %d", ErrNotFound, id)
	}
	return u, s.fail("upload", err)
}

// lockUpload reads an upload FOR UPDATE and deletes it.
func lockUpload(ctx context.Context, tx *sql.Tx, id uint64) (Upload, error) {
	u, err := scanUpload(tx.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE id = ? FOR UPDATE", id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: upload %d", ErrNotFound, id)
	}
	if err != nil {
		return u, err
	}
	_, err = tx.ExecContext(ctx, "DELETE FROM file_uploads WHERE id = ?", id)
	return u, err
}

func (s *mysqlStore) DeleteUpload(ctx context.Context, id uint64) error {
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		u, err := lockUpload(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE file_usage SET used = GREATEST(used - ?, 0) WHERE owner = ?", u.Size, u.Owner)
		return err
	})
	return s.fail("delete upload", err)
}

func (s *mysqlStore) StaleUploads(ctx context.Context, before int64, limit int) ([]Upload, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+uploadCols+" FROM file_uploads WHERE created_at < ? ORDER BY created_at, id LIMIT ?",
		before, clampLimit(limit))
	if err != nil {
		return nil, s.fail("stale uploads", err)
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, s.fail("stale uploads", err)
		}
		out = append(out, u)
	}
	return out, s.fail("stale uploads", rows.Err())
}

func (s *mysqlStore) CommitUpload(ctx context.Context, upload uint64, now int64) (File, error) {
	var f File
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		u, err := lockUpload(ctx, tx, upload)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO files (owner, name, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
			u.Owner, u.Name, u.Size, u.SHA256[:], now)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		f = File{ID: uint64(id), Owner: u.Owner, Name: u.Name, Size: u.Size, SHA256: u.SHA256, Created: now}
		_, err = tx.ExecContext(ctx, "INSERT INTO blob_refs (sha256, refs) VALUES (?, 1) ON DUPLICATE KEY UPDATE refs = refs + 1",
			u.SHA256[:])
		return err
	})
	return f, s.fail("commit upload", err)
}

func (s *mysqlStore) FileByID(ctx context.Context, id uint64) (File, error) {
	f, err := scanFile(s.db.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM files WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, fmt.Errorf("%w: file %d", ErrNotFound, id)
	}
	return f, s.fail("file", err)
}

func (s *mysqlStore) Files(ctx context.Context, owner uint64) ([]File, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+uploadCols+" FROM files WHERE owner = ? ORDER BY id", owner)
	if err != nil {
		return nil, s.fail("files", err)
	}
	defer rows.Close()
	var out []File
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			return nil, s.fail("files", err)
		}
		out = append(out, f)
	}
	return out, s.fail("files", rows.Err())
}

func (s *mysqlStore) DeleteFile(ctx context.Context, owner, id uint64) (File, int64, error) {
	var f File
	var left int64
	err := s.withTx(ctx, nil, func(tx *sql.Tx) error {
		var err error
		f, err = scanFile(tx.QueryRowContext(ctx, "SELECT "+uploadCols+" FROM files WHERE id = ? FOR UPDATE", id))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && f.Owner != owner) {
			return fmt.Errorf("%w: file %d of user %d", ErrNotFound, id, owner)
		}
		if err != nil {
			return err
		}
		for _, stmt := range []struct {
			q    string
			args []any
		}{
			{"DELETE FROM files WHERE id = ?", []any{id}},
			{"DELETE FROM file_shares WHERE file_id = ?", []any{id}},
			{"UPDATE file_usage SET used = GREATEST(used - ?, 0) WHERE owner = ?", []any{f.Size, owner}},
			{"UPDATE blob_refs SET refs = refs - 1 WHERE sha256 = ?", []any{f.SHA256[:]}},
		} {
			if _, err := tx.ExecContext(ctx, stmt.q, stmt.args...); err != nil {
				return err
			}
		}
		err = tx.QueryRowContext(ctx, "SELECT refs FROM blob_refs WHERE sha256 = ?", f.SHA256[:]).Scan(&left)
		if errors.Is(err, sql.ErrNoRows) {
			left, err = 0, nil
		}
		if err != nil || left > 0 {
			return err
		}
		left = 0
		_, err = tx.ExecContext(ctx, "DELETE FROM blob_refs WHERE sha256 = ?", f.SHA256[:])
		return err
	})
	return f, left, s.fail("delete file", err)
}

func shareKind(sh *Share) (uint8, uint64) {
	if sh.User != 0 {
		return 0, sh.User
	}
	return 1, sh.Group
}

func (s *mysqlStore) ShareFile(ctx context.Context, sh Share) error {
	if err := checkShare(&sh); err != nil {
		return err
	}
	kind, target := shareKind(&sh)
	res, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO file_shares (file_id, kind, target) SELECT id, ?, ? FROM files WHERE id = ?",
		kind, target, sh.File)
	if err != nil {
		return s.fail("share file", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.FileByID(ctx, sh.File); err != nil {
			return err
		}
	}
	return nil
}

func (s *mysqlStore) UnshareFile(ctx context.Context, sh Share) error {
	if err := checkShare(&sh); err != nil {
		return err
	}
	kind, target := shareKind(&sh)
	_, err := s.db.ExecContext(ctx, "DELETE FROM file_shares WHERE file_id = ? AND kind = ? AND target = ?", sh.File, kind, target)
	return s.fail("unshare file", err)
}

func (s *mysqlStore) FileShares(ctx context.Context, file uint64) ([]Share, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT kind, target FROM file_shares WHERE file_id = ? ORDER BY kind, target", file)
	if err != nil {
		return nil, s.fail("file shares", err)
	}
	defer rows.Close()
	var out []Share
	for rows.Next() {
		var kind uint8
		var target uint64
		if err := rows.Scan(&kind, &target); err != nil {
			return nil, s.fail("file shares", err)
		}
		if kind == 0 {
			out = append(out, Share{File: file, User: target})
		} else {
			out = append(out, Share{File: file, Group: target})
		}
	}
	return out, s.fail("file shares", rows.Err())
}

func (s *mysqlStore) UsedBytes(ctx context.Context, owner uint64) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT used FROM file_usage WHERE owner = ?", owner).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, s.fail("used bytes", err)
}
