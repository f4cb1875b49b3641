package endpoint_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/internal/enginetest"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// startNode runs a center and an endpoint on a loopback reactor and
// returns it with a dialer of sessions for new users.
func startNode(t *testing.T) (*engine.Server, func(name string) *client.Conn) {
	t.Helper()
	n := nodetest.New(t, nodetest.Options{})
	st, id, _, ep := n.Store, n.Identity, n.Center, n.Endpoint
	srv := enginetest.StartServer(t, ep)
	dev, _ := session.NewStaticKey()
	return srv, func(name string) *client.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := st.CreateUser(ctx, storage.User{Name: name, PassHash: "unused"})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := session.IssueToken(id.TokenKey, session.TokenRequest{UserID: u, Audience: id.Audience,
			DeviceKey: dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, client.Config{Device: dev}, srv.Addr().String(), id.Static.PublicKey().Bytes(), tok)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// commandBody returns a body of c's fixed fields: a message from user to
// nobody, or a request whose reference is ref.
func commandBody(c frame.Cmd, user, ref uint64) []byte {
	body := make([]byte, c.MinBody())
	switch c.Ref() {
	case frame.RefCID:
		frame.AppendMsgHeader(body[:0], frame.MsgHeader{From: user, CID: ref})
	case frame.RefReq:
		binary.BigEndian.PutUint32(body, uint32(ref))
	}
	return body
}

// A client walks the command table on a session. Every command a client
// may not send, and a HANDSHAKE once the session is open, is answered
// "unexpected" and the session goes on; none that the table routes to the
// endpoint or the center is. A BYE ends the session, and a code the table
// does not define closes the connection as malformed.
func TestEndpointWalksCommandTable(t *testing.T) {
	srv, dial := startNode(t)
	c := dial("walker")
	var refused []string
	for i := 1; i < 256; i++ {
		cmd := frame.Cmd(i)
		switch {
		case !cmd.Known():
			continue
		case cmd == frame.CmdBye, cmd == frame.CmdRekey, cmd == frame.CmdPing:
			continue // below; the client's own keys; the reactor's
		case cmd.Route() == frame.RouteRefuse, cmd == frame.CmdHandshake:
			refused = append(refused, "unexpected "+cmd.String())
		}
		if err := c.Send(cmd, frame.QoS0, commandBody(cmd, c.UserID(), uint64(0x100+i))); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	if len(refused) == 0 {
		t.Fatal("the command table refuses nothing a client sends")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The refusals come in order from the endpoint; the PING after them
	// comes back once the endpoint has handled everything sent before it.
	var got []string
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for len(got) < len(refused) {
		f, err := c.Recv(ctx, func(f client.Frame) bool {
			return f.Cmd == frame.CmdError && strings.HasPrefix(string(frame.Error(f.Body).Text()), "unexpected")
		})
		if err != nil {
			t.Fatalf("refusals %q, want %q: %v", got, refused, err)
		}
		if e := frame.Error(f.Body); e.Code() != frame.ErrCodeBadRequest || e.Ref() != 0 {
			t.Errorf("%s: code %d ref %d", e.Text(), e.Code(), e.Ref())
		}
		got = append(got, string(frame.Error(f.Body).Text()))
	}
	if fmt.Sprint(got) != fmt.Sprint(refused) {
		t.Fatalf("refusals %q, want %q", got, refused)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("session ended after the refusals: %v", err)
	}

	bye := dial("leaver")
	if err := bye.Bye(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bye.Done():
	case <-ctx.Done():
		t.Fatal("BYE did not end the session")
	}

	// An unknown code never reaches the endpoint: the reactor closes the
	// connection on its envelope.
	for _, code := range []byte{0x00, byte(frame.CmdProfile) + 1, 0xff} {
		nc := enginetest.Dial(t, srv)
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write([]byte{0x03, code, 0x00}); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(nc)
		f, err := frame.Read(r, 0)
		if err != nil || f.Cmd() != frame.CmdError || frame.Error(f.Body()).Code() != frame.ErrCodeMalformed {
			t.Fatalf("command 0x%02x: answer %v %v, want ERROR malformed", code, f, err)
		}
		if _, err := frame.Read(r, 0); err == nil {
			t.Fatalf("command 0x%02x: connection still open", code)
		}
	}
}
