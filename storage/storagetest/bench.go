package storagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/myim/myim/storage"
)

// Benchmarks of the offline-message path, which each backend's tests run
// with fsync on (the embedded store as deployed; MySQL as the server is
// configured, see storage/mysql on durability):
//
//	go test -run '^$' -bench . -benchtime 2s ./storage/bolt ./storage/mysql

const benchPayload = 256 // bytes of content per message, a typical chat line

// benchUsers is how many recipients the messages are spread over.
const benchUsers = 1000

// benchMessages fills msgs with consecutive MIDs from next, spread over
// benchUsers recipients, in time order per recipient.
func benchMessages(msgs []storage.Message, next uint64, content []byte) {
	for j := range msgs {
		mid := next + uint64(j)
		msgs[j] = storage.Message{MID: mid, From: 1, To: (mid-1)%benchUsers + 1, Time: 1_700_000_000_000 + int64(mid),
			CID: mid, QoS: 1, Content: content}
	}
}

// BenchStoreOffline stores batches of messages. One op is one
// StoreOffline call (one commit); inserts/s counts messages.
func BenchStoreOffline(b *testing.B, newStore func(testing.TB) storage.Store) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := newStore(b)
			ctx := context.Background()
			content := make([]byte, benchPayload)
			msgs := make([]storage.Message, batch)
			b.SetBytes(int64(batch * benchPayload))
			b.ReportAllocs()
			next := uint64(1)
			for b.Loop() {
				benchMessages(msgs, next, content)
				next += uint64(batch)
				if err := s.StoreOffline(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
	// Many senders storing one message each: the embedded store
	// coalesces them into shared commits, MySQL spreads them over its
	// connection pool.
	b.Run("batch=1/parallel", func(b *testing.B) {
		s := newStore(b)
		ctx := context.Background()
		content := make([]byte, benchPayload)
		var next atomic.Uint64
		b.SetParallelism(8)
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			msgs := make([]storage.Message, 1)
			for pb.Next() {
				benchMessages(msgs, next.Add(1), content)
				if err := s.StoreOffline(ctx, msgs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
	})
}

// BenchFetchDelete is the delivery loop of a user coming online: fetch a
// page of offline messages, then delete it once the client acknowledged.
// One op is one FetchOffline of fetchPage messages plus one DeleteOffline.
func BenchFetchDelete(b *testing.B, newStore func(testing.TB) storage.Store) {
	const fetchPage = 10
	s := newStore(b)
	ctx := context.Background()
	content := make([]byte, benchPayload)

	// Preload exactly what the b.N ops will consume: fetchPage
	// messages per op, round robin over the users.
	total := b.N * fetchPage
	batch := make([]storage.Message, 1000)
	for next := 0; next < total; next += len(batch) {
		n := min(len(batch), total-next)
		benchMessages(batch[:n], uint64(next+1), content)
		if err := s.StoreOffline(ctx, batch[:n]); err != nil {
			b.Fatal(err)
		}
	}
	mids := make([]uint64, 0, fetchPage)
	b.SetBytes(fetchPage * benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		user := uint64(i%benchUsers) + 1
		got, err := s.FetchOffline(ctx, user, 0, fetchPage)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			b.Fatalf("user %d: nothing to fetch", user)
		}
		mids = mids[:0]
		for _, m := range got {
			mids = append(mids, m.MID)
		}
		if err := s.DeleteOffline(ctx, user, mids); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*fetchPage)/b.Elapsed().Seconds(), "msgs/s")
}
