package ws_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/ws"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/internal/wswire"
)

// A WebSocket listener for a handler: the engine answers PING itself, over
// WebSocket as over TCP.
func Example() {
	t := ws.New(ws.Config{Paths: []string{"/endpoint"}, Origins: []string{"https://chat.example.com"}})
	s := engine.New(echo{}, engine.WithAddr("127.0.0.1:0"), engine.WithTransport(t))
	if err := s.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := wswire.Dial(ctx, "ws://"+s.Addr().String()+"/endpoint", wswire.DialConfig{Origin: "https://chat.example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, _ = c.Write(frame.Ping) // one binary message, one frame
	pong := make([]byte, len(frame.Pong))
	_, _ = io.ReadFull(c, pong)
	fmt.Printf("% x\n", pong)
	// Output: 03 02 00
}
