package session

import (
	"bytes"
	"errors"
	"testing"
	"time"
	"unsafe"

	"github.com/flynn/noise"

	"github.com/myim/myim/frame"
)

func seal(tb testing.TB, k *Keys, msg string) frame.Frame {
	tb.Helper()
	return frame.Frame(must(k.Seal(nil, frame.CmdMsg, frame.QoS1, []byte(msg)))(tb))
}

func open(tb testing.TB, k *Keys, f frame.Frame, want string) {
	tb.Helper()
	got, err := k.Open(nil, f)
	if err != nil || string(got) != want {
		tb.Fatalf("Open = %q, %v; want %q", got, err, want)
	}
}

func TestSealFrameLayout(t *testing.T) {
	c, s := keyPair(t, nil)
	msg := bytes.Repeat([]byte{'x'}, 200) // a 2-byte Length field
	out := must(c.Seal([]byte("prefix"), frame.CmdGroupMsg, frame.QoS1, msg))(t)
	if string(out[:6]) != "prefix" {
		t.Fatal("Seal did not append")
	}
	f, n, err := frame.Decode(out[6:], frame.DefaultMaxFrame)
	if err != nil || n != len(out)-6 {
		t.Fatalf("sealed frame does not decode: %v", err)
	}
	if f.Cmd() != frame.CmdGroupMsg || f.QoS() != frame.QoS1 || len(f.Body()) != len(msg)+TagSize {
		t.Fatalf("header: cmd %v qos %v body %d", f.Cmd(), f.QoS(), len(f.Body()))
	}
	if bytes.Contains(f.Body(), msg[:16]) {
		t.Fatal("body holds plaintext")
	}
	got := must(s.Open([]byte("dst:"), f))(t)
	if !bytes.Equal(got[4:], msg) || string(got[:4]) != "dst:" {
		t.Fatal("Open did not append the plaintext")
	}
}

func TestOpenDoesNotWriteFrame(t *testing.T) {
	c, s := keyPair(t, nil)
	f := seal(t, c, "hello")
	keep := bytes.Clone(f)
	open(t, s, f, "hello")
	if !bytes.Equal(f, keep) {
		t.Fatal("Open modified the frame")
	}
}

func TestOpenRejects(t *testing.T) {
	tamper := func(f frame.Frame, i int) frame.Frame {
		g := bytes.Clone(f)
		if i < 0 {
			i += len(g)
		}
		g[i] ^= 0x80
		return g
	}
	cases := []struct {
		name string
		mod  func(tb testing.TB, f frame.Frame) frame.Frame
	}{
		{"body byte", func(_ testing.TB, f frame.Frame) frame.Frame { return tamper(f, 5) }},
		{"tag byte", func(_ testing.TB, f frame.Frame) frame.Frame { return tamper(f, -1) }},
		{"cmd", func(_ testing.TB, f frame.Frame) frame.Frame {
			g := bytes.Clone(f)
			g[1] = byte(frame.CmdGroupMsg)
			return g
		}},
		{"qos", func(_ testing.TB, f frame.Frame) frame.Frame {
			g := bytes.Clone(f)
			g[2] = byte(frame.QoS0)
			return g
		}},
		{"truncated body", func(tb testing.TB, f frame.Frame) frame.Frame {
			return frame.Frame(must(frame.Append(nil, f.Cmd(), f.QoS(), f.Body()[:len(f.Body())-1]))(tb))
		}},
		{"partial frame", func(_ testing.TB, f frame.Frame) frame.Frame { return f[:len(f)-1] }},
		{"extra byte", func(_ testing.TB, f frame.Frame) frame.Frame { return append(bytes.Clone(f), 0) }},
		{"no tag", func(tb testing.TB, f frame.Frame) frame.Frame {
			return frame.Frame(must(frame.Append(nil, f.Cmd(), f.QoS(), nil))(tb))
		}},
		{"empty", func(testing.TB, frame.Frame) frame.Frame { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, s := keyPair(t, nil)
			f := seal(t, c, "hello, world")
			if _, err := s.Open(nil, tc.mod(t, f)); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
			// The receive side stays failed, even for the genuine frame.
			if _, err := s.Open(nil, f); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("after failure: %v", err)
			}
		})
	}
}

func TestOpenReplay(t *testing.T) {
	c, s := keyPair(t, nil)
	f := seal(t, c, "once")
	open(t, s, f, "once")
	if _, err := s.Open(nil, f); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("replay: %v", err)
	}
}

func TestOpenReorder(t *testing.T) {
	c, s := keyPair(t, nil)
	_ = seal(t, c, "first")
	second := seal(t, c, "second")
	if _, err := s.Open(nil, second); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("reordered: %v", err)
	}
}

// A frame sealed by one direction does not open in the other: the two keys
// differ.
func TestOpenReflected(t *testing.T) {
	c, _ := keyPair(t, nil)
	if _, err := c.Open(nil, seal(t, c, "echo")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("reflected: %v", err)
	}
}

func TestSealRejectsBadEnvelope(t *testing.T) {
	c, s := keyPair(t, nil)
	if out, err := c.Seal([]byte("x"), frame.Cmd(0), frame.QoS0, nil); !errors.Is(err, frame.ErrUnknownCmd) || string(out) != "x" {
		t.Fatalf("cmd 0: %q %v", out, err)
	}
	if _, err := c.Seal(nil, frame.CmdMsg, frame.QoS(2), nil); !errors.Is(err, frame.ErrBadQoS) {
		t.Fatalf("qos 2: %v", err)
	}
	// Nothing was counted: the next frame opens.
	open(t, s, seal(t, c, "ok"), "ok")
}

func TestRekeyBothDirections(t *testing.T) {
	c, s := keyPair(t, nil)
	now := time.Now()
	for round := 0; round < 3; round++ {
		for _, pair := range [][2]*Keys{{c, s}, {s, c}} {
			a, b := pair[0], pair[1]
			open(t, b, seal(t, a, "before"), "before")
			rk := frame.Frame(must(a.SendRekey(nil, now))(t))
			checkFrame(t, rk, frame.CmdRekey)
			if err := b.RecvRekey(rk); err != nil {
				t.Fatalf("RecvRekey: %v", err)
			}
			open(t, b, seal(t, a, "after"), "after")
		}
	}
	exchange(t, c, s)
}

func TestRekeyMissing(t *testing.T) {
	c, s := keyPair(t, nil)
	_ = must(c.SendRekey(nil, time.Now()))(t) // lost, or ignored
	if _, err := s.Open(nil, seal(t, c, "new key")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open past a missing rekey: %v", err)
	}
}

// Opening a REKEY frame with Open instead of RecvRekey leaves the old key in
// place, so the next frame fails.
func TestRekeyOpenedAsData(t *testing.T) {
	c, s := keyPair(t, nil)
	rk := frame.Frame(must(c.SendRekey(nil, time.Now()))(t))
	if got, err := s.Open(nil, rk); err != nil || len(got) != 0 {
		t.Fatalf("Open(REKEY) = %q, %v", got, err)
	}
	if _, err := s.Open(nil, seal(t, c, "x")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("after unprocessed rekey: %v", err)
	}
}

func TestRecvRekeyRejects(t *testing.T) {
	c, s := keyPair(t, nil)
	if err := s.RecvRekey(seal(t, c, "data")); !errors.Is(err, ErrRekeyFrame) {
		t.Fatalf("data frame: %v", err)
	}
	// A sealed REKEY with a body: authentic but not a rekey.
	c2, s2 := keyPair(t, nil)
	f := frame.Frame(must(c2.Seal(nil, frame.CmdRekey, frame.QoS0, []byte("x")))(t))
	if err := s2.RecvRekey(f); !errors.Is(err, ErrRekeyFrame) {
		t.Fatalf("rekey with body: %v", err)
	}
	// A forged REKEY.
	c3, s3 := keyPair(t, nil)
	rk := must(c3.SendRekey(nil, time.Now()))(t)
	rk[len(rk)-1] ^= 1
	if err := s3.RecvRekey(frame.Frame(rk)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("forged rekey: %v", err)
	}
}

func TestNeedRekey(t *testing.T) {
	cfg := &Config{RekeyFrames: 4, RekeyInterval: time.Minute}
	c, s := keyPair(t, cfg)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // newTestClock's time
	if c.NeedRekey(start) {
		t.Fatal("fresh keys need rekey")
	}
	if !c.NeedRekey(start.Add(time.Minute)) {
		t.Fatal("no rekey after the interval")
	}
	for i := 0; i < 3; i++ {
		open(t, s, seal(t, c, "m"), "m")
	}
	if c.NeedRekey(start) {
		t.Fatal("rekey due after 3 of 4 frames")
	}
	open(t, s, seal(t, c, "m"), "m")
	if !c.NeedRekey(start) {
		t.Fatal("no rekey due after 4 frames")
	}
	later := start.Add(30 * time.Second)
	if err := s.RecvRekey(frame.Frame(must(c.SendRekey(nil, later))(t))); err != nil {
		t.Fatal(err)
	}
	if c.NeedRekey(later.Add(59 * time.Second)) {
		t.Fatal("rekey due right after a rekey")
	}
	if !c.NeedRekey(later.Add(time.Minute)) {
		t.Fatal("timer not restarted at the rekey")
	}
	if s.NeedRekey(start) {
		t.Fatal("receiving counted toward the receiver's send rekey")
	}
}

func TestRekeyOverdue(t *testing.T) {
	c, s := keyPair(t, &Config{MaxFramesPerKey: 3})
	for i := 0; i < 3; i++ {
		open(t, s, seal(t, c, "m"), "m")
	}
	if _, err := c.Seal(nil, frame.CmdMsg, frame.QoS0, nil); !errors.Is(err, ErrRekeyOverdue) {
		t.Fatalf("seal past the per-key limit: %v", err)
	}
	// Rekeying needs one more frame (the REKEY itself), so the hard limit
	// refuses it too: callers rekey on NeedRekey, well before.
	if _, err := c.SendRekey(nil, time.Now()); !errors.Is(err, ErrRekeyOverdue) {
		t.Fatalf("rekey past the limit: %v", err)
	}
}

func TestNonceExhausted(t *testing.T) {
	c, s := keyPair(t, &Config{NonceLimit: 3})
	now := time.Now()
	open(t, s, seal(t, c, "1"), "1")
	if err := s.RecvRekey(frame.Frame(must(c.SendRekey(nil, now))(t))); err != nil {
		t.Fatal(err)
	}
	open(t, s, seal(t, c, "3"), "3") // the counter runs on across rekeys
	if _, err := c.Seal(nil, frame.CmdMsg, frame.QoS0, nil); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("seal: %v", err)
	}
	// The receiver refuses on its own count too.
	c.send.n-- // pretend the sender had not stopped
	f := seal(t, c, "4")
	if _, err := s.Open(nil, f); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("open: %v", err)
	}
}

func TestWipe(t *testing.T) {
	c, s := keyPair(t, nil)
	f := seal(t, c, "x")
	c.Wipe()
	s.Wipe()
	for _, k := range []*Keys{c, s} {
		if k.send.key != [32]byte{} || k.recv.key != [32]byte{} {
			t.Fatal("key bytes not zeroed")
		}
	}
	if _, err := c.Seal(nil, frame.CmdMsg, frame.QoS0, nil); !errors.Is(err, ErrWiped) {
		t.Fatalf("seal: %v", err)
	}
	if _, err := s.Open(nil, f); !errors.Is(err, ErrWiped) {
		t.Fatalf("open: %v", err)
	}
	if _, err := c.SendRekey(nil, time.Now()); !errors.Is(err, ErrWiped) {
		t.Fatalf("send rekey: %v", err)
	}
	if err := s.RecvRekey(f); !errors.Is(err, ErrWiped) {
		t.Fatalf("recv rekey: %v", err)
	}
}

// An idle session's Keys is one 160-byte allocation: the AES-GCM state of a
// direction is built by its first frame and survives a rekey, and the
// limits are one copy shared by the Keys of a server.
func TestKeysIdleFootprint(t *testing.T) {
	if n := unsafe.Sizeof(Keys{}); n > 160 {
		t.Fatalf("Keys is %d bytes, want at most 160 (a server holds one per idle session)", n)
	}
	c, s := keyPair(t, nil)
	if c.lim != s.lim {
		t.Fatal("Keys of one Config do not share their limits")
	}
	if c.send.hot != nil || c.recv.hot != nil || s.send.hot != nil || s.recv.hot != nil {
		t.Fatal("cipher state built before any frame")
	}
	open(t, s, seal(t, c, "x"), "x")
	if c.send.hot == nil || s.recv.hot == nil || c.recv.hot != nil || s.send.hot != nil {
		t.Fatal("one frame each way should build exactly the sender's send and the receiver's recv state")
	}
	hot := c.send.hot
	if err := s.RecvRekey(frame.Frame(must(c.SendRekey(nil, time.Now()))(t))); err != nil {
		t.Fatal(err)
	}
	if c.send.hot != hot || hot.aead != nil {
		t.Fatal("rekey should keep the scratch and drop the old key's cipher")
	}
	open(t, s, seal(t, c, "after rekey"), "after rekey")
}

// Keys must agree with noise's own CipherState: same ciphertext for the
// same key and counter, and the same key after Rekey. This pins the nonce
// layout and the rekey function to the library's.
func TestKeysMatchNoiseCipherState(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i)
	}
	cfg := (&Config{}).withDefaults()
	k := must(newKeys(&cfg, &key, &key))(t)
	ref := noise.UnsafeNewCipherState(suite, key, 0)
	now := time.Now()
	for round := 0; round < 3; round++ {
		for i := 0; i < 3; i++ {
			msg := []byte("frame body")
			sealed := frame.Frame(must(k.Seal(nil, frame.CmdMsg, frame.QoS1, msg))(t))
			want := must(ref.Encrypt(nil, sealed.Header(), msg))(t)
			if !bytes.Equal(sealed.Body(), want) {
				t.Fatalf("round %d frame %d: ciphertext differs from noise's", round, i)
			}
		}
		must(k.SendRekey(nil, now))(t)
		must(ref.Encrypt(nil, []byte{0x13}, nil))(t) // keep the counters in step
		ref.Rekey()
		if k.send.key != ref.UnsafeKey() {
			t.Fatalf("round %d: rekeyed key differs from noise's", round)
		}
	}
}

func TestBufferOverlap(t *testing.T) {
	c, s := keyPair(t, nil)
	buf := make([]byte, 0, 256)
	pt := buf[10:20] // in the spare capacity Seal would write
	if _, err := c.Seal(buf, frame.CmdMsg, frame.QoS0, pt); !errors.Is(err, ErrBufferOverlap) {
		t.Fatalf("seal: %v", err)
	}
	sealed := must(c.Seal(buf[:0], frame.CmdMsg, frame.QoS0, []byte("in place?")))(t)
	if _, err := s.Open(sealed[:0], frame.Frame(sealed)); !errors.Is(err, ErrBufferOverlap) {
		t.Fatalf("open into the frame: %v", err)
	}
	// Refused before anything moved: the frame still opens.
	open(t, s, frame.Frame(sealed), "in place?")
}
