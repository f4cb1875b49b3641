package frame_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/myim/myim/frame"
)

// docCommand is one row of the "Commands" table of docs/protocol.md.
type docCommand struct {
	line                                   int
	name, dir, qos, fixedBody, sealed, ref string
}

// loadDocCommands parses the "Commands" table of the protocol reference,
// keyed by code.
func loadDocCommands(t *testing.T) (map[frame.Cmd]docCommand, string) {
	t.Helper()
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatalf("read protocol reference: %v", err)
	}
	lines := strings.Split(string(doc), "\n")
	start := -1
	for i, l := range lines {
		if l == "## Commands" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatal("no ## Commands section in the protocol reference")
	}
	rows := map[frame.Cmd]docCommand{}
	var header []string
	for i := start + 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "|") {
			if header != nil {
				break // the table ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		switch {
		case header == nil:
			header = cells
			want := []string{"code", "name", "direction", "QoS", "fixed body", "sealed", "ref", "purpose"}
			if strings.Join(header, ",") != strings.Join(want, ",") {
				t.Fatalf("%s:%d: command table columns %q, want %q", protocolDoc, i+1, header, want)
			}
			continue
		case strings.HasPrefix(cells[0], "---"):
			continue
		}
		code, err := strconv.ParseUint(strings.TrimPrefix(cells[0], "0x"), 16, 8)
		if err != nil || !strings.HasPrefix(cells[0], "0x") {
			t.Fatalf("%s:%d: code %q", protocolDoc, i+1, cells[0])
		}
		c := frame.Cmd(code)
		if _, dup := rows[c]; dup {
			t.Fatalf("%s:%d: code %s listed twice", protocolDoc, i+1, cells[0])
		}
		rows[c] = docCommand{line: i + 1, name: cells[1], dir: cells[2], qos: cells[3], fixedBody: cells[4],
			sealed: cells[5], ref: cells[6]}
	}
	return rows, string(doc)
}

// Every command of the table is in the protocol reference's command table
// under the same code with the same name, direction, QoS, fixed body,
// sealing and reference, and the reference lists no other code.
func TestCommandTableMatchesDocs(t *testing.T) {
	docs, text := loadDocCommands(t)
	known := 0
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		d, listed := docs[c]
		if !c.Known() {
			if listed {
				t.Errorf("%s:%d: code 0x%02X is not a command of the table", protocolDoc, d.line, i)
			}
			continue
		}
		known++
		in := c.Info()
		if !listed {
			t.Errorf("%s (0x%02X) missing from the protocol reference's command table", in.Name, i)
			continue
		}
		sealed := "never"
		if in.Sealed {
			sealed = "yes"
		}
		got := docCommand{line: d.line, name: in.Name, dir: in.Dir.String(), qos: in.QoS.String(),
			fixedBody: strconv.Itoa(in.MinBody), sealed: sealed, ref: in.Ref.String()}
		if got != d {
			t.Errorf("%s:%d: 0x%02X documented as %+v, the table says %+v", protocolDoc, d.line, i, d, got)
		}
		if heading := fmt.Sprintf("\n### 0x%02X %s\n", i, in.Name); !strings.Contains(text, heading) {
			t.Errorf("no body section %q in the protocol reference", strings.TrimSpace(heading))
		}
	}
	if len(docs) != known {
		t.Errorf("protocol reference lists %d commands, the table %d", len(docs), known)
	}
	// The first code past the table is the first the reference calls an error.
	if want := fmt.Sprintf("(`00`, `%02x` to `ff`) is an error", known+1); !strings.Contains(text, want) {
		t.Errorf("protocol reference does not say %q", want)
	}
}

// The rows agree with themselves: a client may send exactly the commands
// some part of the server takes, the messages are the commands with a CID
// and a choice of QoS, and what the center runs on its pool can be refused
// by reference.
func TestCommandTableConsistent(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		in := c.Info()
		if !c.Known() {
			if in != (frame.CmdInfo{}) || c.Route() != frame.RouteRefuse {
				t.Errorf("unknown code 0x%02X has a row %+v", i, in)
			}
			if err := frame.CheckBody(c, make([]byte, 64)); !errors.Is(err, frame.ErrUnknownCmd) {
				t.Errorf("unknown code 0x%02X: CheckBody = %v, want ErrUnknownCmd", i, err)
			}
			continue
		}
		if in.Name == "" || in.Name != c.String() || in.MinBody != c.MinBody() {
			t.Errorf("%v: name %q, min body %d", c, in.Name, in.MinBody)
		}
		if in.Dir == 0 {
			t.Errorf("%v: no direction", c)
		}
		if fromClient := in.Dir&frame.ClientToServer != 0; fromClient != (in.Route != frame.RouteRefuse) {
			t.Errorf("%v: sent by clients %v but route %d", c, fromClient, in.Route)
		}
		if in.Message != (in.Ref == frame.RefCID) || in.Message != (in.QoS == frame.QoSEither) {
			t.Errorf("%v: message %v, ref %v, QoS %v disagree", c, in.Message, in.Ref, in.QoS)
		}
		if in.Message && in.MinBody < frame.MsgHeaderLen {
			t.Errorf("%v: a message with a body shorter than a MsgHeader", c)
		}
		if in.Ref == frame.RefReq && in.MinBody < 4 {
			t.Errorf("%v: a request with a body shorter than its Req", c)
		}
		if in.Pooled && (in.Route != frame.RouteCenter || in.Ref != frame.RefReq) {
			t.Errorf("%v: pooled, but route %d and ref %v", c, in.Route, in.Ref)
		}
		if in.Ref != frame.RefNone && in.Route != frame.RouteCenter {
			t.Errorf("%v: a request that no center answers", c)
		}
		if in.Route == frame.RouteEnvelope && in.Sealed {
			t.Errorf("%v: taken on its envelope but sealed", c)
		}
		if c.Message() != in.Message || c.Pooled() != in.Pooled || c.Ref() != in.Ref || c.Route() != in.Route {
			t.Errorf("%v: accessors disagree with the row", c)
		}
	}
}

// RequestRef reads the field each body layout names: a message's CID, a
// request's Req.
func TestRequestRef(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		if !c.Known() {
			continue
		}
		l := layoutOf(c)
		b, err := l.random(r, 64).appendFrame(nil, c, frame.QoS1)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		f, _, err := frame.Decode(b, 0)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		body := f.Body()
		var want uint64
		switch c.Ref() {
		case frame.RefCID:
			want = frame.Msg(body).CID()
		case frame.RefReq:
			want = uint64(frame.Lookup(body).Req()) // every Req layout starts with it
			for name, req := range map[string]uint32{"FETCH": frame.Fetch(body).Req(),
				"GROUP": frame.Group(body).Req(), "FILE_SERVER": frame.FileServer(body).Req()} {
				if name == c.String() && uint64(req) != want {
					t.Errorf("%v: Req at another offset", c)
				}
			}
		}
		if got := frame.RequestRef(c, body); got != want {
			t.Errorf("%v: RequestRef = %d, want %d", c, got, want)
		}
	}
}

// AnswerRef names the sender's message an ACK confirms and the request an
// ERROR answers; a recipient's receipt and other frames answer nothing.
func TestAnswerRef(t *testing.T) {
	for status, answers := range map[byte]bool{frame.AckDelivered: true, frame.AckStored: true,
		frame.AckDuplicate: true, frame.AckReceived: false, frame.AckGroupRead: false, 9: false} {
		b, _ := frame.AppendAck(nil, 42, 1000, 7, status)
		want := uint64(0)
		if answers {
			want = 42
		}
		if got := frame.AnswerRef(frame.CmdAck, frame.Frame(b).Body()); got != want {
			t.Errorf("ACK status %d: AnswerRef = %d, want %d", status, got, want)
		}
	}
	b, _ := frame.AppendError(nil, frame.ErrCodeRetry, 43, "retry")
	if got := frame.AnswerRef(frame.CmdError, frame.Frame(b).Body()); got != 43 {
		t.Errorf("ERROR: AnswerRef = %d, want 43", got)
	}
	b, _ = frame.AppendMsg(nil, frame.CmdMsg, frame.QoS1, frame.MsgHeader{From: 1, To: 2, CID: 44}, nil)
	if got := frame.AnswerRef(frame.CmdMsg, frame.Frame(b).Body()); got != 0 {
		t.Errorf("MSG: AnswerRef = %d, want 0", got)
	}
}

// tsFrame is the TypeScript SDK's frame layer, which keeps its own copy of
// the command codes, fixed body sizes and sealing.
const tsFrame = "../client/ts/src/frame.ts"

// The TypeScript SDK's command codes, fixed body sizes, first unknown code
// and unsealed commands are the command table's.
func TestTypeScriptCommandsMatchTable(t *testing.T) {
	src, err := os.ReadFile(tsFrame)
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	section := func(start, end string) string {
		t.Helper()
		i := strings.Index(text, start)
		if i < 0 {
			t.Fatalf("%s: no %q", tsFrame, start)
		}
		j := strings.Index(text[i:], end)
		if j < 0 {
			t.Fatalf("%s: no %q after %q", tsFrame, end, start)
		}
		return text[i+len(start) : i+j]
	}
	codes := map[frame.Cmd]string{}
	for _, l := range strings.Split(section("export const Cmd = {", "} as const;"), "\n") {
		name, code, ok := strings.Cut(strings.TrimSuffix(strings.TrimSpace(l), ","), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(code, "0x"), 16, 8)
		if err != nil {
			t.Fatalf("%s: code %q of %s", tsFrame, code, name)
		}
		var snake strings.Builder // GroupMsg -> GROUP_MSG
		for i, r := range name {
			if i > 0 && r >= 'A' && r <= 'Z' {
				snake.WriteByte('_')
			}
			snake.WriteRune(r)
		}
		if prev, dup := codes[frame.Cmd(n)]; dup {
			t.Errorf("%s: code %s is both %s and %s", tsFrame, code, prev, name)
		}
		codes[frame.Cmd(n)] = strings.ToUpper(snake.String())
	}
	limit := strings.TrimSpace(section("const CMD_LIMIT =", ";"))
	sizes := strings.Split(section("const MIN_BODY = [", "];"), ",")
	unsealed := map[frame.Cmd]bool{}
	for _, part := range strings.Split(section("export function sealed(", "}"), "c !== Cmd.")[1:] {
		name := strings.FieldsFunc(part, func(r rune) bool { return r == ' ' || r == '&' || r == ';' })[0]
		for c, n := range codes {
			if strings.ReplaceAll(n, "_", "") == strings.ToUpper(name) {
				unsealed[c] = true
			}
		}
	}
	known := 0
	for i := 0; i < 256; i++ {
		c := frame.Cmd(i)
		if !c.Known() {
			if name, ok := codes[c]; ok {
				t.Errorf("%s: code 0x%02x (%s) is not a command of the table", tsFrame, i, name)
			}
			continue
		}
		known++
		if codes[c] != c.String() {
			t.Errorf("%s: code 0x%02x is %q, the table says %s", tsFrame, i, codes[c], c)
		}
		if i >= len(sizes) || strings.TrimSpace(sizes[i]) != strconv.Itoa(c.MinBody()) {
			t.Errorf("%s: MIN_BODY of %v is not %d", tsFrame, c, c.MinBody())
		}
		if unsealed[c] == c.Info().Sealed {
			t.Errorf("%s: sealed(%v) is %v, the table says %v", tsFrame, c, !unsealed[c], c.Info().Sealed)
		}
	}
	if want := fmt.Sprintf("0x%02x", known+1); limit != want {
		t.Errorf("%s: CMD_LIMIT = %s, want %s", tsFrame, limit, want)
	}
}
