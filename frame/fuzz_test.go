package frame_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/myim/myim/frame"
)

// FuzzDecode decodes arbitrary bytes, and feeds them to a stream reader
// whole, in two pieces cut where the fuzzer says and in random chunks
// seeded by the cut. It requires no panic, the same frames and error
// however the input is split, and that every accepted frame re-encodes to
// its own bytes: the encoding is canonical.
//
// The corpus is seeded from the shared frame table and from every test
// vector of the protocol reference; frame/testdata/fuzz/FuzzDecode holds a
// few more seeds and any regression inputs.
func FuzzDecode(f *testing.F) {
	const maxSeed = 256
	for _, c := range frameCases {
		// Long cases are cut to their first bytes, which hold all that
		// the Length checks look at: the minimizer would otherwise spend
		// its whole budget shrinking every long input the mutator derives.
		f.Add(c.in[:min(len(c.in), maxSeed)], uint16(len(c.in)/2))
	}
	var several []byte // a few short frames back to back
	for _, v := range loadDocVectors(f) {
		f.Add(v.bytes[:min(len(v.bytes), maxSeed)], uint16(1))
		if len(v.bytes) < 64 && len(several) < maxSeed {
			several = append(several, v.bytes...)
		}
	}
	f.Add(several, uint16(len(several)/3))

	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		fr, n, err := frame.Decode(data, frame.DefaultMaxFrame)
		checkDecoded(t, data, fr, n, err)

		want := stream(data, frame.DefaultMaxFrame, whole)
		at := int(cut) % (len(data) + 1)
		first := true
		two := stream(data, frame.DefaultMaxFrame, func(left int) int {
			if first && at > 0 {
				first = false
				return at
			}
			return left
		})
		if !two.equal(want) {
			t.Fatalf("cut at %d: %v; whole: %v", at, two, want)
		}
		// Random chunks, each a random share of what is left: about log2(n)
		// of them, so that the number of writes does not grow with the input
		// and coverage does not reward long inputs for their length alone.
		r := rand.New(rand.NewPCG(uint64(cut), 0))
		halves := func(left int) int { return 1 + r.IntN(left) }
		if got := stream(data, frame.DefaultMaxFrame, halves); !got.equal(want) {
			t.Fatalf("random chunks: %v; whole: %v", got, want)
		}

		// The stream's first step agrees with Decode.
		switch {
		case err == nil:
			if len(want.frames) == 0 || want.frames[0] != string(data[:n]) {
				t.Fatalf("Decode took % x, the stream %v", data[:n], want)
			}
		case err == frame.ErrTruncated:
			if len(want.frames) != 0 || want.err != nil || want.pending != len(data) {
				t.Fatalf("Decode: truncated; stream: %v", want)
			}
		default:
			if len(want.frames) != 0 || want.err != err {
				t.Fatalf("Decode: %v; stream: %v", err, want)
			}
		}
		// Every frame the stream took is canonical too.
		for _, s := range want.frames {
			b := []byte(s)
			fr, n, err := frame.Decode(b, frame.DefaultMaxFrame)
			if err != nil || n != len(b) {
				t.Fatalf("stream frame % x does not decode alone: %d, %v", b, n, err)
			}
			checkDecoded(t, b, fr, n, err)
		}
	})
}

// checkDecoded checks Decode's result on data: a known error and nothing
// else, or a frame that passes every check, whose accessors work and which
// re-encodes to the same bytes.
func checkDecoded(t *testing.T, data []byte, f frame.Frame, n int, err error) {
	t.Helper()
	if err != nil {
		known := false
		for _, e := range sentinels {
			known = known || err == e
		}
		if !known || f != nil || n != 0 {
			t.Fatalf("Decode(% x) = % x, %d, %v", data, f, n, err)
		}
		return
	}
	if n < frame.MinFrame || n > len(data) || n > frame.DefaultMaxFrame || len(f) != n {
		t.Fatalf("Decode(% x) took %d bytes (frame %d)", data, n, len(f))
	}
	if size, err := frame.Split(data, frame.DefaultMaxFrame); size != n || err != nil {
		t.Fatalf("Split = %d, %v; Decode took %d", size, err, n)
	}
	c, q, body := f.Cmd(), f.QoS(), f.Body()
	if !c.Known() || q > frame.QoS1 || len(body) < c.MinBody() {
		t.Fatalf("Decode accepted cmd %v qos %d body %d bytes", c, q, len(body))
	}
	if frame.CheckEnvelope(f) != nil || frame.CheckBody(c, body) != nil {
		t.Fatalf("Decode accepted a frame the validators reject")
	}
	// Every accessor of the command's layout must stay inside the body.
	fields := layoutOf(c).readBody(body)
	checkMsgViews(t, c, body)
	re, err := frame.Append(nil, c, q, body)
	if err != nil || !bytes.Equal(re, data[:n]) {
		t.Fatalf("accepted % x re-encodes to % x, %v", data[:n], re, err)
	}
	// Layouts whose Append takes everything the frame holds rebuild it.
	if takesQoS(layoutOf(c)) || q == frame.QoS0 {
		if fixedOnly(c) && len(body) != c.MinBody() {
			return
		}
		re, err := fields.appendFrame(nil, c, q)
		if err != nil || !bytes.Equal(re, data[:n]) {
			t.Fatalf("%v fields %+v re-encode to % x, %v; want % x", c, fields, re, err, data[:n])
		}
	}
}

// fixedOnly reports whether c's layout has no variable part, so that its
// encoder drops any bytes after the fixed fields.
func fixedOnly(c frame.Cmd) bool { return c == frame.CmdFetch || c == frame.CmdAck }
