// Package bolt is MyIM's embedded storage backend: a storage.Store in one
// bbolt file, for single-node deployments. It passes the conformance suite
// of storage/storagetest, as storage/mysql does.
//
// Layout: one bbolt file, <Dir>/myim.db, one bucket per kind of
// record, keys built from big-endian fixed-width fields so that bbolt's byte
// order is the order we scan in. Signed times are stored with the sign bit
// flipped (putTime) so that they sort like int64.
//
//	users       id                      -> user
//	usernames   name                    -> id
//	devices     user|keyHash(32)        -> device
//	friends     user|friend             -> since       (both directions)
//	friendreqs  to|from                 -> time
//	offline     to|mid                  -> message     (fetch order)
//	offmid      to|mid                  -> time|from|cid (delete by MID, dedup)
//	offcid      to|from|cid             -> mid         (CID dedup, CID != 0)
//	groups      id                      -> group
//	gmembers    group|user              -> member
//	ugroups     user|group              -> ""
//	gmsgs       group|seq               -> group message
//	gexp        expiresAt|group|seq     -> ""          (ExpiresAt != 0)
//	uploads     id                      -> upload
//	upstale     created|id              -> ""          (stale upload scan)
//	files       id                      -> file
//	ownfiles    owner|id                -> ""
//	blobrefs    sha256(32)              -> refs        (files per content)
//	fshares     file|kind(1)|target     -> ""          (kind 0 user, 1 group)
//	fusage      owner                   -> bytes       (files + open uploads)
//	revoked     sid                     -> until(8)    (revoked tokens, unix ms)
//	invites     sha256(code)(32)        -> issuer|expiresAt
//	invitecount user                    -> issued(8)
//
// The file and invite buckets were added without a schema version bump: an
// older binary opens the file and leaves them alone. Version 2 appended a flags
// byte to group records (bit 0: open) and a role byte to member records;
// records written before it have neither and read as a closed group and a
// plain member, so opening a version 1 file needs no rewrite. The bump
// keeps a version 1 binary, which rejects the longer records as corrupt,
// from opening the file afterwards.
//
// bbolt has one writer at a time and a commit costs two fsyncs. The hot
// writes (offline store and delete, group append and ack, device touch) go
// through batch, a group commit: whoever finds no commit running commits
// alone at once, and everyone who arrives while a commit runs shares the
// next one. Unlike DB.Batch, which waits MaxBatchDelay for company, a lone
// writer pays no delay. The rare writes use DB.Update. Slices read inside a
// transaction point into the mmap and are copied before it ends.
package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/myim/myim/storage"
	"github.com/myim/myim/storage/internal/backend"
)

const embeddedFile = "myim.db"

var (
	bktUsers      = []byte("users")
	bktUserNames  = []byte("usernames")
	bktDevices    = []byte("devices")
	bktFriends    = []byte("friends")
	bktFriendReqs = []byte("friendreqs")
	bktOffline    = []byte("offline")
	bktOffMID     = []byte("offmid")
	bktOffCID     = []byte("offcid")
	bktGroups     = []byte("groups")
	bktGMembers   = []byte("gmembers")
	bktUGroups    = []byte("ugroups")
	bktGMsgs      = []byte("gmsgs")
	bktGExp       = []byte("gexp")
	bktMeta       = []byte("meta")
	bktUploads    = []byte("uploads")
	bktUpStale    = []byte("upstale")
	bktFiles      = []byte("files")
	bktOwnFiles   = []byte("ownfiles")
	bktBlobRefs   = []byte("blobrefs")
	bktFShares    = []byte("fshares")
	bktFUsage     = []byte("fusage")
	bktRevoked    = []byte("revoked")
	bktInvites    = []byte("invites")
	bktInviteN    = []byte("invitecount")

	allBuckets = [][]byte{bktUsers, bktUserNames, bktDevices, bktFriends, bktFriendReqs,
		bktOffline, bktOffMID, bktOffCID, bktGroups, bktGMembers, bktUGroups, bktGMsgs,
		bktGExp, bktMeta, bktUploads, bktUpStale, bktFiles, bktOwnFiles, bktBlobRefs,
		bktFShares, bktFUsage, bktRevoked, bktInvites, bktInviteN}

	keySchemaVersion = []byte("schema_version")
)

// embeddedSchemaVersion is bumped when the layout above changes; Open
// refuses a file written by a newer version and migrates an older one.
// Version 3 keys offline messages by to|mid instead of to|time|mid: the
// order is the center's, not the sender's clock.
const embeddedSchemaVersion = 3

// store is the bbolt backend. Safe for concurrent use.
type store struct {
	db     *bbolt.DB
	closed atomic.Bool

	commitMu   sync.Mutex
	pending    []*commitReq // guarded by commitMu
	committing bool         // guarded by commitMu: a group commit is running
}

// commitReq is one batch call waiting for a group commit.
type commitReq struct {
	fn   func(*bbolt.Tx) error
	done chan error // buffered: the committer never blocks on it
}

// Config tunes the embedded store. The zero value opens ./data/myim.db with
// fsync on.
type Config struct {
	// Dir holds the store's file, myim.db; it is created if missing.
	// Default "data".
	Dir string
	// LockTimeout bounds the wait for the file's lock. Default 1 s: the
	// file belongs to one process, a second one should fail fast, not hang.
	LockTimeout time.Duration
	// NoSync turns off fsync. Tests and benchmarks only: a crash loses
	// recent commits.
	NoSync bool
}

// Open opens the store in cfg.Dir, creating or migrating it first. A file
// locked by another process yields an error matching
// storage.ErrUnavailable. The Store is safe for concurrent use; Open itself
// blocks on disk I/O.
func Open(cfg Config) (storage.Store, error) {
	if cfg.Dir == "" {
		cfg.Dir = "data"
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = time.Second
	}
	return open(cfg)
}

func open(cfg Config) (*store, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create data dir: %w", err)
	}
	db, err := bbolt.Open(filepath.Join(cfg.Dir, embeddedFile), 0o600, &bbolt.Options{
		Timeout: cfg.LockTimeout,
		NoSync:  cfg.NoSync,
		// The freelist is rebuilt by a scan at open instead of being
		// written at every commit, and kept as a map: both are what etcd
		// runs with, and they keep commits cheap as the file grows.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by another process: %w", storage.ErrUnavailable, embeddedFile, err)
		}
		return nil, fmt.Errorf("storage: open %s: %w", embeddedFile, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bktMeta)
		if v := meta.Get(keySchemaVersion); v != nil {
			got := binary.BigEndian.Uint64(v)
			if got > embeddedSchemaVersion {
				return fmt.Errorf("storage: %s has schema version %d, newer than this binary's %d",
					embeddedFile, got, embeddedSchemaVersion)
			}
			if got < 3 {
				if err := migrateOfflineKeys(tx); err != nil {
					return fmt.Errorf("schema version 3: %w", err)
				}
			}
		}
		return meta.Put(keySchemaVersion, be64(embeddedSchemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: init %s: %w", embeddedFile, err)
	}
	return &store{db: db}, nil
}

// migrateOfflineKeys rewrites the offline keys of versions 1 and 2,
// to|time|mid, as to|mid, in the transaction that records version 3: a
// crash half way leaves the file as it was.
func migrateOfflineKeys(tx *bbolt.Tx) error {
	off := tx.Bucket(bktOffline)
	type kv struct{ k, v []byte }
	var old []kv
	err := off.ForEach(func(k, v []byte) error {
		if len(k) == 24 {
			old = append(old, kv{slices.Clone(k), slices.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range old {
		if err := off.Delete(r.k); err != nil {
			return err
		}
		if err := off.Put(offlineKey(binary.BigEndian.Uint64(r.k), binary.BigEndian.Uint64(r.k[16:])), r.v); err != nil {
			return err
		}
	}
	return nil
}

// view, update and batch run fn in a transaction after checking ctx and the
// closed flag; update and batch check ctx again before committing.
func (s *store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(s.db.View(fn))
}

func (s *store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(s.db.Update(func(tx *bbolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return ctx.Err()
	}))
}

// batch is update through a group commit shared with concurrent callers.
// fn may run more than once (when another fn of its group fails, the group
// is rolled back and rerun without it), so it must set its outputs afresh on
// every run.
func (s *store) batch(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	req := &commitReq{
		fn: func(tx *bbolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return ctx.Err()
		},
		done: make(chan error, 1),
	}
	s.commitMu.Lock()
	s.pending = append(s.pending, req)
	lead := !s.committing
	s.committing = true
	s.commitMu.Unlock()
	if lead {
		s.commitPending()
	}
	return s.wrap(<-req.done)
}

// commitPending commits everything pending as one group. If more arrived
// meanwhile, a new goroutine commits them, so that the caller, whose request
// was in this group, returns now instead of serving others indefinitely.
func (s *store) commitPending() {
	s.commitMu.Lock()
	group := s.pending
	s.pending = nil
	s.commitMu.Unlock()

	s.commitGroup(group)

	s.commitMu.Lock()
	more := len(s.pending) > 0
	s.committing = more
	s.commitMu.Unlock()
	if more {
		go s.commitPending()
	}
}

// commitGroup runs every request's fn in one transaction. A failing fn gets
// its error and the rest are retried without it.
func (s *store) commitGroup(group []*commitReq) {
	for len(group) > 0 {
		failed, ferr := -1, error(nil)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, r := range group {
				if err := r.fn(tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, r := range group {
				r.done <- err // nil, or a failed commit for everyone
			}
			return
		}
		group[failed].done <- ferr
		group = slices.Delete(group, failed, failed+1)
	}
}

func (s *store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return backend.CtxErr(ctx.Err())
}

func (s *store) wrap(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return backend.CtxErr(err)
}

func (s *store) Ping(ctx context.Context) error {
	return s.view(ctx, func(tx *bbolt.Tx) error { return nil })
}

func (s *store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}
