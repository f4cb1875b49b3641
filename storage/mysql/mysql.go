// Package mysql is MyIM's clustered storage backend: a storage.Store in a
// MySQL 8 or MariaDB 10.6+ database (InnoDB, utf8mb4). It passes the
// conformance suite of storage/storagetest, as storage/bolt does.
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
package mysql

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

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

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

// store is the MySQL backend. Safe for concurrent use.
type store struct {
	db     *sql.DB
	closed atomic.Bool
}

// Config selects and tunes the MySQL backend.
type Config struct {
	// DSN names the database, in go-sql-driver/mysql form
	// ("user:pass@tcp(host:3306)/myim"). The database must exist; tables
	// are created and migrated by Open. Options the store relies on are
	// forced: see open.
	DSN string
	// MaxConns is the pool size, open and idle alike. Default 16.
	MaxConns int
	// DialTimeout bounds connecting (default 5 s; Open gives its first
	// connection, dial and handshake, twice that).
	DialTimeout time.Duration
	// IOTimeout is the per-read/per-write network timeout, unless the DSN
	// sets its own. Default 30 s.
	IOTimeout time.Duration
	// OpenTimeout bounds Open: connect and migrate. Default 60 s.
	OpenTimeout time.Duration
	// Logger receives rare events (schema migrations, connections the
	// driver dropped). Default: discard.
	Logger *slog.Logger
}

func (c *Config) ensureDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 16
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = 30 * time.Second
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Open connects to the database cfg.DSN names and creates or migrates its
// tables. A server that cannot be reached yields an error matching
// storage.ErrUnavailable; an invalid DSN yields an error that does not
// echo it. The Store is safe for concurrent use; Open itself blocks on
// network I/O for up to cfg.OpenTimeout.
func Open(cfg Config) (storage.Store, error) {
	cfg.ensureDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.OpenTimeout)
	defer cancel()
	return open(ctx, cfg)
}

// open connects and migrates the schema. It forces the driver options
// the store relies on: ParseTime, Loc UTC, InterpolateParams (one round trip
// per statement instead of prepare, execute, close; safe with utf8mb4),
// ClientFoundRows off (TouchDevice reads "1 row affected" as "inserted"),
// RejectReadOnly (a failed-over primary that became read-only is dropped from
// the pool), and the configured timeouts unless the DSN sets its own.
func open(ctx context.Context, cfg Config) (*store, error) {
	mc, err := gomysql.ParseDSN(cfg.DSN)
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
	connector, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("storage: invalid MySQL config: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns) // fewer idle than open means constant reconnects under load
	db.SetConnMaxLifetime(mysqlConnMaxLifetime)
	db.SetConnMaxIdleTime(mysqlConnMaxIdleTime)
	s := &store{db: db}
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

// fail turns a driver error into the package's: sentinels pass through,
// errors after Close become ErrClosed, connection-level failures wrap
// ErrUnavailable, ctx cancellation stays context.Canceled.
func (s *store) fail(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExists),
		errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrUnavailable):
		return err
	case s.closed.Load():
		return storage.ErrClosed
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("storage: %s: %w", op, err)
	case isUnavailable(err): // a passed ctx deadline included
		return fmt.Errorf("%w: %s: %w", storage.ErrUnavailable, op, err)
	}
	return fmt.Errorf("storage: %s: %w", op, err)
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, gomysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if ne := net.Error(nil); errors.As(err, &ne) {
		return true
	}
	var me *gomysql.MySQLError
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
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// withTx runs fn in a transaction, rerunning it when InnoDB picked it as a
// deadlock victim. fn must set its outputs afresh on every run.
func (s *store) withTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	return retryDeadlock(ctx, func() error { return s.tryTx(ctx, opts, fn) })
}

// retryDeadlock runs fn, rerunning it when InnoDB picked it as a deadlock
// victim: a single autocommit statement can be one too, as when several
// deletes of one user's rows lock the same index range.
func retryDeadlock(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt > deadlockRetries || !isMySQLError(err, erLockDeadlock) {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return backend.CtxErr(ctx.Err())
		case <-t.C:
		}
	}
}

func (s *store) tryTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
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

func (s *store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return s.fail("ping", s.db.PingContext(ctx))
}

func (s *store) Close() error {
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
