package node_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/nodetest"
	"github.com/myim/myim/session"
	"github.com/myim/myim/storage"
)

// TestLargeGroup sends one message to a 10,000-member group: every online
// member gets it pushed, every offline member gets it on fetch, and once
// all have acked it the store holds nothing for the group.
// MYIM_TEST_GROUP_MEMBERS overrides the size.
func TestLargeGroup(t *testing.T) {
	members, wave := 10000, 2000
	if v := os.Getenv("MYIM_TEST_GROUP_MEMBERS"); v != "" {
		members, _ = strconv.Atoi(v)
	}
	if testing.Short() || raceEnabled {
		members, wave = 1000, 500
	}
	n := nodetest.New(t, nodetest.Options{})
	st, id, _, ep := n.Store, n.Identity, n.Center, n.Endpoint
	srv := startServer(t, ep, engine.WithIdleTimeout(10*time.Minute))

	ctx := context.Background()
	ids := make([]uint64, members)
	// Sixteen writers at a time, so that the store's group commit shares
	// one fsync among them.
	parallel := func(n int, f func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					if err := f(i); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	parallel(members, func(i int) (err error) {
		ids[i], err = st.CreateUser(ctx, storage.User{Name: fmt.Sprintf("m%d", i), PassHash: "unused"})
		return err
	})
	group, err := st.CreateGroup(ctx, ids[0], "all hands")
	if err != nil {
		t.Fatal(err)
	}
	parallel(members-1, func(i int) error {
		_, err := st.JoinGroup(ctx, group, ids[i+1])
		return err
	})
	dev, _ := session.NewStaticKey()
	cfg := client.Config{Device: dev, AutoAck: true, DialTimeout: time.Minute}
	connect := func(users []uint64) []*client.Conn {
		conns := make([]*client.Conn, len(users))
		for i, u := range users {
			tok, err := session.IssueToken(id.TokenKey, session.TokenRequest{UserID: u, Audience: id.Audience,
				DeviceKey: dev.PublicKey().Bytes(), TTL: time.Hour}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if conns[i], err = client.Dial(ctx, cfg, srv.Addr().String(), id.Static.PublicKey().Bytes(), tok); err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
		}
		return conns
	}
	waitGroupMsg := func(c *client.Conn) {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		f, err := c.Recv(ctx, func(f client.Frame) bool { return f.Cmd == frame.CmdGroupMsg })
		if err != nil {
			t.Fatalf("user %d: %v", c.UserID(), err)
		}
		if m := frame.Msg(f.Body); m.To() != group || string(m.Content()) != "to everyone" {
			t.Fatalf("got %q for group %d", m.Content(), m.To())
		}
	}

	// The first wave is online when the message is sent.
	online := connect(ids[:wave])
	sender := online[0]
	start := time.Now()
	if err := sender.SendMsgCID(frame.CmdGroupMsg, group, frame.QoS1, 1, []byte("to everyone")); err != nil {
		t.Fatal(err)
	}
	for _, c := range online {
		waitGroupMsg(c)
	}
	t.Logf("%d-member group: %d online members had the message %v after the send", members, wave, time.Since(start))
	for _, c := range online {
		c.Close()
	}
	// The others come online in waves and fetch it.
	for lo := wave; lo < members; lo += wave {
		conns := connect(ids[lo:min(lo+wave, members)])
		for _, c := range conns {
			if _, err := c.Fetch(frame.FetchGroup, 0, 10); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			waitGroupMsg(c)
		}
		for _, c := range conns {
			c.Close()
		}
	}
	// Every member acked: the message is cleaned up.
	eventually(t, 60*time.Second, func() bool {
		n, err := st.CountGroupMsgs(ctx, group)
		return err == nil && n == 0
	})
}
