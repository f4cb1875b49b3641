package node_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/clusterca"
	"github.com/myim/myim/engine/endpoint"
	"github.com/myim/myim/engine/im"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/testenv"
	"github.com/myim/myim/route/redis"
	"github.com/myim/myim/session"
)

// ikFirst makes an IK first message for user's token on lc's device key.
func ikFirst(t *testing.T, lc *linkCluster, user uint64) (*session.Handshake, []byte) {
	t.Helper()
	tok, err := session.IssueToken(lc.id.TokenKey, session.TokenRequest{UserID: user, Audience: lc.id.Audience,
		DeviceKey: lc.dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := session.NewEndpointClient(nil, lc.dev, lc.id.Static.PublicKey().Bytes(), tok)
	if err != nil {
		t.Fatal(err)
	}
	msg1, err := hs.WriteFrame(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return hs, msg1
}

// sendFirst writes a first message on a new connection and returns the
// connection and the server's answer frame.
func sendFirst(t *testing.T, srv *engine.Server, msg1 []byte) (net.Conn, *bufio.Reader, frame.Frame) {
	t.Helper()
	nc := dial(t, srv)
	if _, err := nc.Write(msg1); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	f, err := frame.Read(r, frame.MaxEncodable)
	if err != nil {
		t.Fatalf("no answer to the first message: %v", err)
	}
	return nc, r, f
}

// TestIKReplayAndPhantomSessions performs the IK attacks against a real
// endpoint listener. A first message whose answer the sender cannot use (it
// was intercepted, or is a recording) makes no session: no presence, no
// messages pushed to it, PINGs or not. A recorded first message replayed
// after its owner left is refused before any crypto runs.
func TestIKReplayAndPhantomSessions(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := endpoint.New(endpoint.Config{ID: 5, Identity: lc.id, Center: lc.ctr,
		HandshakeTimeout: 5 * time.Second})
	srv := startServer(t, ep)
	a, b := lc.user(t, "a"), lc.user(t, "b")
	le := &linkedEndpoint{ep: ep, srv: srv}
	cb := lc.dial(t, le, b)
	if ep.Sessions() != 1 {
		t.Fatalf("sessions %d after b connected, want 1", ep.Sessions())
	}

	// The attacker holds a's first message, which never reached the
	// server: the server answers it, but the attacker has no keys, and
	// keeps the connection open with PINGs.
	_, stolen := ikFirst(t, lc, a)
	phantom, pr, answer := sendFirst(t, srv, stolen)
	if answer.Cmd() != frame.CmdHandshake {
		t.Fatalf("answer %v, want HANDSHAKE", answer.Cmd())
	}
	for range 3 {
		if _, err := phantom.Write(frame.Ping); err != nil {
			t.Fatal(err)
		}
		if f, err := frame.Read(pr, frame.MaxEncodable); err != nil || f.Cmd() != frame.CmdPong {
			t.Fatalf("PING on the phantom session: %v %v", f, err)
		}
	}
	if n := ep.Sessions(); n != 1 {
		t.Fatalf("sessions %d with a phantom, want 1 (b only)", n)
	}
	// A message for a goes to the offline store, not to the phantom.
	cid, err := cb.SendMsg(a, frame.QoS1, []byte("for a"))
	if err != nil {
		t.Fatal(err)
	}
	ack := frame.Ack(recvCmd(t, cb, frame.CmdAck, func(m []byte) bool { return frame.Ack(m).CID() == cid }))
	if ack.Status() != frame.AckStored {
		t.Fatalf("message to a: ack status %d, want stored (%d)", ack.Status(), frame.AckStored)
	}
	// PINGs do not keep it: it is closed at the handshake deadline.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, err := phantom.Write(frame.Ping); err != nil {
				return
			}
			_ = phantom.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := frame.Read(pr, frame.MaxEncodable); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("a phantom session kept alive by PINGs past the handshake deadline")
	}

	// a connects for real, proves its keys, and leaves; the recording of
	// its first message is then replayed, and so is the stolen one.
	hs, msg1 := ikFirst(t, lc, a)
	nc, _, answer := sendFirst(t, srv, msg1)
	_, keys, err := hs.ReadAccepted(answer)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := keys.Seal(nil, frame.CmdPong, frame.QoS0, nil)
	if _, err := nc.Write(sealed); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return ep.Sessions() == 2 })
	nc.Close()
	eventually(t, 10*time.Second, func() bool { return ep.Sessions() == 1 })
	for name, m := range map[string][]byte{"recorded": msg1, "stolen": stolen} {
		replayed := ep.Handshakes().Failed[im.HandshakeReplayed].Load()
		_, _, answer = sendFirst(t, srv, m)
		if answer.Cmd() != frame.CmdError || !strings.Contains(string(frame.Error(answer.Body()).Text()), "replayed") {
			t.Fatalf("%s first message replayed: answer %v %q, want ERROR replayed", name, answer.Cmd(), answer.Body())
		}
		if ep.Handshakes().Failed[im.HandshakeReplayed].Load() != replayed+1 {
			t.Fatalf("%s replay not counted", name)
		}
	}
	if ep.Sessions() != 1 {
		t.Fatalf("sessions %d after the replays, want 1", ep.Sessions())
	}
}

// TestHandshakeFloodLimited floods a real endpoint listener from one
// address with forged first messages: past the address's burst, each is
// refused with ERROR retry before any crypto runs, and the rejections are
// counted; a client from the same address gets in again once its budget
// has refilled.
func TestHandshakeFloodLimited(t *testing.T) {
	lc := startLinkCenter(t, nil)
	ep := endpoint.New(endpoint.Config{ID: 5, Identity: lc.id, Center: lc.ctr,
		HandshakeRate: 5, HandshakeBurst: 10})
	srv := startServer(t, ep)
	limited, start := 0, time.Now()
	for range 40 {
		junk := make([]byte, 96)
		_, _ = rand.Read(junk)
		forged, _ := frame.Append(nil, frame.CmdHandshake, frame.QoS0, junk)
		_, _, answer := sendFirst(t, srv, forged)
		if answer.Cmd() != frame.CmdError {
			t.Fatalf("answer %v to a forged first message", answer.Cmd())
		}
		if e := frame.Error(answer.Body()); e.Code() == frame.ErrCodeRetry {
			limited++
		}
	}
	// The budget: the burst, plus what refilled while the flood ran.
	budget := 10 + int(time.Since(start).Seconds()*5) + 1
	crypto := ep.Handshakes().Failed[im.HandshakeCrypto].Load()
	if int(crypto) > budget || limited != 40-int(crypto) || ep.Handshakes().Failed[im.HandshakeRateLimited].Load() != uint64(limited) {
		t.Fatalf("%d of 40 refused for the rate, %d reached the crypto, budget %d", limited, crypto, budget)
	}
	if budget < 40 && limited == 0 {
		t.Fatal("nothing was refused")
	}
	a := lc.user(t, "a")
	eventually(t, 10*time.Second, func() bool {
		_, _, answer := sendFirst(t, srv, func() []byte { _, m := ikFirst(t, lc, a); return m }())
		return answer.Cmd() == frame.CmdHandshake
	})
}

// TestRevocationSharedAcrossEndpoints revokes a token on one endpoint's
// list and uses it on another endpoint sharing the cluster's backend (the
// store, then Redis): the other closes the token's live session and
// refuses its handshake within a sync.
func TestRevocationSharedAcrossEndpoints(t *testing.T) {
	for _, backend := range []string{"store", "redis"} {
		t.Run(backend, func(t *testing.T) {
			lc := startLinkCenter(t, nil)
			var shared clusterca.RevocationBackend = clusterca.StoreRevocations(lc.st)
			if backend == "redis" {
				addr := testenv.RedisAddr(t)
				r, err := redis.New(redis.Options{Addr: addr, Prefix: testenv.RedisPrefix(t, addr)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				shared = r
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			listA, listB := clusterca.NewRevocationList(shared, nil), clusterca.NewRevocationList(shared, nil)
			go listB.Run(ctx, 100*time.Millisecond)
			epA := endpoint.New(endpoint.Config{ID: 5, Identity: lc.id, Center: lc.ctr, Revocations: listA})
			epB := endpoint.New(endpoint.Config{ID: 6, Identity: lc.id, Center: lc.ctr, Revocations: listB})
			srvB := startServer(t, epB)
			_ = startServer(t, epA)
			u := lc.user(t, "u")
			tok, err := session.IssueToken(lc.id.TokenKey, session.TokenRequest{UserID: u, Audience: lc.id.Audience,
				DeviceKey: lc.dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			claims, err := session.VerifyToken(lc.id.TokenKeys(), tok, lc.id.Audience, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cfg := client.Config{Device: lc.dev}
			live, err := client.Dial(context.Background(), cfg, srvB.Addr().String(), lc.id.Static.PublicKey().Bytes(), tok)
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			if err := listA.Revoke(context.Background(), claims.SessionID, claims.ExpiresAt); err != nil {
				t.Fatal(err)
			}
			epA.Revoke(claims.SessionID, claims.ExpiresAt)
			select {
			case <-live.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the revoked token's session on the other endpoint is still open")
			}
			_, err = client.Dial(context.Background(), cfg, srvB.Addr().String(), lc.id.Static.PublicKey().Bytes(), tok)
			var se *client.ServerError
			if !errors.As(err, &se) || se.Text != "token revoked" {
				t.Fatalf("the other endpoint: %v, want token revoked", err)
			}
			// A list made later, as after a restart, reads it too.
			late := clusterca.NewRevocationList(shared, nil)
			if err := late.Sync(context.Background()); err != nil || !late.Has(claims.SessionID) {
				t.Fatalf("a fresh list: has %v, %v", late.Has(claims.SessionID), err)
			}
		})
	}
}
