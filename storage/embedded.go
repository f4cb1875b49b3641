package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Embedded store: one bbolt file, <DataDir>/myim.db, one bucket per kind of
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

// embedded is the bbolt backend. Safe for concurrent use.
type embedded struct {
	db     *bolt.DB
	closed atomic.Bool

	commitMu   sync.Mutex
	pending    []*commitReq // guarded by commitMu
	committing bool         // guarded by commitMu: a group commit is running
}

// commitReq is one batch call waiting for a group commit.
type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the committer never blocks on it
}

func openEmbedded(cfg Config) (*embedded, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(cfg.DataDir, embeddedFile), 0o600, &bolt.Options{
		Timeout: cfg.DialTimeout,
		NoSync:  cfg.NoSync,
		// The freelist is rebuilt by a scan at open instead of being
		// written at every commit, and kept as a map: both are what etcd
		// runs with, and they keep commits cheap as the file grows.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by another process: %w", ErrUnavailable, embeddedFile, err)
		}
		return nil, fmt.Errorf("storage: open %s: %w", embeddedFile, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
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
	return &embedded{db: db}, nil
}

// migrateOfflineKeys rewrites the offline keys of versions 1 and 2,
// to|time|mid, as to|mid, in the transaction that records version 3: a
// crash half way leaves the file as it was.
func migrateOfflineKeys(tx *bolt.Tx) error {
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
func (s *embedded) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(s.db.View(fn))
}

func (s *embedded) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return s.wrap(s.db.Update(func(tx *bolt.Tx) error {
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
func (s *embedded) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	req := &commitReq{
		fn: func(tx *bolt.Tx) error {
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
func (s *embedded) commitPending() {
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
func (s *embedded) commitGroup(group []*commitReq) {
	for len(group) > 0 {
		failed, ferr := -1, error(nil)
		err := s.db.Update(func(tx *bolt.Tx) error {
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

func (s *embedded) begin(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctxErr(ctx.Err())
}

func (s *embedded) wrap(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return ctxErr(err)
}

func (s *embedded) Ping(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return nil })
}

func (s *embedded) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}

// ---- users

func (s *embedded) CreateUser(ctx context.Context, u User) (uint64, error) {
	if err := checkUser(&u); err != nil {
		return 0, err
	}
	if u.CreatedAt == 0 {
		u.CreatedAt = nowMilli()
	}
	var id uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		names := tx.Bucket(bktUserNames)
		if names.Get([]byte(u.Name)) != nil {
			return fmt.Errorf("%w: user %q", ErrExists, u.Name)
		}
		users := tx.Bucket(bktUsers)
		var err error
		if id, err = users.NextSequence(); err != nil {
			return err
		}
		u.ID = id
		if err := names.Put([]byte(u.Name), be64(id)); err != nil {
			return err
		}
		return users.Put(be64(id), encodeUser(&u))
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func (s *embedded) UserByName(ctx context.Context, name string) (User, error) {
	var u User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bktUserNames).Get([]byte(name))
		if id == nil {
			return fmt.Errorf("%w: user %q", ErrNotFound, name)
		}
		return getUser(tx, binary.BigEndian.Uint64(id), &u)
	})
	return u, err
}

func (s *embedded) UserByID(ctx context.Context, id uint64) (User, error) {
	var u User
	err := s.view(ctx, func(tx *bolt.Tx) error { return getUser(tx, id, &u) })
	return u, err
}

func getUser(tx *bolt.Tx, id uint64, u *User) error {
	v := tx.Bucket(bktUsers).Get(be64(id))
	if v == nil {
		return fmt.Errorf("%w: user %d", ErrNotFound, id)
	}
	return decodeUser(id, v, u)
}

func (s *embedded) UpdateProfile(ctx context.Context, id uint64, signature string, profile []byte) error {
	if err := checkProfile(signature, profile); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		var u User
		if err := getUser(tx, id, &u); err != nil {
			return err
		}
		u.Signature, u.Profile = signature, profile
		return tx.Bucket(bktUsers).Put(be64(id), encodeUser(&u))
	})
}

// ---- devices

func (s *embedded) TouchDevice(ctx context.Context, d Device) (bool, error) {
	if err := checkDevice(&d); err != nil {
		return false, err
	}
	if d.LastSeen == 0 {
		d.LastSeen = nowMilli()
	}
	key := append(be64(d.User), d.KeyHash[:]...)
	var isNew bool
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktDevices)
		isNew = false
		if v := b.Get(key); v != nil {
			var old Device
			if err := decodeDevice(key, v, &old); err != nil {
				return err
			}
			d.FirstSeen = old.FirstSeen
		} else {
			isNew = true
			d.FirstSeen = d.LastSeen
		}
		return b.Put(key, encodeDevice(&d))
	})
	return isNew, err
}

func (s *embedded) Devices(ctx context.Context, user uint64) ([]Device, error) {
	var out []Device
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := be64(user)
		c := tx.Bucket(bktDevices).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Device
			if err := decodeDevice(k, v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// ---- friends

func (s *embedded) RequestFriend(ctx context.Context, from, to uint64) error {
	if err := checkFriends(from, to); err != nil {
		return err
	}
	now := nowMilli()
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bktUsers).Get(be64(to)) == nil {
			return fmt.Errorf("%w: user %d", ErrNotFound, to)
		}
		if tx.Bucket(bktFriends).Get(pair(from, to)) != nil {
			return fmt.Errorf("%w: %d and %d are friends", ErrExists, from, to)
		}
		reqs := tx.Bucket(bktFriendReqs)
		if reqs.Get(pair(to, from)) != nil {
			return nil
		}
		return reqs.Put(pair(to, from), be64(uint64(now)))
	})
}

func (s *embedded) AcceptFriend(ctx context.Context, user, requester uint64) error {
	if err := checkFriends(user, requester); err != nil {
		return err
	}
	since := be64(uint64(nowMilli()))
	return s.update(ctx, func(tx *bolt.Tx) error {
		reqs := tx.Bucket(bktFriendReqs)
		if reqs.Get(pair(user, requester)) == nil {
			return fmt.Errorf("%w: friend request from %d to %d", ErrNotFound, requester, user)
		}
		if err := reqs.Delete(pair(user, requester)); err != nil {
			return err
		}
		if err := reqs.Delete(pair(requester, user)); err != nil {
			return err
		}
		friends := tx.Bucket(bktFriends)
		if err := friends.Put(pair(user, requester), since); err != nil {
			return err
		}
		return friends.Put(pair(requester, user), since)
	})
}

func (s *embedded) RemoveFriend(ctx context.Context, a, b uint64) error {
	if err := checkFriends(a, b); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bktFriends, bktFriendReqs} {
			bk := tx.Bucket(name)
			if err := bk.Delete(pair(a, b)); err != nil {
				return err
			}
			if err := bk.Delete(pair(b, a)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *embedded) Friends(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktFriends, user)
}

func (s *embedded) PendingFriendRequests(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktFriendReqs, user)
}

func (s *embedded) UserGroups(ctx context.Context, user uint64) ([]uint64, error) {
	return s.secondIDs(ctx, bktUGroups, user)
}

// secondIDs lists the second halves of the a|b keys of bucket whose first
// half is a, ascending.
func (s *embedded) secondIDs(ctx context.Context, bucket []byte, a uint64) ([]uint64, error) {
	var out []uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := be64(a)
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, binary.BigEndian.Uint64(k[8:]))
		}
		return nil
	})
	return out, err
}

// ---- point-to-point offline messages

func (s *embedded) StoreOffline(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return s.begin(ctx)
	}
	if err := checkMessages(msgs); err != nil {
		return err
	}
	// Encode outside the transaction: the writer lock is the bottleneck.
	keys := make([][]byte, len(msgs))
	vals := make([][]byte, len(msgs))
	for i := range msgs {
		keys[i] = offlineKey(msgs[i].To, msgs[i].MID)
		vals[i] = encodeMessage(&msgs[i])
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		off, byMID, byCID := tx.Bucket(bktOffline), tx.Bucket(bktOffMID), tx.Bucket(bktOffCID)
		for i := range msgs {
			m := &msgs[i]
			midKey := pair(m.To, m.MID)
			if byMID.Get(midKey) != nil {
				continue
			}
			if m.CID != 0 {
				cidKey := triple(m.To, m.From, m.CID)
				if byCID.Get(cidKey) != nil {
					continue
				}
				if err := byCID.Put(cidKey, be64(m.MID)); err != nil {
					return err
				}
			}
			ref := make([]byte, 0, 24)
			ref = putTime(ref, m.Time)
			ref = binary.BigEndian.AppendUint64(ref, m.From)
			ref = binary.BigEndian.AppendUint64(ref, m.CID)
			if err := byMID.Put(midKey, ref); err != nil {
				return err
			}
			if err := off.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *embedded) FetchOffline(ctx context.Context, user uint64, afterMID uint64, limit int) ([]Message, error) {
	limit = clampLimit(limit)
	var out []Message
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		if afterMID == ^uint64(0) {
			return nil
		}
		prefix := be64(user)
		byMID := tx.Bucket(bktOffMID)
		c := tx.Bucket(bktOffline).Cursor()
		for k, v := c.Seek(offlineKey(user, afterMID+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var m Message
			if err := decodeMessage(k, v, byMID.Get(k), &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *embedded) DeleteOffline(ctx context.Context, user uint64, mids []uint64) error {
	if len(mids) == 0 {
		return s.begin(ctx)
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		off, byMID, byCID := tx.Bucket(bktOffline), tx.Bucket(bktOffMID), tx.Bucket(bktOffCID)
		for _, mid := range mids {
			midKey := pair(user, mid)
			ref := byMID.Get(midKey)
			if ref == nil {
				continue
			}
			if len(ref) != 24 {
				return errCorrupt("offmid")
			}
			from, cid := binary.BigEndian.Uint64(ref[8:]), binary.BigEndian.Uint64(ref[16:])
			// ref points into the page being changed: done with it
			// before the first Delete.
			if err := byMID.Delete(midKey); err != nil {
				return err
			}
			if cid != 0 {
				if err := byCID.Delete(triple(user, from, cid)); err != nil {
					return err
				}
			}
			if err := off.Delete(offlineKey(user, mid)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *embedded) CountOffline(ctx context.Context, user uint64) (int, error) {
	return s.countPrefix(ctx, bktOffMID, be64(user))
}

func (s *embedded) CountGroupMsgs(ctx context.Context, group uint64) (int, error) {
	return s.countPrefix(ctx, bktGMsgs, be64(group))
}

func (s *embedded) RevokeToken(ctx context.Context, sid string, until int64) error {
	if sid == "" || len(sid) > MaxSIDLen {
		return fmt.Errorf("%w: token session id of %d bytes", ErrInvalid, len(sid))
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRevoked)
		if v := b.Get([]byte(sid)); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= until {
			return nil
		}
		return b.Put([]byte(sid), be64(uint64(until)))
	})
}

func (s *embedded) CreateInvite(ctx context.Context, inv Invite, limit int) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktInvites)
		if b.Get(inv.Hash[:]) != nil {
			return fmt.Errorf("%w: invite", ErrExists)
		}
		if limit > 0 {
			counts := tx.Bucket(bktInviteN)
			var n uint64
			if v := counts.Get(be64(inv.Issuer)); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
			if n >= uint64(limit) {
				return fmt.Errorf("%w: user %d has issued %d invites", ErrQuota, inv.Issuer, n)
			}
			if err := counts.Put(be64(inv.Issuer), be64(n+1)); err != nil {
				return err
			}
		}
		return b.Put(inv.Hash[:], append(be64(inv.Issuer), be64(uint64(inv.ExpiresAt))...))
	})
}

func (s *embedded) UseInvite(ctx context.Context, hash [32]byte, now int64) (Invite, error) {
	inv := Invite{Hash: hash}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktInvites)
		v := b.Get(hash[:])
		if v == nil {
			return fmt.Errorf("%w: invite", ErrNotFound)
		}
		if len(v) != 16 {
			return errCorrupt("invites")
		}
		inv.Issuer = binary.BigEndian.Uint64(v)
		inv.ExpiresAt = int64(binary.BigEndian.Uint64(v[8:]))
		return b.Delete(hash[:])
	})
	if err == nil && inv.ExpiresAt <= now {
		err = fmt.Errorf("%w: invite expired", ErrNotFound)
	}
	if err != nil {
		return Invite{}, err
	}
	return inv, nil
}

func (s *embedded) RevokedTokens(ctx context.Context, now int64) (map[string]int64, error) {
	out := map[string]int64{}
	var stale [][]byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktRevoked).ForEach(func(k, v []byte) error {
			until := int64(binary.BigEndian.Uint64(v))
			if until > now {
				out[string(k)] = until
			} else {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil || len(stale) == 0 {
		return out, err
	}
	return out, s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRevoked)
		for _, k := range stale {
			if v := b.Get(k); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (s *embedded) countPrefix(ctx context.Context, bucket, prefix []byte) (int, error) {
	n := 0
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// ---- groups

type groupRec struct {
	owner, highest uint64
	members        uint32
	createdAt      int64
	name           string
	open           bool
}

func (s *embedded) CreateGroup(ctx context.Context, owner uint64, name string) (uint64, error) {
	if err := checkName("group name", name); err != nil {
		return 0, err
	}
	if owner == 0 {
		return 0, fmt.Errorf("%w: group without owner", ErrInvalid)
	}
	now := nowMilli()
	var id uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		groups := tx.Bucket(bktGroups)
		var err error
		if id, err = groups.NextSequence(); err != nil {
			return err
		}
		g := groupRec{owner: owner, members: 1, createdAt: now, name: name}
		if err := groups.Put(be64(id), encodeGroup(&g)); err != nil {
			return err
		}
		return putMember(tx, id, owner, Member{User: owner, JoinedAt: now})
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func getGroup(tx *bolt.Tx, id uint64) (groupRec, error) {
	var g groupRec
	v := tx.Bucket(bktGroups).Get(be64(id))
	if v == nil {
		return g, fmt.Errorf("%w: group %d", ErrNotFound, id)
	}
	return g, decodeGroup(v, &g)
}

func getMember(tx *bolt.Tx, group, user uint64) (Member, bool, error) {
	v := tx.Bucket(bktGMembers).Get(pair(group, user))
	if v == nil {
		return Member{}, false, nil
	}
	m, err := decodeMember(user, v)
	return m, err == nil, err
}

func putMember(tx *bolt.Tx, group, user uint64, m Member) error {
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

func (s *embedded) JoinGroup(ctx context.Context, group, user uint64) (uint64, error) {
	if user == 0 {
		return 0, fmt.Errorf("%w: user 0", ErrInvalid)
	}
	now := nowMilli()
	var joinSeq uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
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
		if err := putMember(tx, group, user, Member{User: user, JoinSeq: g.highest, JoinedAt: now}); err != nil {
			return err
		}
		g.members++
		return tx.Bucket(bktGroups).Put(be64(group), encodeGroup(&g))
	})
	return joinSeq, err
}

func (s *embedded) LeaveGroup(ctx context.Context, group, user uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
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
func countDelivered(tx *bolt.Tx, group, from, to uint64) error {
	if to <= from {
		return nil
	}
	msgs := tx.Bucket(bktGMsgs)
	type change struct {
		key, val []byte // copies; nil val: delete
		expKey   []byte
	}
	var changes []change
	end := pair(group, to)
	c := msgs.Cursor()
	for k, v := c.Seek(pair(group, from+1)); k != nil && bytes.Compare(k, end) <= 0; k, v = c.Next() {
		if len(v) < gmsgFixed {
			return errCorrupt("gmsgs")
		}
		sent := binary.BigEndian.Uint32(v[gmsgSentOff:]) + 1
		if sent >= binary.BigEndian.Uint32(v[gmsgCountOff:]) {
			ch := change{key: bytes.Clone(k)}
			if exp := getTime(v[gmsgExpOff:]); exp != 0 {
				ch.expKey = expKey(exp, group, binary.BigEndian.Uint64(k[8:]))
			}
			changes = append(changes, ch)
			continue
		}
		nv := bytes.Clone(v)
		binary.BigEndian.PutUint32(nv[gmsgSentOff:], sent)
		changes = append(changes, change{key: bytes.Clone(k), val: nv})
	}
	// Applied after the scan: changing a bucket under a live cursor can make
	// Next skip keys.
	exp := tx.Bucket(bktGExp)
	for _, ch := range changes {
		if ch.val != nil {
			if err := msgs.Put(ch.key, ch.val); err != nil {
				return err
			}
			continue
		}
		if err := msgs.Delete(ch.key); err != nil {
			return err
		}
		if ch.expKey != nil {
			if err := exp.Delete(ch.expKey); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *embedded) GroupMembers(ctx context.Context, group uint64) ([]Member, error) {
	var out []Member
	err := s.view(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		prefix := be64(group)
		c := tx.Bucket(bktGMembers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			m, err := decodeMember(binary.BigEndian.Uint64(k[8:]), v)
			if err != nil {
				return err
			}
			if m.User == g.owner {
				m.Role = RoleOwner
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *embedded) GroupInfo(ctx context.Context, group uint64) (Group, error) {
	var out Group
	err := s.view(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		out = Group{ID: group, Name: g.name, Owner: g.owner, HighestSeq: g.highest, Members: int(g.members), Open: g.open}
		return nil
	})
	return out, err
}

func (s *embedded) SetGroupOpen(ctx context.Context, group uint64, open bool) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		g.open = open
		return tx.Bucket(bktGroups).Put(be64(group), encodeGroup(&g))
	})
}

func (s *embedded) SetGroupRole(ctx context.Context, group, user uint64, role uint8) error {
	if role != RoleMember && role != RoleAdmin {
		return fmt.Errorf("%w: role %d cannot be given", ErrInvalid, role)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		if user == g.owner {
			return fmt.Errorf("%w: the owner's role does not change", ErrInvalid)
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", ErrNotFound, user, group)
		}
		m.Role = role
		return putMember(tx, group, user, m)
	})
}

func (s *embedded) AppendGroupMsg(ctx context.Context, m GroupMessage) (uint64, error) {
	if err := checkGroupMsg(&m); err != nil {
		return 0, err
	}
	var seq uint64
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, m.Group)
		if err != nil {
			return err
		}
		g.highest++
		seq = g.highest
		m.Seq, m.SentCount, m.MemberCount = seq, 0, g.members
		if err := tx.Bucket(bktGMsgs).Put(pair(m.Group, seq), encodeGroupMsg(&m)); err != nil {
			return err
		}
		if m.ExpiresAt != 0 {
			if err := tx.Bucket(bktGExp).Put(expKey(m.ExpiresAt, m.Group, seq), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bktGroups).Put(be64(m.Group), encodeGroup(&g))
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

func (s *embedded) FetchGroup(ctx context.Context, group, user uint64, afterSeq uint64, limit int) ([]GroupMessage, error) {
	limit = clampLimit(limit)
	now := nowMilli()
	var out []GroupMessage
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if _, err := getGroup(tx, group); err != nil {
			return err
		}
		mem, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", ErrNotFound, user, group)
		}
		floor := max(afterSeq, mem.JoinSeq, mem.AckedSeq)
		if floor == ^uint64(0) {
			return nil
		}
		prefix := be64(group)
		c := tx.Bucket(bktGMsgs).Cursor()
		for k, v := c.Seek(pair(group, floor+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var gm GroupMessage
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

func (s *embedded) AckGroup(ctx context.Context, group, user, seq uint64) error {
	return s.batch(ctx, func(tx *bolt.Tx) error {
		g, err := getGroup(tx, group)
		if err != nil {
			return err
		}
		m, ok, err := getMember(tx, group, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: user %d is not a member of group %d", ErrNotFound, user, group)
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

// PurgeExpiredGroupMsgs deletes in transactions of at most
// purgeRowsPerStmt messages, like the MySQL backend, so that a large backlog
// does not make one huge commit that holds the writer lock.
func (s *embedded) PurgeExpiredGroupMsgs(ctx context.Context, now int64) (int, error) {
	total := 0
	for {
		var n int
		err := s.update(ctx, func(tx *bolt.Tx) error {
			var keys [][]byte
			// Only ExpiresAt in [1, now] qualifies; 0 means never.
			end := putTime(nil, now)
			c := tx.Bucket(bktGExp).Cursor()
			for k, _ := c.Seek(putTime(nil, 1)); k != nil && bytes.Compare(k[:8], end) <= 0 &&
				len(keys) < purgeRowsPerStmt; k, _ = c.Next() {
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
		if n < purgeRowsPerStmt {
			return total, nil
		}
	}
}

// ---- keys and records

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func pair(a, b uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

func triple(a, b, c uint64) []byte {
	k := make([]byte, 24)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	binary.BigEndian.PutUint64(k[16:], c)
	return k
}

// putTime appends t so that byte order matches int64 order.
func putTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^1<<63)
}

func getTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ 1<<63) }

func offlineKey(to, mid uint64) []byte {
	return pair(to, mid)
}

// expKey is expiresAt|group|seq; its last 16 bytes are the gmsgs key.
func expKey(expiresAt int64, group, seq uint64) []byte {
	k := make([]byte, 0, 24)
	k = putTime(k, expiresAt)
	k = binary.BigEndian.AppendUint64(k, group)
	return binary.BigEndian.AppendUint64(k, seq)
}

func errCorrupt(bucket string) error {
	return fmt.Errorf("storage: corrupt record in bucket %s", bucket)
}

// reader decodes a record; the first failure sticks, checked once in err.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// bytes returns a copy of a uvarint-prefixed field (nil when empty).
func (r *reader) bytes() []byte {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || uint64(len(r.b)-w) < n {
		r.bad = true
		return nil
	}
	v := r.b[w : w+int(n)]
	r.b = r.b[w+int(n):]
	if n == 0 {
		return nil
	}
	return bytes.Clone(v)
}

func (r *reader) str() string {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || uint64(len(r.b)-w) < n {
		r.bad = true
		return ""
	}
	v := string(r.b[w : w+int(n)])
	r.b = r.b[w+int(n):]
	return v
}

// rest returns a copy of the remaining bytes (nil when empty).
func (r *reader) rest() []byte {
	if len(r.b) == 0 {
		return nil
	}
	v := bytes.Clone(r.b)
	r.b = nil
	return v
}

func (r *reader) err(bucket string) error {
	if r.bad || len(r.b) != 0 {
		return errCorrupt(bucket)
	}
	return nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendStr(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeUser(u *User) []byte {
	b := make([]byte, 0, 8+len(u.Name)+len(u.PassHash)+len(u.Signature)+len(u.Profile)+8)
	b = binary.BigEndian.AppendUint64(b, uint64(u.CreatedAt))
	b = appendStr(b, u.Name)
	b = appendStr(b, u.PassHash)
	b = appendStr(b, u.Signature)
	return appendBytes(b, u.Profile)
}

func decodeUser(id uint64, v []byte, u *User) error {
	r := reader{b: v}
	*u = User{ID: id}
	u.CreatedAt = int64(r.u64())
	u.Name = r.str()
	u.PassHash = r.str()
	u.Signature = r.str()
	u.Profile = r.bytes()
	return r.err("users")
}

func encodeDevice(d *Device) []byte {
	b := make([]byte, 0, 16+len(d.Fingerprint)+len(d.Addr)+4)
	b = binary.BigEndian.AppendUint64(b, uint64(d.FirstSeen))
	b = binary.BigEndian.AppendUint64(b, uint64(d.LastSeen))
	b = appendStr(b, d.Fingerprint)
	return appendStr(b, d.Addr)
}

func decodeDevice(k, v []byte, d *Device) error {
	if len(k) != 40 {
		return errCorrupt("devices")
	}
	r := reader{b: v}
	*d = Device{User: binary.BigEndian.Uint64(k)}
	copy(d.KeyHash[:], k[8:])
	d.FirstSeen = int64(r.u64())
	d.LastSeen = int64(r.u64())
	d.Fingerprint = r.str()
	d.Addr = r.str()
	return r.err("devices")
}

// Offline message value: from(8) cid(8) srv(4) qos(1) content.
func encodeMessage(m *Message) []byte {
	b := make([]byte, 0, 21+len(m.Content))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.CID)
	b = binary.BigEndian.AppendUint32(b, m.Srv)
	b = append(b, m.QoS)
	return append(b, m.Content...)
}

// decodeMessage reads an offline record: k is to|mid, ref its offmid
// value (time|from|cid), which holds the sender's time.
func decodeMessage(k, v, ref []byte, m *Message) error {
	if len(k) != 16 || len(ref) != 24 {
		return errCorrupt("offline")
	}
	r := reader{b: v}
	*m = Message{To: binary.BigEndian.Uint64(k), Time: getTime(ref), MID: binary.BigEndian.Uint64(k[8:])}
	m.From = r.u64()
	m.CID = r.u64()
	m.Srv = r.u32()
	m.QoS = r.u8()
	m.Content = r.rest()
	return r.err("offline")
}

func encodeGroup(g *groupRec) []byte {
	b := make([]byte, 0, 28+len(g.name)+2)
	b = binary.BigEndian.AppendUint64(b, g.owner)
	b = binary.BigEndian.AppendUint64(b, g.highest)
	b = binary.BigEndian.AppendUint32(b, g.members)
	b = binary.BigEndian.AppendUint64(b, uint64(g.createdAt))
	b = appendStr(b, g.name)
	var flags byte
	if g.open {
		flags |= groupOpen
	}
	return append(b, flags)
}

// groupOpen is bit 0 of a group record's flags byte.
const groupOpen = 1

func decodeGroup(v []byte, g *groupRec) error {
	r := reader{b: v}
	g.owner = r.u64()
	g.highest = r.u64()
	g.members = r.u32()
	g.createdAt = int64(r.u64())
	g.name = r.str()
	if len(r.b) > 0 { // absent before schema version 2: closed
		g.open = r.u8()&groupOpen != 0
	}
	return r.err("groups")
}

func decodeMember(user uint64, v []byte) (Member, error) {
	r := reader{b: v}
	m := Member{User: user, JoinSeq: r.u64(), AckedSeq: r.u64(), JoinedAt: int64(r.u64())}
	if len(r.b) > 0 { // absent before schema version 2: a plain member
		m.Role = r.u8()
	}
	return m, r.err("gmembers")
}

// Group message value: from(8) time(8) cid(8) mid(8) sent(4) count(4)
// expires(8, sign-flipped) content. countDelivered patches sent in place.
const (
	gmsgSentOff  = 32
	gmsgCountOff = 36
	gmsgExpOff   = 40
	gmsgFixed    = 48
)

func encodeGroupMsg(m *GroupMessage) []byte {
	b := make([]byte, 0, gmsgFixed+len(m.Content))
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	b = binary.BigEndian.AppendUint64(b, m.CID)
	b = binary.BigEndian.AppendUint64(b, m.MID)
	b = binary.BigEndian.AppendUint32(b, m.SentCount)
	b = binary.BigEndian.AppendUint32(b, m.MemberCount)
	b = putTime(b, m.ExpiresAt)
	return append(b, m.Content...)
}

func decodeGroupMsg(k, v []byte, m *GroupMessage) error {
	if len(k) != 16 {
		return errCorrupt("gmsgs")
	}
	r := reader{b: v}
	*m = GroupMessage{Group: binary.BigEndian.Uint64(k), Seq: binary.BigEndian.Uint64(k[8:])}
	m.From = r.u64()
	m.Time = int64(r.u64())
	m.CID = r.u64()
	m.MID = r.u64()
	m.SentCount = r.u32()
	m.MemberCount = r.u32()
	exp := r.u64()
	m.ExpiresAt = int64(exp ^ 1<<63)
	m.Content = r.rest()
	return r.err("gmsgs")
}

// ---- files

// fileRec encodes an Upload or a File: owner size created sha256 name.
func encodeFileRec(owner uint64, size, created int64, sha [32]byte, name string) []byte {
	b := make([]byte, 0, 56+len(name)+2)
	b = binary.BigEndian.AppendUint64(b, owner)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	b = binary.BigEndian.AppendUint64(b, uint64(created))
	b = append(b, sha[:]...)
	return appendStr(b, name)
}

func decodeFileRec(bucket string, v []byte) (owner uint64, size, created int64, sha [32]byte, name string, err error) {
	r := reader{b: v}
	owner = r.u64()
	size = int64(r.u64())
	created = int64(r.u64())
	if len(r.b) >= 32 {
		copy(sha[:], r.b)
		r.b = r.b[32:]
	} else {
		r.bad = true
	}
	name = r.str()
	return owner, size, created, sha, name, r.err(bucket)
}

func getUpload(tx *bolt.Tx, id uint64) (Upload, error) {
	v := tx.Bucket(bktUploads).Get(be64(id))
	if v == nil {
		return Upload{}, fmt.Errorf("%w: upload %d", ErrNotFound, id)
	}
	u := Upload{ID: id}
	var err error
	u.Owner, u.Size, u.Created, u.SHA256, u.Name, err = decodeFileRec("uploads", v)
	return u, err
}

func getFile(tx *bolt.Tx, id uint64) (File, error) {
	v := tx.Bucket(bktFiles).Get(be64(id))
	if v == nil {
		return File{}, fmt.Errorf("%w: file %d", ErrNotFound, id)
	}
	f := File{ID: id}
	var err error
	f.Owner, f.Size, f.Created, f.SHA256, f.Name, err = decodeFileRec("files", v)
	return f, err
}

func getCounter(b *bolt.Bucket, k []byte) int64 {
	if v := b.Get(k); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// addCounter adds d to the counter at k, deleting it at zero, and returns
// the new value.
func addCounter(b *bolt.Bucket, k []byte, d int64) (int64, error) {
	n := max(getCounter(b, k)+d, 0)
	if n == 0 {
		return 0, b.Delete(k)
	}
	return n, b.Put(k, be64(uint64(n)))
}

func upStaleKey(created int64, id uint64) []byte {
	return binary.BigEndian.AppendUint64(putTime(make([]byte, 0, 16), created), id)
}

func (s *embedded) CreateUpload(ctx context.Context, u Upload, quota int64) (uint64, error) {
	if err := checkUpload(&u); err != nil {
		return 0, err
	}
	if u.Created == 0 {
		u.Created = nowMilli()
	}
	var id uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		usage := tx.Bucket(bktFUsage)
		if used := getCounter(usage, be64(u.Owner)); quota > 0 && used+u.Size > quota {
			return fmt.Errorf("%w: %d of %d bytes used, upload needs %d", ErrQuota, used, quota, u.Size)
		}
		ups := tx.Bucket(bktUploads)
		var err error
		if id, err = ups.NextSequence(); err != nil {
			return err
		}
		if err := ups.Put(be64(id), encodeFileRec(u.Owner, u.Size, u.Created, u.SHA256, u.Name)); err != nil {
			return err
		}
		if err := tx.Bucket(bktUpStale).Put(upStaleKey(u.Created, id), nil); err != nil {
			return err
		}
		_, err = addCounter(usage, be64(u.Owner), u.Size)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

func (s *embedded) UploadByID(ctx context.Context, id uint64) (Upload, error) {
	var u Upload
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		u, err = getUpload(tx, id)
		return err
	})
	return u, err
}

// dropUpload deletes an upload's records; release says whether its quota
// reservation goes too (not when it becomes a file).
func dropUpload(tx *bolt.Tx, u Upload, release bool) error {
	if err := tx.Bucket(bktUploads).Delete(be64(u.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bktUpStale).Delete(upStaleKey(u.Created, u.ID)); err != nil {
		return err
	}
	if !release {
		return nil
	}
	_, err := addCounter(tx.Bucket(bktFUsage), be64(u.Owner), -u.Size)
	return err
}

func (s *embedded) DeleteUpload(ctx context.Context, id uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		u, err := getUpload(tx, id)
		if err != nil {
			return err
		}
		return dropUpload(tx, u, true)
	})
}

func (s *embedded) StaleUploads(ctx context.Context, before int64, limit int) ([]Upload, error) {
	limit = clampLimit(limit)
	var out []Upload
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bktUpStale).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if getTime(k) >= before {
				break
			}
			u, err := getUpload(tx, binary.BigEndian.Uint64(k[8:]))
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

func (s *embedded) CommitUpload(ctx context.Context, upload uint64, now int64) (File, error) {
	var f File
	err := s.update(ctx, func(tx *bolt.Tx) error {
		u, err := getUpload(tx, upload)
		if err != nil {
			return err
		}
		if err := dropUpload(tx, u, false); err != nil {
			return err
		}
		files := tx.Bucket(bktFiles)
		id, err := files.NextSequence()
		if err != nil {
			return err
		}
		f = File{ID: id, Owner: u.Owner, Name: u.Name, Size: u.Size, SHA256: u.SHA256, Created: now}
		if err := files.Put(be64(id), encodeFileRec(f.Owner, f.Size, f.Created, f.SHA256, f.Name)); err != nil {
			return err
		}
		if err := tx.Bucket(bktOwnFiles).Put(pair(f.Owner, id), nil); err != nil {
			return err
		}
		_, err = addCounter(tx.Bucket(bktBlobRefs), f.SHA256[:], 1)
		return err
	})
	return f, err
}

func (s *embedded) FileByID(ctx context.Context, id uint64) (File, error) {
	var f File
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		f, err = getFile(tx, id)
		return err
	})
	return f, err
}

func (s *embedded) Files(ctx context.Context, owner uint64) ([]File, error) {
	var out []File
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		prefix := be64(owner)
		c := tx.Bucket(bktOwnFiles).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			f, err := getFile(tx, binary.BigEndian.Uint64(k[8:]))
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

func (s *embedded) DeleteFile(ctx context.Context, owner, id uint64) (File, int64, error) {
	var f File
	var left int64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if f, err = getFile(tx, id); err != nil {
			return err
		}
		if f.Owner != owner {
			return fmt.Errorf("%w: file %d of user %d", ErrNotFound, id, owner)
		}
		if err := tx.Bucket(bktFiles).Delete(be64(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bktOwnFiles).Delete(pair(owner, id)); err != nil {
			return err
		}
		shares := tx.Bucket(bktFShares)
		prefix := be64(id)
		var keys [][]byte
		c := shares.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := shares.Delete(k); err != nil {
				return err
			}
		}
		if _, err := addCounter(tx.Bucket(bktFUsage), be64(owner), -f.Size); err != nil {
			return err
		}
		left, err = addCounter(tx.Bucket(bktBlobRefs), f.SHA256[:], -1)
		return err
	})
	return f, left, err
}

func shareKey(sh *Share) []byte {
	k := make([]byte, 0, 17)
	k = binary.BigEndian.AppendUint64(k, sh.File)
	if sh.User != 0 {
		return binary.BigEndian.AppendUint64(append(k, 0), sh.User)
	}
	return binary.BigEndian.AppendUint64(append(k, 1), sh.Group)
}

func (s *embedded) ShareFile(ctx context.Context, sh Share) error {
	if err := checkShare(&sh); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := getFile(tx, sh.File); err != nil {
			return err
		}
		return tx.Bucket(bktFShares).Put(shareKey(&sh), nil)
	})
}

func (s *embedded) UnshareFile(ctx context.Context, sh Share) error {
	if err := checkShare(&sh); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktFShares).Delete(shareKey(&sh))
	})
}

func (s *embedded) FileShares(ctx context.Context, file uint64) ([]Share, error) {
	var out []Share
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		prefix := be64(file)
		c := tx.Bucket(bktFShares).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != 17 {
				return errCorrupt("fshares")
			}
			target := binary.BigEndian.Uint64(k[9:])
			if k[8] == 0 {
				out = append(out, Share{File: file, User: target})
			} else {
				out = append(out, Share{File: file, Group: target})
			}
		}
		return nil
	})
	return out, err
}

func (s *embedded) UsedBytes(ctx context.Context, owner uint64) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		n = getCounter(tx.Bucket(bktFUsage), be64(owner))
		return nil
	})
	return n, err
}
