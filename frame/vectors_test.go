package frame_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/myim/myim/frame"
)

// protocolDoc is the protocol reference whose test vectors this file checks.
const protocolDoc = "../docs/protocol.md"

// docVector is one test vector of the protocol reference: a "Vector: <name>"
// line, a ```hex block, and an optional "Fields: ..." line.
type docVector struct {
	name   string
	line   int // of the Vector: line
	bytes  []byte
	fields string // the Fields: line without its prefix, or ""
}

// loadDocVectors parses every vector of the protocol reference. A hex block
// without a Vector: line before it, or a Vector: line without a hex block,
// fails the test: the doc must not show bytes that nothing checks.
func loadDocVectors(tb testing.TB) []docVector {
	tb.Helper()
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		tb.Fatalf("read protocol reference: %v", err)
	}
	var (
		out     []docVector
		pending *docVector // named, waiting for its hex block
		last    *docVector // block read, may take a Fields: line
		inHex   bool
		hexText strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case inHex && line == "```":
			inHex = false
			b, err := hex.DecodeString(strings.Join(strings.Fields(hexText.String()), ""))
			if err != nil {
				tb.Fatalf("%s:%d: vector %q: %v", protocolDoc, pending.line, pending.name, err)
			}
			pending.bytes = b
			out = append(out, *pending)
			last, pending = &out[len(out)-1], nil
		case inHex:
			hexText.WriteString(line)
			hexText.WriteByte(' ')
		case line == "```hex":
			if pending == nil {
				tb.Fatalf("%s:%d: hex block without a Vector: line before it", protocolDoc, n)
			}
			inHex = true
			hexText.Reset()
		case strings.HasPrefix(line, "Vector:"):
			if pending != nil {
				tb.Fatalf("%s:%d: vector %q has no hex block", protocolDoc, pending.line, pending.name)
			}
			pending = &docVector{name: strings.TrimSpace(strings.TrimPrefix(line, "Vector:")), line: n}
			if pending.name == "" {
				tb.Fatalf("%s:%d: Vector: line without a name", protocolDoc, n)
			}
			last = nil
		case strings.HasPrefix(line, "Fields:") && last != nil:
			last.fields = strings.TrimSpace(strings.TrimPrefix(line, "Fields:"))
			last = nil
		case line != "":
			last = nil
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read protocol reference: %v", err)
	}
	if inHex || pending != nil {
		tb.Fatalf("%s: unterminated vector at the end of the file", protocolDoc)
	}
	return out
}

// vectorWant is what a vector must decode to.
type vectorWant struct {
	cmd    frame.Cmd
	qos    frame.QoS
	fields bodyFields
}

// The fields the vectors use; they follow the design note's message example.
const (
	alice   = 1             // a user
	bob     = 2             // another user
	team    = 16            // a group both are in
	epA     = 7             // alice's endpoint
	epB     = 9             // bob's endpoint
	newYear = 1767225600000 // 2026-01-01T00:00:00Z in Unix milliseconds
)

var (
	hopUS = frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 1}
	hopSM = frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 1, Srv: epA}
	hopMS = frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 1, Srv: epA, MID: 1000}
	hopSU = frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 1, Srv: epA, MID: 1000, DSrv: epB}
)

// vectorTable holds the expected decoding of every vector in the protocol
// reference, keyed by vector name. Adding a vector to the doc means adding
// its entry here, and the other way round.
var vectorTable = map[string]vectorWant{
	"ping": {frame.CmdPing, frame.QoS1, raw{}},
	"pong": {frame.CmdPong, frame.QoS0, raw{}},

	"msg-u-s":      {frame.CmdMsg, frame.QoS1, msgFields{hopUS, "hi"}},
	"msg-s-m":      {frame.CmdMsg, frame.QoS1, msgFields{hopSM, "hi"}},
	"msg-m-s":      {frame.CmdMsg, frame.QoS1, msgFields{hopMS, "hi"}},
	"msg-s-u":      {frame.CmdMsg, frame.QoS1, msgFields{hopSU, "hi"}},
	"msg-body-124": {frame.CmdMsg, frame.QoS0, msgFields{frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 2}, strings.Repeat("x", 76)}},
	"msg-body-125": {frame.CmdMsg, frame.QoS0, msgFields{frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 3}, strings.Repeat("x", 77)}},

	"group-msg-u-s": {frame.CmdGroupMsg, frame.QoS1, msgFields{frame.MsgHeader{From: alice, To: team, Time: newYear, CID: 4}, "hello"}},
	"group-msg-s-u": {frame.CmdGroupMsg, frame.QoS1, msgFields{frame.MsgHeader{From: alice, To: team, Time: newYear, CID: 4, Srv: epA, MID: 42, DSrv: epB}, "hello"}},

	"bye": {frame.CmdBye, frame.QoS0, raw{}},

	"presence": {frame.CmdPresence, frame.QoS0, presenceFields{alice, newYear, frame.StatusAway, "lunch"}},

	"file-chunk":     {frame.CmdFile, frame.QoS0, fileFields{frame.MsgHeader{From: alice, To: bob, Time: newYear, CID: 5}, frame.FileChunk, 9, 4096, "abc"}},
	"file-chunk-ack": {frame.CmdFile, frame.QoS0, fileFields{frame.MsgHeader{From: bob, To: alice, Time: newYear, CID: 6}, frame.FileChunkAck, 9, 4099, ""}},

	"file-server-request": {frame.CmdFileServer, frame.QoS0, fileServerFields{1, 1, 0x77, 0, ""}},

	"fetch-request": {frame.CmdFetch, frame.QoS0, fetchFields{5, frame.FetchP2P, 0, 0, 50}},
	"fetch-answer":  {frame.CmdFetch, frame.QoS0, fetchFields{5, frame.FetchP2P, frame.FetchMore, 1050, 50}},

	"signature-request":      {frame.CmdSignature, frame.QoS0, lookupFields{1, bob, ""}},
	"signature-answer":       {frame.CmdSignature, frame.QoS0, lookupFields{1, bob, `{"signature":"on holiday"}`}},
	"signature-by-name":      {frame.CmdSignature, frame.QoS0, lookupFields{8, 0, `{"name":"bob"}`}},
	"friend-info-request":    {frame.CmdFriendInfo, frame.QoS0, lookupFields{2, bob, ""}},
	"friends-online-request": {frame.CmdFriendsOnline, frame.QoS0, lookupFields{3, 0, ""}},
	"server-list-request":    {frame.CmdServerList, frame.QoS0, lookupFields{4, 0, ""}},

	"friend-notify": {frame.CmdFriendNotify, frame.QoS0, presenceFields{bob, newYear, frame.StatusOnline, ""}},

	"ack-stored":     {frame.CmdAck, frame.QoS0, ackFields{1, 1000, bob, frame.AckStored}},
	"ack-received":   {frame.CmdAck, frame.QoS0, ackFields{0, 1000, alice, frame.AckReceived}},
	"ack-group-read": {frame.CmdAck, frame.QoS0, ackFields{0, 42, team, frame.AckGroupRead}},

	"error-forbidden": {frame.CmdError, frame.QoS0, errorFields{frame.ErrCodeForbidden, 1, "sender mismatch"}},

	"handshake": {frame.CmdHandshake, frame.QoS0, raw{seqString(32)}},
	"auth":      {frame.CmdAuth, frame.QoS0, raw{`{"user":1,"token":"abc"}`}},
	"rekey":     {frame.CmdRekey, frame.QoS0, raw{}},

	"notice-new-device": {frame.CmdNotice, frame.QoS0, noticeFields{frame.NoticeNewDevice, `{"device":"laptop"}`}},

	"group-create": {frame.CmdGroup, frame.QoS0, groupFields{6, frame.GroupCreate, 0, `{"name":"team"}`}},
	"group-invite": {frame.CmdGroup, frame.QoS0, groupFields{7, frame.GroupInvite, team, `{"user":2}`}},
	"group-invite-answer": {frame.CmdGroup, frame.QoS0, groupFields{7, frame.GroupInvite, team,
		`{"group":16,"user":2,"join_seq":42,"role":"member"}`}},
	"group-remove": {frame.CmdGroup, frame.QoS0, groupFields{11, frame.GroupRemove, team, `{"user":2}`}},
	"group-open":   {frame.CmdGroup, frame.QoS0, groupFields{9, frame.GroupOpen, team, `{"open":true}`}},
	"group-role":   {frame.CmdGroup, frame.QoS0, groupFields{10, frame.GroupRole, team, `{"user":2,"role":"admin"}`}},

	"profile-request": {frame.CmdProfile, frame.QoS0, lookupFields{7, 0, `{"signature":"on holiday"}`}},
}

// seqString returns the bytes 0, 1, ..., n-1 as a string.
func seqString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

func TestDocVectors(t *testing.T) {
	vectors := loadDocVectors(t)
	seen := make(map[string]bool)
	covered := make(map[frame.Cmd]bool)
	for _, v := range vectors {
		if seen[v.name] {
			t.Errorf("%s:%d: vector %q appears twice", protocolDoc, v.line, v.name)
			continue
		}
		seen[v.name] = true
		want, ok := vectorTable[v.name]
		if !ok {
			t.Errorf("%s:%d: vector %q has no entry in vectorTable", protocolDoc, v.line, v.name)
			continue
		}
		covered[want.cmd] = true
		t.Run(v.name, func(t *testing.T) { checkVector(t, v, want) })
	}
	for name := range vectorTable {
		if !seen[name] {
			t.Errorf("vectorTable entry %q has no vector in %s", name, protocolDoc)
		}
	}
	for c := 0; c < 256; c++ {
		if frame.Cmd(c).Known() && !covered[frame.Cmd(c)] {
			t.Errorf("command %v (0x%02x) has no vector in %s", frame.Cmd(c), c, protocolDoc)
		}
	}
	for c := frame.CmdPing; c <= frame.CmdProfile; c++ {
		if !covered[c] {
			t.Errorf("command 0x%02x has no vector in %s", byte(c), protocolDoc)
		}
	}
}

func checkVector(t *testing.T, v docVector, want vectorWant) {
	t.Helper()
	f, n, err := frame.Decode(v.bytes, frame.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("Decode(% x): %v", v.bytes, err)
	}
	if n != len(v.bytes) {
		t.Fatalf("Decode consumed %d of %d bytes", n, len(v.bytes))
	}
	if f.Cmd() != want.cmd || f.QoS() != want.qos {
		t.Fatalf("decoded cmd=%v qos=%d, want cmd=%v qos=%d", f.Cmd(), f.QoS(), want.cmd, want.qos)
	}
	layout := layoutOf(want.cmd)
	if fmt.Sprintf("%T", layout) != fmt.Sprintf("%T", want.fields) {
		t.Fatalf("vectorTable gives %T fields for %v, whose layout is %T", want.fields, want.cmd, layout)
	}
	if got := layout.readBody(f.Body()); got != want.fields {
		t.Errorf("decoded fields\n got %+v\nwant %+v", got, want.fields)
	}
	enc, err := want.fields.appendFrame(nil, want.cmd, want.qos)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if !bytes.Equal(enc, v.bytes) {
		t.Errorf("encoding the table's fields gives\n% x\nthe doc says\n% x", enc, v.bytes)
	}
	if lit, ok := literalVectors[v.name]; ok && !bytes.Equal(lit, v.bytes) {
		t.Errorf("the package's literal is % x, the doc says % x", lit, v.bytes)
	}
	if v.fields != "" {
		checkFieldsLine(t, v, want)
	}
}

// literalVectors are vectors the package also exports as literals.
var literalVectors = map[string][]byte{"ping": frame.Ping, "pong": frame.Pong}

// checkFieldsLine checks the cmd= and qos= items of a vector's Fields: line,
// so that the prose next to the bytes cannot drift from them.
func checkFieldsLine(t *testing.T, v docVector, want vectorWant) {
	t.Helper()
	var cmd, qos string
	for _, item := range strings.Fields(v.fields) {
		if s, ok := strings.CutPrefix(item, "cmd="); ok {
			cmd = s
		}
		if s, ok := strings.CutPrefix(item, "qos="); ok {
			qos = s
		}
	}
	if cmd != want.cmd.String() || qos != fmt.Sprint(want.qos) {
		t.Errorf("%s: Fields: line says cmd=%s qos=%s, want cmd=%v qos=%d", protocolDoc, cmd, qos, want.cmd, want.qos)
	}
}
