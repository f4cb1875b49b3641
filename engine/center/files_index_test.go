package center

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	"github.com/valyala/bytebufferpool"

	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/storage/bolt"
)

// fileOp has user's session s send a FILE frame of transfer xfer to peer.
func fileOp(t *testing.T, c *LocalCenter, user, peer uint64, s im.SessionRef, op byte, xfer, off uint64, data []byte) {
	t.Helper()
	buf := bytebufferpool.Get()
	var err error
	buf.B, err = frame.AppendFile(buf.B, frame.QoS1, frame.MsgHeader{From: user, To: peer, CID: xfer*10 + uint64(op)},
		op, xfer, off, data)
	if err != nil {
		t.Fatal(err)
	}
	c.Handle(user, s, buf)
}

func offerJSON(t *testing.T) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte("file"))
	b, err := sonic.Marshal(FileOfferJSON{Name: "f.txt", Size: 4, SHA256: hex.EncodeToString(sum[:]), Chunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Closing a session pauses the transfers it takes part in, found through
// the index of transfers by user, and leaves the others alone; the index
// forgets a transfer once it ends.
func TestClosingSessionPausesOnlyItsTransfers(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := NewLocalCenter(Config{ID: 1, Store: st})
	t.Cleanup(c.Close)
	ep := &recEndpoint{id: 1}
	c.Attach(ep)
	const alice, bob, carol, dave = 10, 20, 30, 40
	ref := func(user uint64) im.SessionRef { return im.SessionRef{Endpoint: 1, Session: user} }
	for _, u := range []uint64{alice, bob, carol, dave} {
		c.Online(u, ref(u))
	}
	offer := offerJSON(t)
	fileOp(t, c, alice, bob, ref(alice), frame.FileOffer, 7, 0, offer)
	fileOp(t, c, bob, alice, ref(bob), frame.FileAccept, 7, 0, nil)
	fileOp(t, c, carol, dave, ref(carol), frame.FileOffer, 8, 0, offer)
	fileOp(t, c, dave, carol, ref(dave), frame.FileAccept, 8, 0, nil)
	testenv.WaitFor(t, 10*time.Second, "both transfers accepted", func() bool {
		n := 0
		for _, k := range []xferKey{{alice, 7}, {carol, 8}} {
			sh := c.xfers.shard(k)
			sh.mu.Lock()
			if st := sh.m[k]; st != nil && st.accepted {
				n++
			}
			sh.mu.Unlock()
		}
		return n == 2
	})
	for user, want := range map[uint64][]xferKey{alice: {{alice, 7}}, bob: {{alice, 7}}, carol: {{carol, 8}}, dave: {{carol, 8}}} {
		if got := c.xfers.keysOf(user, nil); !slices.Equal(got, want) {
			t.Fatalf("user %d's transfers %v, want %v", user, got, want)
		}
	}

	c.Offline(bob, ref(bob), false)
	paused := ep.waitFor(t, frame.CmdError, func(f frame.Frame) bool {
		return strings.Contains(string(frame.Error(f.Body()).Text()), "receiver offline; transfer 7 paused")
	})
	if paused == nil {
		t.Fatal("alice was not told")
	}
	ep.mu.Lock()
	for _, f := range ep.in {
		if f.Cmd() == frame.CmdError && strings.Contains(string(frame.Error(f.Body()).Text()), "transfer 8") {
			t.Errorf("a transfer of other users was touched: %s", frame.Error(f.Body()).Text())
		}
	}
	ep.mu.Unlock()
	k8 := xferKey{carol, 8}
	sh := c.xfers.shard(k8)
	sh.mu.Lock()
	accepted := sh.m[k8] != nil && sh.m[k8].accepted
	sh.mu.Unlock()
	if !accepted {
		t.Fatal("carol's transfer to dave was paused")
	}

	fileOp(t, c, carol, dave, ref(carol), frame.FileCancel, 8, 0, nil)
	testenv.WaitFor(t, 10*time.Second, "the cancelled transfer leaves the index", func() bool {
		return len(c.xfers.keysOf(carol, nil)) == 0 && len(c.xfers.keysOf(dave, nil)) == 0
	})
}
