package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
)

// A send that times out waiting for its answer may be sent again with the
// same CID: the server answers DUPLICATE with the first copy's id, and the
// recipient is pushed the message once.
func TestSendTimeoutThenResendShownOnce(t *testing.T) {
	r := startRig(t)
	r.addUser("ada")
	bo := r.addUser("bo")
	a := r.connect(r.cfg(), "ada")
	b := r.connect(r.cfg(), "bo") // no AutoAck: the first send gets no answer
	untilLive(t, a, b, bo)
	cid := a.NewCID()
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := a.SendWait(short, frame.CmdMsg, bo, cid, []byte("once"))
	if !errors.Is(err, client.ErrSendTimeout) || !client.Retryable(err) {
		t.Fatalf("unanswered send: %+v, %v, want a retryable ErrSendTimeout", got, err)
	}
	m := frame.Msg(recv(t, b, frame.CmdMsg).Body)
	ctx, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	ack, err := a.SendWait(ctx, frame.CmdMsg, bo, cid, []byte("once"))
	if err != nil || ack.Status != frame.AckDuplicate || ack.MID != m.MID() {
		t.Fatalf("resend: %+v, %v; want DUPLICATE of message %d", ack, err, m.MID())
	}
	if err := b.Ack(m.MID(), m.From()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SendMsg(bo, frame.QoS1, []byte("next")); err != nil {
		t.Fatal(err)
	}
	if got := string(frame.Msg(recv(t, b, frame.CmdMsg).Body).Content()); got != "next" {
		t.Fatalf("pushed %q after the resend, want next", got)
	}
}

// Session.Send returns a final refusal at once, as the *SendError of the
// attempt, instead of trying again.
func TestSessionSendReturnsFinalRefusal(t *testing.T) {
	r := startRig(t)
	r.addUser("eli")
	group, err := r.store.CreateGroup(context.Background(), r.addUser("fay"), "not eli's")
	if err != nil {
		t.Fatal(err)
	}
	s := r.runSession(r.cfg(), "eli")
	waitConn(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s.Send(ctx, frame.CmdGroupMsg, group, []byte("hi"))
	var se *client.ServerError
	if !errors.As(err, &se) || client.Retryable(err) || ctx.Err() != nil {
		t.Fatalf("send by a non-member: %v (ctx %v), want a final refusal before the deadline", err, ctx.Err())
	}
}

// A login the service turns away for a while (the account backs off after
// failed passwords) is a RETRY with a hint; Login waits the hint and tries
// again when Config.LoginRetry allows it.
func TestLoginWaitsRetryHint(t *testing.T) {
	r := startRig(t)
	r.addUser("gil")
	cfg := r.cfg()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var hint time.Duration
	for i := 0; i < 10; i++ {
		_, err := client.Login(ctx, cfg, r.loginAddr(), "gil", []byte("wrong"))
		var ok bool
		if hint, ok = client.RetryHint(err); ok {
			break
		}
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != frame.ErrCodeAuthFailed {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if hint <= 0 {
		t.Fatal("no RETRY with a hint after ten wrong passwords")
	}
	cfg.LoginRetry = time.Minute
	res, err := client.Login(ctx, cfg, r.loginAddr(), "gil", []byte("pw-gil"))
	if err != nil {
		t.Fatalf("login after the hint (%v): %v", hint, err)
	}
	if res.Token == "" || len(res.Servers) == 0 {
		t.Fatalf("login answer %+v", res.LoginReply)
	}
}

// untilLive sends probes from a to b (user to), which b acks, until one is
// acked DELIVERED: a new session takes what the store holds first, and
// until its drain has run, messages to it are stored (answered STORED)
// and pushed from the store.
func untilLive(t testing.TB, a, b *client.Conn, to uint64) {
	t.Helper()
	for i := 0; i < 20; i++ {
		if _, err := a.SendMsg(to, frame.QoS1, []byte("probe")); err != nil {
			t.Fatal(err)
		}
		m := frame.Msg(recv(t, b, frame.CmdMsg).Body)
		if err := b.Ack(m.MID(), m.From()); err != nil {
			t.Fatal(err)
		}
		if frame.Ack(recv(t, a, frame.CmdAck).Body).Status() == frame.AckDelivered {
			return
		}
	}
	t.Fatal("the receiver's session never went live")
}
