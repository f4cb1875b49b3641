package mysql

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

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
func (s *store) migrate(ctx context.Context, cfg Config) error {
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
		return fmt.Errorf("%w: timed out waiting for the schema lock", storage.ErrUnavailable)
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
			v+1, backend.NowMilli()); err != nil {
			return err
		}
		cfg.Logger.Info("storage: applied MySQL schema migration", "version", v+1)
	}
	return nil
}
