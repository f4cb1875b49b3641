package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

// A device pinned to another root refuses the login service's certificate
// before sending the password, and the endpoint's before its token.
func TestWrongPinnedRootRefused(t *testing.T) {
	r := startRig(t)
	r.addUser("ivy")
	other, err := session.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad := r.cfg()
	bad.Roots = []session.VerifyKey{other.Verify()}
	if _, err := client.Login(ctx, bad, r.loginAddr(), "ivy", []byte("pw-ivy")); !errors.Is(err, session.ErrCertUnknownRoot) {
		t.Fatalf("login pinned to another root: %v, want ErrCertUnknownRoot", err)
	}
	good := r.cfg()
	res, err := client.Login(ctx, good, r.loginAddr(), "ivy", []byte("pw-ivy"))
	if err != nil {
		t.Fatal(err)
	}
	bad.Device = good.Device
	if _, err := client.Connect(ctx, bad, res, res.Servers[0]); !errors.Is(err, session.ErrCertUnknownRoot) {
		t.Fatalf("connect pinned to another root: %v, want ErrCertUnknownRoot", err)
	}
	// A server list whose key is not the one the certificate names.
	srv := res.Servers[0]
	srv.Key = newDevice(t).PublicKey().Bytes()
	if _, err := client.Connect(ctx, good, res, srv); !errors.Is(err, session.ErrCertStaticKey) {
		t.Fatalf("connect to a key the certificate does not name: %v, want ErrCertStaticKey", err)
	}
	c, err := client.Connect(ctx, good, res, res.Servers[0])
	if err != nil {
		t.Fatalf("connect pinned to the right root: %v", err)
	}
	c.Close()
}

// A wrong password is a *ServerError with the auth-failed code, and a
// Session gives up on it at once instead of retrying.
func TestWrongPasswordIsFinal(t *testing.T) {
	r := startRig(t)
	r.addUser("jo")
	cfg := r.cfg()
	_, err := client.Login(context.Background(), cfg, r.loginAddr(), "jo", []byte("wrong"))
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != frame.ErrCodeAuthFailed {
		t.Fatalf("wrong password: %v, want a ServerError with code %d", err, frame.ErrCodeAuthFailed)
	}
	s := client.NewSession(cfg, r.loginAddr(), "jo", []byte("wrong"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Run(ctx); !errors.As(err, &se) || se.Code != frame.ErrCodeAuthFailed {
		t.Fatalf("session with a wrong password ended with %v", err)
	}
}

// The errors of sending: a refusal is a final *SendError carrying the
// server's error; a send on an ended connection is ErrNotAcked (retryable)
// or ErrClosed, and Recv says the connection closed.
func TestSendErrorsTyped(t *testing.T) {
	r := startRig(t)
	kai := r.addUser("kai")
	group, err := r.store.CreateGroup(context.Background(), r.addUser("lea"), "not kai's")
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg()
	cfg.AutoAck = true // its note to itself is acked DELIVERED
	c := r.connect(cfg, "kai")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = c.SendWait(ctx, frame.CmdGroupMsg, group, 0, []byte("hi"))
	var sendErr *client.SendError
	var se *client.ServerError
	if !errors.As(err, &sendErr) || !errors.As(err, &se) || client.Retryable(err) {
		t.Fatalf("group send by a non-member: %v, want a final SendError with the server's error", err)
	}
	if a, err := c.SendWait(ctx, frame.CmdMsg, kai, 0, []byte("note to self")); err != nil || a.MID == 0 {
		t.Fatalf("send to self: %+v, %v", a, err)
	}
	c.Close()
	<-c.Done()
	if _, err := c.SendWait(ctx, frame.CmdMsg, kai, 0, []byte("late")); !errors.Is(err, client.ErrNotAcked) || !client.Retryable(err) {
		t.Fatalf("SendWait on a closed connection: %v, want a retryable ErrNotAcked", err)
	}
	if err := c.Send(frame.CmdPong, frame.QoS0, nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send on a closed connection: %v, want ErrClosed", err)
	}
	if _, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == frame.CmdNotice }); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Recv on a closed connection: %v, want ErrClosed", err)
	}
}
