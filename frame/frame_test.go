package frame_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/myim/myim/frame"
)

// frameCase is one entry of the shared frame table: an input that starts
// with a valid frame, or a malformed or incomplete one.
type frameCase struct {
	name string
	in   []byte
	// size is what Split reports: the first frame's size, or 0 when the
	// Length field is incomplete or Split rejects it.
	size int
	// err is what Decode reports; nil when in starts with a valid frame.
	err error
	// cmd, qos and body describe the valid frame.
	cmd  frame.Cmd
	qos  frame.QoS
	body []byte
}

// frameCases is the one table of valid and malformed frames. The decoder,
// encoder, stream and fuzz tests all use it; the fuzz corpus is seeded from
// it. Inputs are written out byte by byte rather than built with the
// encoder, so that the encoder is checked against them.
var frameCases = buildFrameCases()

func buildFrameCases() []frameCase {
	cs := []frameCase{
		// Valid frames.
		valid("ping", frame.CmdPing, frame.QoS1, nil, 0x03, 0x01, 0x01),
		valid("pong", frame.CmdPong, frame.QoS0, nil, 0x03, 0x02, 0x00),
		valid("ping qos 0", frame.CmdPing, frame.QoS0, nil, 0x03, 0x01, 0x00),
		valid("ping with payload", frame.CmdPing, frame.QoS1, []byte{0xca, 0xfe}, 0x05, 0x01, 0x01, 0xca, 0xfe),
		valid("bye", frame.CmdBye, frame.QoS0, nil, 0x03, 0x05, 0x00),
		valid("rekey", frame.CmdRekey, frame.QoS0, nil, 0x03, 0x13, 0x00),
		valid("auth empty", frame.CmdAuth, frame.QoS1, nil, 0x03, 0x12, 0x01),
		validLong("body 124, 1-byte length 127", []byte{0x7f}, 124),
		validLong("body 125, 2-byte length 129", []byte{0x81, 0x01}, 125),
		validLong("body 16379, 2-byte length 16383", []byte{0xff, 0x7f}, 16379),
		validLong("body 16380, 3-byte length 16385", []byte{0x81, 0x80, 0x01}, 16380),
		{name: "ping then pong", in: []byte{0x03, 0x01, 0x01, 0x03, 0x02, 0x00}, size: 3,
			cmd: frame.CmdPing, qos: frame.QoS1, body: []byte{}},
		{name: "ping then garbage", in: []byte{0x03, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff}, size: 3,
			cmd: frame.CmdPing, qos: frame.QoS1, body: []byte{}},

		// Incomplete: a stream waits, Decode reports ErrTruncated.
		{name: "empty", in: []byte{}, err: frame.ErrTruncated},
		{name: "truncated length, 1 of 2 bytes", in: []byte{0x81}, err: frame.ErrTruncated},
		{name: "truncated length, 3 of 4 bytes", in: []byte{0xff, 0xff, 0xbf}, err: frame.ErrTruncated},
		{name: "truncated header, no cmd", in: []byte{0x03}, size: 3, err: frame.ErrTruncated},
		{name: "truncated header, no qos", in: []byte{0x03, 0x01}, size: 3, err: frame.ErrTruncated},
		{name: "truncated body", in: []byte{0x05, 0x01, 0x01, 0xca}, size: 5, err: frame.ErrTruncated},
		{name: "truncated msg, 47 of 48 header bytes", in: append([]byte{0x33, 0x03, 0x01}, make([]byte, 47)...),
			size: 51, err: frame.ErrTruncated},
		{name: "truncated 2-byte frame", in: append([]byte{0x81, 0x01, 0x12, 0x00}, make([]byte, 100)...),
			size: 129, err: frame.ErrTruncated},
		{name: "length at max, body missing", in: []byte{0x80, 0x80, 0x40, 0x0f, 0x00},
			size: frame.DefaultMaxFrame, err: frame.ErrTruncated},

		// Malformed Length.
		{name: "length 0", in: []byte{0x00, 0x01, 0x01}, err: frame.ErrTooSmall},
		{name: "length 1", in: []byte{0x01}, err: frame.ErrTooSmall},
		{name: "length 2", in: []byte{0x02, 0x01}, err: frame.ErrTooSmall},
		{name: "non-minimal varint 83 00", in: []byte{0x83, 0x00, 0x01, 0x01}, err: frame.ErrNonMinimal},
		{name: "non-minimal varint 80 00", in: []byte{0x80, 0x00}, err: frame.ErrNonMinimal},
		{name: "non-minimal varint 83 80 00", in: []byte{0x83, 0x80, 0x00, 0x01, 0x01}, err: frame.ErrNonMinimal},
		{name: "non-minimal varint 81 80 80 00", in: []byte{0x81, 0x80, 0x80, 0x00}, err: frame.ErrNonMinimal},
		{name: "non-canonical length 128 as 80 01", in: append([]byte{0x80, 0x01, 0x12, 0x00}, make([]byte, 124)...),
			err: frame.ErrNonMinimal},
		{name: "non-canonical length 16384 as 80 80 01", in: []byte{0x80, 0x80, 0x01}, err: frame.ErrNonMinimal},
		{name: "length max+1", in: []byte{0x81, 0x80, 0x40, 0x03, 0x00}, err: frame.ErrTooLarge},
		{name: "length 2^28-1", in: []byte{0xff, 0xff, 0xff, 0x7f}, err: frame.ErrTooLarge},
		{name: "length 2^21 as 4 bytes", in: []byte{0x80, 0x80, 0x80, 0x01}, err: frame.ErrTooLarge},
		{name: "length 4 continuation bytes", in: []byte{0x80, 0x80, 0x80, 0x80}, err: frame.ErrLengthOverflow},
		{name: "length 2^31", in: []byte{0x80, 0x80, 0x80, 0x80, 0x08}, err: frame.ErrLengthOverflow},
		{name: "length 2^32-1", in: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, err: frame.ErrLengthOverflow},
		{name: "length 10 bytes", in: bytes.Repeat([]byte{0xff}, 10), err: frame.ErrLengthOverflow},

		// Malformed Cmd and QoS.
		{name: "cmd 0x00", in: []byte{0x03, 0x00, 0x00}, size: 3, err: frame.ErrUnknownCmd},
		{name: "cmd 0x17", in: []byte{0x03, 0x17, 0x00}, size: 3, err: frame.ErrUnknownCmd},
		{name: "cmd 0xff", in: []byte{0x03, 0xff, 0x01}, size: 3, err: frame.ErrUnknownCmd},
		{name: "cmd 0x00 and qos 2", in: []byte{0x03, 0x00, 0x02}, size: 3, err: frame.ErrUnknownCmd},
		{name: "qos 2", in: []byte{0x03, 0x01, 0x02}, size: 3, err: frame.ErrBadQoS},
		{name: "qos 0x80", in: []byte{0x03, 0x02, 0x80}, size: 3, err: frame.ErrBadQoS},
		{name: "qos 0xff on msg", in: append([]byte{0x33, 0x03, 0xff}, make([]byte, 48)...), size: 51, err: frame.ErrBadQoS},
	}
	// Every command with fixed fields: one byte short, empty, and exact.
	for c := frame.Cmd(1); c.Known(); c++ {
		m := c.MinBody()
		if m > 0 {
			cs = append(cs,
				frameCase{name: fmt.Sprintf("%v body %d of %d", c, m-1, m),
					in: append([]byte{byte(m + 2), byte(c), 0x00}, make([]byte, m-1)...), size: m + 2, err: frame.ErrShortBody},
				frameCase{name: fmt.Sprintf("%v empty body", c),
					in: []byte{0x03, byte(c), 0x00}, size: 3, err: frame.ErrShortBody})
		}
		body := bytes.Repeat([]byte{0xa5}, m)
		cs = append(cs, valid(fmt.Sprintf("%v minimal body", c), c, frame.QoS0, body,
			append([]byte{byte(m + 3), byte(c), 0x00}, body...)...))
	}
	return cs
}

// valid returns a case whose input is exactly one valid frame.
func valid(name string, c frame.Cmd, q frame.QoS, body []byte, in ...byte) frameCase {
	if body == nil {
		body = []byte{}
	}
	return frameCase{name: name, in: in, size: len(in), cmd: c, qos: q, body: body}
}

// validLong returns a valid AUTH frame with the given Length bytes and a
// body of n bytes.
func validLong(name string, length []byte, n int) frameCase {
	body := bytes.Repeat([]byte{'j'}, n)
	in := append(append(slices.Clone(length), byte(frame.CmdAuth), 0x00), body...)
	return valid(name, frame.CmdAuth, frame.QoS0, body, in...)
}

// splitErr reports whether Split itself reports err, as opposed to Check
// or, for ErrTruncated, nobody.
func splitErr(err error) bool {
	for _, e := range []error{frame.ErrLengthOverflow, frame.ErrNonMinimal, frame.ErrTooSmall, frame.ErrTooLarge} {
		if err == e {
			return true
		}
	}
	return false
}

// sentinels are every error the decoder may return.
var sentinels = []error{frame.ErrTruncated, frame.ErrNonMinimal, frame.ErrLengthOverflow, frame.ErrTooLarge,
	frame.ErrTooSmall, frame.ErrUnknownCmd, frame.ErrBadQoS, frame.ErrShortBody}

func TestFrameTableIsSane(t *testing.T) {
	names := make(map[string]bool)
	for _, c := range frameCases {
		if names[c.name] {
			t.Errorf("case name %q appears twice", c.name)
		}
		names[c.name] = true
		if c.err == nil && (c.size == 0 || c.size > len(c.in) || !bytes.HasSuffix(c.in[:c.size], c.body)) {
			t.Errorf("%s: valid case with size %d for %d input bytes", c.name, c.size, len(c.in))
		}
	}
}

func TestSplit(t *testing.T) {
	for _, c := range frameCases {
		t.Run(c.name, func(t *testing.T) {
			size, err := frame.Split(c.in, frame.DefaultMaxFrame)
			wantErr := error(nil)
			if splitErr(c.err) {
				wantErr = c.err
			}
			if size != c.size || err != wantErr {
				t.Fatalf("Split = %d, %v; want %d, %v", size, err, c.size, wantErr)
			}
			// max <= 0 means DefaultMaxFrame.
			if size0, err0 := frame.Split(c.in, 0); size0 != size || err0 != err {
				t.Errorf("Split(max 0) = %d, %v; want %d, %v", size0, err0, size, err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, c := range frameCases {
		t.Run(c.name, func(t *testing.T) {
			f, n, err := frame.Decode(c.in, frame.DefaultMaxFrame)
			if !errors.Is(err, c.err) {
				t.Fatalf("Decode error = %v, want %v", err, c.err)
			}
			if err != nil {
				if f != nil || n != 0 {
					t.Errorf("Decode failed with %v but returned %d bytes and frame % x", err, n, f)
				}
				return
			}
			if n != c.size || len(f) != c.size {
				t.Fatalf("Decode size = %d (frame %d bytes), want %d", n, len(f), c.size)
			}
			if &f[0] != &c.in[0] {
				t.Errorf("Decode copied the frame; it must alias its input")
			}
			if f.Cmd() != c.cmd || f.QoS() != c.qos || !bytes.Equal(f.Body(), c.body) {
				t.Errorf("Decode = cmd %v qos %d body % x; want cmd %v qos %d body % x",
					f.Cmd(), f.QoS(), f.Body(), c.cmd, c.qos, c.body)
			}
			if h := f.Header(); !bytes.Equal(h, c.in[:c.size-len(c.body)]) || h[len(h)-2] != byte(c.cmd) {
				t.Errorf("Header = % x", h)
			}
			if err := frame.Check(f); err != nil {
				t.Errorf("Check of a decoded frame: %v", err)
			}
		})
	}
}

// TestCheck covers the three validators on the cases that pass Split but
// fail on Cmd, QoS or body.
func TestCheck(t *testing.T) {
	for _, c := range frameCases {
		if c.err != frame.ErrUnknownCmd && c.err != frame.ErrBadQoS && c.err != frame.ErrShortBody {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			f := frame.Frame(c.in[:c.size])
			if err := frame.Check(f); err != c.err {
				t.Errorf("Check = %v, want %v", err, c.err)
			}
			// CheckEnvelope sees Cmd and QoS only; CheckBody sees Cmd and body.
			wantEnv := c.err
			if c.err == frame.ErrShortBody {
				wantEnv = nil
			}
			if err := frame.CheckEnvelope(f); err != wantEnv {
				t.Errorf("CheckEnvelope = %v, want %v", err, wantEnv)
			}
			wantBody := c.err
			if c.err == frame.ErrBadQoS {
				wantBody = nil
			}
			if err := frame.CheckBody(f.Cmd(), f.Body()); err != wantBody {
				t.Errorf("CheckBody = %v, want %v", err, wantBody)
			}
		})
	}
}

// TestEncodeTable encodes every valid case's fields and requires its bytes.
func TestEncodeTable(t *testing.T) {
	for _, c := range frameCases {
		if c.err != nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			want := c.in[:c.size]
			got, err := frame.Append(nil, c.cmd, c.qos, c.body)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Append = % x, %v; want % x", got, err, want)
			}
			prefix := []byte("prefix")
			got, err = frame.AppendHeader(slices.Clone(prefix), c.cmd, c.qos, len(c.body))
			if err != nil || !bytes.Equal(append(got, c.body...), append(prefix, want...)) {
				t.Fatalf("AppendHeader = % x, %v; want % x after the prefix", got, err, want[:len(want)-len(c.body)])
			}
		})
	}
}

func TestPingPongLiterals(t *testing.T) {
	if !bytes.Equal(frame.Ping, []byte{0x03, 0x01, 0x01}) || !bytes.Equal(frame.Pong, []byte{0x03, 0x02, 0x00}) {
		t.Fatalf("Ping = % x, Pong = % x; the design note says 03 01 01 and 03 02 00", frame.Ping, frame.Pong)
	}
	if got, _ := frame.Append(nil, frame.CmdPing, frame.QoS1, nil); !bytes.Equal(got, frame.Ping) {
		t.Errorf("Append(PING, 1) = % x", got)
	}
	if got, _ := frame.Append(nil, frame.CmdPong, frame.QoS0, nil); !bytes.Equal(got, frame.Pong) {
		t.Errorf("Append(PONG, 0) = % x", got)
	}
}

func TestErrorsArePrefixedAndDistinct(t *testing.T) {
	all := append(slices.Clone(sentinels), frame.ErrContentTooLarge)
	seen := make(map[string]bool)
	for _, e := range all {
		if !strings.HasPrefix(e.Error(), "frame: ") {
			t.Errorf("%q lacks the package prefix", e)
		}
		if seen[e.Error()] {
			t.Errorf("%q appears twice", e)
		}
		seen[e.Error()] = true
		for _, o := range all {
			if o != e && errors.Is(fmt.Errorf("wrapped: %w", e), o) {
				t.Errorf("%q matches %q", e, o)
			}
		}
	}
}

func TestCmd(t *testing.T) {
	want := map[frame.Cmd]struct {
		name string
		min  int
	}{
		frame.CmdPing: {"PING", 0}, frame.CmdPong: {"PONG", 0},
		frame.CmdMsg: {"MSG", frame.MsgHeaderLen}, frame.CmdGroupMsg: {"GROUP_MSG", frame.MsgHeaderLen},
		frame.CmdBye: {"BYE", 0}, frame.CmdPresence: {"PRESENCE", frame.PresenceLen},
		frame.CmdFile: {"FILE", frame.FileFrameLen}, frame.CmdFileServer: {"FILE_SERVER", frame.FileServerLen},
		frame.CmdFetch: {"FETCH", frame.FetchLen}, frame.CmdSignature: {"SIGNATURE", frame.LookupLen},
		frame.CmdFriendInfo: {"FRIEND_INFO", frame.LookupLen}, frame.CmdFriendsOnline: {"FRIENDS_ONLINE", frame.LookupLen},
		frame.CmdFriendNotify: {"FRIEND_NOTIFY", frame.PresenceLen}, frame.CmdServerList: {"SERVER_LIST", frame.LookupLen},
		frame.CmdAck: {"ACK", frame.AckLen}, frame.CmdError: {"ERROR", frame.ErrorLen},
		frame.CmdHandshake: {"HANDSHAKE", frame.HandshakeMinLen}, frame.CmdAuth: {"AUTH", 0},
		frame.CmdRekey: {"REKEY", 0}, frame.CmdNotice: {"NOTICE", frame.NoticeLen},
		frame.CmdGroup:   {"GROUP", frame.GroupLen},
		frame.CmdProfile: {"PROFILE", frame.LookupLen},
	}
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		w, ok := want[c]
		if c.Known() != ok {
			t.Errorf("Cmd(0x%02x).Known() = %v", i, c.Known())
		}
		if !ok {
			if s := c.String(); s != fmt.Sprintf("CMD(0x%02x)", i) {
				t.Errorf("Cmd(0x%02x).String() = %q", i, s)
			}
			if c.MinBody() != -1 || frame.CheckBody(c, nil) != frame.ErrUnknownCmd {
				t.Errorf("Cmd(0x%02x): MinBody %d, CheckBody %v", i, c.MinBody(), frame.CheckBody(c, nil))
			}
			continue
		}
		if c.String() != w.name || c.MinBody() != w.min {
			t.Errorf("Cmd(0x%02x) = %q min %d, want %q min %d", i, c.String(), c.MinBody(), w.name, w.min)
		}
		if layoutOf(c) == nil {
			t.Errorf("%v has no layout in the tests", c)
		}
	}
	if frame.FileFrameLen != frame.MsgHeaderLen+frame.FileHeaderLen {
		t.Errorf("FileFrameLen = %d", frame.FileFrameLen)
	}
}

// TestRoundTrip encodes random fields with every Append function, decodes
// the frame and reads the same fields back through the accessors.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 76, 77, 108, 109, 124, 125, 126, 1000, 16379 - 65, 16380}
	for c := frame.Cmd(1); c.Known(); c++ {
		layout := layoutOf(c)
		for _, q := range []frame.QoS{frame.QoS0, frame.QoS1} {
			for i := 0; i < 40; i++ {
				n := r.IntN(300)
				if i < len(sizes) {
					n = sizes[i]
				}
				if c == frame.CmdHandshake {
					n += frame.HandshakeMinLen
				}
				want := layout.random(r, n)
				prefix := []byte{0xde, 0xad}
				b, err := want.appendFrame(slices.Clone(prefix), c, q)
				if err != nil {
					t.Fatalf("%v: encode: %v", c, err)
				}
				if !bytes.Equal(b[:2], prefix) {
					t.Fatalf("%v: encoding overwrote the destination's bytes", c)
				}
				f, size, err := frame.Decode(b[2:], frame.DefaultMaxFrame)
				if err != nil || size != len(b)-2 {
					t.Fatalf("%v: Decode(encoded %+v) = %d, %v", c, want, size, err)
				}
				if f.Cmd() != c {
					t.Fatalf("%v: decoded cmd %v", c, f.Cmd())
				}
				if got := layout.readBody(f.Body()); got != want {
					t.Fatalf("%v: round trip\n got %+v\nwant %+v", c, got, want)
				}
				// Encoders that take a QoS keep it; the others write 0.
				wantQ := frame.QoS0
				if takesQoS(layout) {
					wantQ = q
				}
				if f.QoS() != wantQ {
					t.Fatalf("%v: encoded qos %d, want %d", c, f.QoS(), wantQ)
				}
				checkMsgViews(t, c, f.Body())
			}
		}
	}
}

// takesQoS reports whether the layout's Append function takes a QoS.
func takesQoS(layout bodyFields) bool {
	switch layout.(type) {
	case raw, msgFields, fileFields, fileServerFields:
		return true
	}
	return false
}

// checkMsgViews checks Msg.Header and File.Msg against the single accessors.
func checkMsgViews(t *testing.T, c frame.Cmd, body []byte) {
	t.Helper()
	switch c {
	case frame.CmdMsg, frame.CmdGroupMsg:
		m := frame.Msg(body)
		if h := m.Header(); h != layoutOf(c).readBody(body).(msgFields).H {
			t.Fatalf("Msg.Header = %+v", h)
		}
	case frame.CmdFile:
		if h := frame.File(body).Msg().Header(); h != layoutOf(c).readBody(body).(fileFields).H {
			t.Fatalf("File.Msg().Header = %+v", h)
		}
	}
}

// TestMsgSetters follows one message over the design note's hops, each
// filling its slot in place, and checks nothing else moved.
func TestMsgSetters(t *testing.T) {
	content := []byte("hi")
	b, err := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, hopUS, content)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := frame.Decode(b, frame.DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	m := frame.Msg(f.Body())
	steps := []struct {
		set  func()
		want frame.MsgHeader
	}{
		{func() { m.SetSrv(epA) }, hopSM},
		{func() { m.SetMID(1000) }, hopMS},
		{func() { m.SetDSrv(epB) }, hopSU},
	}
	for i, s := range steps {
		s.set()
		if m.Header() != s.want || !bytes.Equal(m.Content(), content) {
			t.Fatalf("hop %d: header %+v content %q; want %+v %q", i+2, m.Header(), m.Content(), s.want, content)
		}
		want, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, s.want, content)
		if !bytes.Equal(b, want) {
			t.Fatalf("hop %d: frame % x, want % x", i+2, b, want)
		}
	}
}

func TestAppendTooLarge(t *testing.T) {
	dst := []byte("keep")
	for _, n := range []int{-1, math.MinInt, frame.MaxEncodable - 5, frame.MaxEncodable, math.MaxInt32, math.MaxInt - 2, math.MaxInt} {
		if total, lb, err := frame.SizeFor(n); err != frame.ErrContentTooLarge || total != 0 || lb != 0 {
			t.Errorf("SizeFor(%d) = %d, %d, %v; want ErrContentTooLarge", n, total, lb, err)
		}
		got, err := frame.AppendHeader(dst, frame.CmdAuth, frame.QoS0, n)
		if err != frame.ErrContentTooLarge || string(got) != "keep" {
			t.Errorf("AppendHeader(%d) = % x, %v; want the destination unchanged and ErrContentTooLarge", n, got, err)
		}
	}
}

// TestSizeForBoundaries checks SizeFor against the definition of the Length
// field for every body length up to 20000 and around each width boundary,
// and that Split accepts exactly what SizeFor produces.
func TestSizeForBoundaries(t *testing.T) {
	var lens []int
	for n := 0; n <= 20000; n++ {
		lens = append(lens, n)
	}
	for w := 1; w <= 4; w++ {
		limit := 1 << (7 * w)
		for n := limit - w - 12; n <= limit+12; n++ {
			lens = append(lens, n)
		}
	}
	for _, n := range lens {
		total, w, err := frame.SizeFor(n)
		if n > frame.MaxEncodable-6 {
			if err != frame.ErrContentTooLarge {
				t.Fatalf("SizeFor(%d) = %d, %d, %v; want ErrContentTooLarge", n, total, w, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("SizeFor(%d): %v", n, err)
		}
		// Self-inclusive, and the fewest bytes that can hold the total.
		if total != n+2+w || total >= 1<<(7*w) {
			t.Fatalf("SizeFor(%d) = %d, %d", n, total, w)
		}
		for shorter := 1; shorter < w; shorter++ {
			if n+2+shorter < 1<<(7*shorter) {
				t.Fatalf("SizeFor(%d) = %d bytes of Length, but %d would do", n, w, shorter)
			}
		}
		hdr, err := frame.AppendHeader(nil, frame.CmdAuth, frame.QoS0, n)
		if err != nil || len(hdr) != w+2 {
			t.Fatalf("AppendHeader(%d) = % x, %v", n, hdr, err)
		}
		if size, err := frame.Split(hdr, frame.MaxEncodable); size != total || err != nil {
			t.Fatalf("Split(header for body %d) = %d, %v; want %d", n, size, err, total)
		}
		// One byte less is still incomplete, never an error.
		if size, err := frame.Split(hdr[:w-1], frame.MaxEncodable); size != 0 || err != nil {
			t.Fatalf("Split(% x) = %d, %v; want 0, nil", hdr[:w-1], size, err)
		}
		// The maximum is inclusive.
		if size, err := frame.Split(hdr, total); size != total || err != nil {
			t.Fatalf("Split(max = size) = %d, %v", size, err)
		}
		if _, err := frame.Split(hdr, total-1); err != frame.ErrTooLarge {
			t.Fatalf("Split(max = size-1) = %v, want ErrTooLarge", err)
		}
		// Every other width for the same total is rejected.
		for ow := 1; ow <= 4; ow++ {
			if ow == w || total >= 1<<(7*ow) {
				continue
			}
			if _, err := frame.Split(leb128(total, ow), frame.MaxEncodable); err == nil {
				t.Fatalf("Split accepts size %d in %d Length bytes; SizeFor says %d", total, ow, w)
			}
		}
	}
	// Every Length value of each width is accepted exactly when it is what
	// SizeFor gives for its body.
	for _, v := range []int{128, 129, 1<<14 - 1, 1 << 14, 1<<14 + 1, 1<<21 - 1, 1 << 21, 1<<21 + 1, 1<<28 - 1} {
		for w := 1; w <= 4; w++ {
			if v >= 1<<(7*w) {
				continue
			}
			total, want, _ := frame.SizeFor(v - w - 2)
			size, err := frame.Split(leb128(v, w), frame.MaxEncodable)
			if ok := total == v && want == w; ok != (err == nil) || (ok && size != v) {
				t.Errorf("Split(%d in %d bytes) = %d, %v; SizeFor gives %d in %d", v, w, size, err, total, want)
			}
		}
	}
}

// leb128 writes v in exactly w LEB128 bytes, padding with zero groups.
func leb128(v, w int) []byte {
	b := make([]byte, w)
	for i := range b {
		b[i] = byte(v & 0x7f)
		v >>= 7
		if i < w-1 {
			b[i] |= 0x80
		}
	}
	return b
}

// streamResult is what a stream reader made of its input.
type streamResult struct {
	frames  []string // the whole frames taken, in order
	err     error    // the error that ended the stream, or nil
	pending int      // bytes waiting for the rest of a frame, when err is nil
}

func (r streamResult) equal(o streamResult) bool {
	return slices.Equal(r.frames, o.frames) && r.err == o.err && r.pending == o.pending
}

func (r streamResult) String() string {
	return fmt.Sprintf("%d frames, err %v, %d bytes pending", len(r.frames), r.err, r.pending)
}

// streamer is the read loop a connection runs: append what arrived, take
// every complete frame from the front, keep the rest, and stop for good at
// the first error.
type streamer struct {
	max int
	buf []byte
	res streamResult
}

func (s *streamer) write(p []byte) {
	if s.res.err != nil {
		return
	}
	s.buf = append(s.buf, p...)
	for {
		size, err := frame.Split(s.buf, s.max)
		if err != nil {
			s.res.err = err
			return
		}
		if size == 0 || size > len(s.buf) {
			return
		}
		f := frame.Frame(s.buf[:size])
		if err := frame.Check(f); err != nil {
			s.res.err = err
			return
		}
		s.res.frames = append(s.res.frames, string(f))
		s.buf = s.buf[size:]
	}
}

func (s *streamer) result() streamResult {
	r := s.res
	if r.err == nil {
		r.pending = len(s.buf)
	}
	return r
}

// stream feeds data to a streamer in chunks whose sizes next chooses.
func stream(data []byte, limit int, next func(left int) int) streamResult {
	s := streamer{max: limit}
	for len(data) > 0 {
		n := min(max(1, next(len(data))), len(data))
		s.write(data[:n])
		data = data[n:]
	}
	return s.result()
}

func whole(left int) int { return left }
func bytewise(int) int   { return 1 }
func chunked(r *rand.Rand) func(int) int {
	return func(left int) int { return 1 + r.IntN(min(left, 64)) }
}

// TestStream feeds every valid frame of the table back to back, followed by
// each malformed or incomplete input, whole, a byte at a time and in random
// chunks, and requires the same frames and error every time.
func TestStream(t *testing.T) {
	var good []byte
	var goodFrames []string
	for _, c := range frameCases {
		if c.err == nil {
			good = append(good, c.in[:c.size]...)
			goodFrames = append(goodFrames, string(c.in[:c.size]))
		}
	}
	tails := []frameCase{{name: "nothing", in: nil}}
	for _, c := range frameCases {
		if c.err != nil {
			tails = append(tails, c)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tail := range tails {
		t.Run("then "+tail.name, func(t *testing.T) {
			data := append(slices.Clone(good), tail.in...)
			want := streamResult{frames: goodFrames, err: tail.err}
			if tail.err == frame.ErrTruncated || tail.err == nil {
				want.err, want.pending = nil, len(tail.in)
			}
			if got := stream(data, frame.DefaultMaxFrame, whole); !got.equal(want) {
				t.Fatalf("whole: %v; want %v", got, want)
			}
			if got := stream(data, frame.DefaultMaxFrame, bytewise); !got.equal(want) {
				t.Fatalf("byte at a time: %v; want %v", got, want)
			}
			for i := 0; i < 5; i++ {
				if got := stream(data, frame.DefaultMaxFrame, chunked(r)); !got.equal(want) {
					t.Fatalf("random chunks: %v; want %v", got, want)
				}
			}
		})
	}
}

// TestStreamStopsAtError checks that nothing after an error is taken, even
// valid frames.
func TestStreamStopsAtError(t *testing.T) {
	data := []byte{0x03, 0x01, 0x01, 0x03, 0x17, 0x00, 0x03, 0x02, 0x00}
	want := streamResult{frames: []string{"\x03\x01\x01"}, err: frame.ErrUnknownCmd}
	s := streamer{max: frame.DefaultMaxFrame}
	s.write(data)
	s.write(frame.Ping)
	if got := s.result(); !got.equal(want) {
		t.Fatalf("%v; want %v", got, want)
	}
}

// Read takes frames off a stream one by one, with a two-byte Length among
// them, and refuses what Split and CheckEnvelope refuse before reading on.
func TestRead(t *testing.T) {
	big, err := frame.AppendHeader(nil, frame.CmdMsg, frame.QoS1, 300)
	if err != nil {
		t.Fatal(err)
	}
	big = append(big, bytes.Repeat([]byte{'x'}, 300)...)
	stream := slices.Concat(frame.Ping, big, frame.Pong)
	r := bytes.NewReader(stream)
	for i, want := range [][]byte{frame.Ping, big, frame.Pong} {
		f, err := frame.Read(r, frame.DefaultMaxFrame)
		if err != nil || !bytes.Equal(f, want) {
			t.Fatalf("frame %d: % x, %v", i, f[:min(len(f), 8)], err)
		}
	}
	if _, err := frame.Read(r, frame.DefaultMaxFrame); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end of the stream: %v, want io.EOF", err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"oversize", big, 100, frame.ErrTooLarge},
		{"cut in the body", big[:50], 0, io.ErrUnexpectedEOF},
		{"cut in the length", big[:1], 0, io.ErrUnexpectedEOF},
		{"non-minimal length", []byte{0x83, 0x00, 0x01, 0x01}, 0, frame.ErrNonMinimal},
		{"unknown command", []byte{0x03, 0xEE, 0x00}, 0, frame.ErrUnknownCmd},
		{"QoS 2", []byte{0x03, 0x01, 0x02}, 0, frame.ErrBadQoS},
	} {
		r := bytes.NewReader(tc.in)
		if f, err := frame.Read(r, tc.max); !errors.Is(err, tc.want) || f != nil {
			t.Errorf("%s: % x, %v; want %v", tc.name, f, err, tc.want)
		}
		if tc.want == frame.ErrTooLarge && r.Len() != len(tc.in)-2 {
			t.Errorf("oversize: %d bytes read, want only the 2-byte Length", len(tc.in)-r.Len())
		}
	}
}
