package endpoint_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// Sessions that went quiet drop their cipher state after two cooling
// rounds and carry messages on both ways afterwards.
func TestCooledSessionsCarryOn(t *testing.T) {
	n := nodetest.New(t, nodetest.Options{})
	st, id, _, ep := n.Store, n.Identity, n.Center, n.Endpoint
	srv := engine.New(ep, engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(2))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, _ := session.NewStaticKey()
	var conns []*client.Conn
	for u := uint64(1); u <= 2; u++ {
		if _, err := st.CreateUser(ctx, storage.User{Name: fmt.Sprintf("u%d", u), PassHash: "unused"}); err != nil {
			t.Fatal(err)
		}
		tok, err := session.IssueToken(id.TokenKey, session.TokenRequest{UserID: u, Audience: id.Audience,
			DeviceKey: dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, client.Config{Device: dev, AutoAck: true}, srv.Addr().String(), id.Static.PublicKey().Bytes(), tok)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			for range c.Frames() {
			}
		}()
		conns = append(conns, c)
	}
	a, b := conns[0], conns[1]
	for round := 0; round < 3; round++ {
		for _, pair := range [][2]*client.Conn{{a, b}, {b, a}} {
			if _, err := pair[0].SendWait(ctx, frame.CmdMsg, pair[1].UserID(), 0, []byte("after cooling")); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		ep.CoolRound() // warm: marked
		ep.CoolRound() // quiet since: cooled
		time.Sleep(50 * time.Millisecond)
	}
}
