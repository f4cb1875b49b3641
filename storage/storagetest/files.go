package storagetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/myim/myim/storage"
)

// fileSuite holds the file metadata checks of the conformance suite;
// Run runs them against every backend.
var fileSuite = []struct {
	name string
	fn   func(t *testing.T, s storage.Store)
}{
	{"FileUploadQuota", testFileUploadQuota},
	{"FileCommitRefs", testFileCommitRefs},
	{"FileShares", testFileShares},
	{"FileStaleUploads", testFileStaleUploads},
	{"FileConcurrentQuota", testFileConcurrentQuota},
}

func sum(b byte) [32]byte { return [32]byte{b, 1, 2, 3} }

func testFileUploadQuota(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := newUser(t, s, "alice")
	_, err := s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "", Size: 1}, 0)
	wantErr(t, err, storage.ErrInvalid)
	_, err = s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "x", Size: -1}, 0)
	wantErr(t, err, storage.ErrInvalid)

	id := must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "a.bin", Size: 60, SHA256: sum(1), Created: 5}, 100)).of(t)
	u := must(s.UploadByID(ctx, id)).of(t)
	equal(t, "upload", u, storage.Upload{ID: id, Owner: alice, Name: "a.bin", Size: 60, SHA256: sum(1), Created: 5})
	equal(t, "used after reserve", must(s.UsedBytes(ctx, alice)).of(t), int64(60))
	_, err = s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "b", Size: 41}, 100)
	wantErr(t, err, storage.ErrQuota)
	id2 := must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "b", Size: 40}, 100)).of(t)
	if id2 <= id {
		t.Fatalf("upload ids %d then %d", id, id2)
	}
	// An empty file fits even a full quota.
	must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "empty", Size: 0}, 100)).of(t)
	// Without a limit, anything goes.
	must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "c", Size: 1 << 40}, 0)).of(t)
	ok(t, s.DeleteUpload(ctx, id2))
	wantErr(t, s.DeleteUpload(ctx, id2), storage.ErrNotFound)
	_, err = s.UploadByID(ctx, id2)
	wantErr(t, err, storage.ErrNotFound)
	equal(t, "used after delete", must(s.UsedBytes(ctx, alice)).of(t), int64(60+1<<40))
	equal(t, "nobody's usage", must(s.UsedBytes(ctx, 999)).of(t), int64(0))
}

func testFileCommitRefs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	up1 := must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "one", Size: 10, SHA256: sum(7)}, 0)).of(t)
	up2 := must(s.CreateUpload(ctx, storage.Upload{Owner: bob, Name: "same", Size: 10, SHA256: sum(7)}, 0)).of(t)
	f1 := must(s.CommitUpload(ctx, up1, 1000)).of(t)
	equal(t, "file", f1, storage.File{ID: f1.ID, Owner: alice, Name: "one", Size: 10, SHA256: sum(7), Created: 1000})
	_, err := s.CommitUpload(ctx, up1, 1000)
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.UploadByID(ctx, up1)
	wantErr(t, err, storage.ErrNotFound)
	f2 := must(s.CommitUpload(ctx, up2, 1001)).of(t)
	equal(t, "file by id", must(s.FileByID(ctx, f2.ID)).of(t), f2)
	equal(t, "quota moves to the file", must(s.UsedBytes(ctx, alice)).of(t), int64(10))
	equal(t, "alice's files", must(s.Files(ctx, alice)).of(t), []storage.File{f1})

	_, _, err = s.DeleteFile(ctx, bob, f1.ID)
	wantErr(t, err, storage.ErrNotFound) // not bob's
	_, _, err = s.DeleteFile(ctx, alice, 12345)
	wantErr(t, err, storage.ErrNotFound)
	got, left, err := s.DeleteFile(ctx, alice, f1.ID)
	ok(t, err)
	equal(t, "deleted", got, f1)
	equal(t, "refs left", left, int64(1))
	equal(t, "alice's usage", must(s.UsedBytes(ctx, alice)).of(t), int64(0))
	_, left, err = s.DeleteFile(ctx, bob, f2.ID)
	ok(t, err)
	equal(t, "last ref", left, int64(0))
	_, err = s.FileByID(ctx, f2.ID)
	wantErr(t, err, storage.ErrNotFound)
	equal(t, "no files", len(must(s.Files(ctx, bob)).of(t)), 0)

	// The content may come back: counting starts again.
	up3 := must(s.CreateUpload(ctx, storage.Upload{Owner: bob, Name: "again", Size: 10, SHA256: sum(7)}, 0)).of(t)
	f3 := must(s.CommitUpload(ctx, up3, 1002)).of(t)
	if f3.ID <= f2.ID {
		t.Fatalf("file id %d reused", f3.ID)
	}
	_, left, _ = s.DeleteFile(ctx, bob, f3.ID)
	equal(t, "refs after recount", left, int64(0))
}

func testFileShares(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := newUser(t, s, "alice")
	up := must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "s", Size: 1, SHA256: sum(3)}, 0)).of(t)
	f := must(s.CommitUpload(ctx, up, 1)).of(t)
	wantErr(t, s.ShareFile(ctx, storage.Share{File: f.ID}), storage.ErrInvalid)
	wantErr(t, s.ShareFile(ctx, storage.Share{File: f.ID, User: 2, Group: 3}), storage.ErrInvalid)
	wantErr(t, s.ShareFile(ctx, storage.Share{File: 999, User: 2}), storage.ErrNotFound)
	ok(t, s.ShareFile(ctx, storage.Share{File: f.ID, Group: 9}))
	ok(t, s.ShareFile(ctx, storage.Share{File: f.ID, User: 5}))
	ok(t, s.ShareFile(ctx, storage.Share{File: f.ID, User: 2}))
	ok(t, s.ShareFile(ctx, storage.Share{File: f.ID, User: 2})) // again: no-op
	equal(t, "shares", must(s.FileShares(ctx, f.ID)).of(t),
		[]storage.Share{{File: f.ID, User: 2}, {File: f.ID, User: 5}, {File: f.ID, Group: 9}})
	ok(t, s.UnshareFile(ctx, storage.Share{File: f.ID, User: 5}))
	ok(t, s.UnshareFile(ctx, storage.Share{File: f.ID, User: 77}))
	equal(t, "after unshare", must(s.FileShares(ctx, f.ID)).of(t), []storage.Share{{File: f.ID, User: 2}, {File: f.ID, Group: 9}})
	_, _, err := s.DeleteFile(ctx, alice, f.ID)
	ok(t, err)
	equal(t, "shares go with the file", len(must(s.FileShares(ctx, f.ID)).of(t)), 0)
}

func testFileStaleUploads(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := newUser(t, s, "alice")
	var ids []uint64
	for _, created := range []int64{300, 100, 200} {
		ids = append(ids, must(s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "u", Size: 1, Created: created}, 0)).of(t))
	}
	stale := must(s.StaleUploads(ctx, 250, 10)).of(t)
	if len(stale) != 2 || stale[0].ID != ids[1] || stale[1].ID != ids[2] {
		t.Fatalf("stale before 250: %+v", stale)
	}
	equal(t, "limit", len(must(s.StaleUploads(ctx, 1000, 1)).of(t)), 1)
	ok(t, s.DeleteUpload(ctx, ids[1]))
	equal(t, "after delete", len(must(s.StaleUploads(ctx, 250, 10)).of(t)), 1)
	must(s.CommitUpload(ctx, ids[2], 5)).of(t)
	equal(t, "after commit", len(must(s.StaleUploads(ctx, 250, 10)).of(t)), 0)
}

// testFileConcurrentQuota races reservations: the quota is never overrun.
func testFileConcurrentQuota(t *testing.T, s storage.Store) {
	ctx := t.Context()
	alice := newUser(t, s, "alice")
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CreateUpload(ctx, storage.Upload{Owner: alice, Name: "q", Size: 10}, 55); err == nil {
				mu.Lock()
				granted++
				mu.Unlock()
			} else if !errors.Is(err, storage.ErrQuota) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	equal(t, "granted", granted, 5)
	equal(t, "used", must(s.UsedBytes(ctx, alice)).of(t), int64(50))
}
