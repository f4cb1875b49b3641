package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
)

// upper is a gateway handler: it answers every MSG with the same message,
// its content upper-cased. The engine answers PING, enforces limits and
// closes malformed connections by itself.
type upper struct{}

func (upper) OnOpen(*engine.Conn) error                { return nil }
func (upper) OnClose(*engine.Conn, engine.CloseReason) {}
func (upper) OnFrame(c *engine.Conn, f frame.Frame) error {
	if err := frame.Check(f); err != nil || f.Cmd() != frame.CmdMsg {
		return engine.CloseWith(engine.ReasonMalformed, fmt.Errorf("want MSG"))
	}
	m := frame.Msg(f.Body())
	out := c.Out() // encode straight into this loop iteration's write batch
	out.B, _ = frame.AppendHeader(out.B, frame.CmdMsg, f.QoS(), len(m))
	out.B = frame.AppendMsgHeader(out.B, m.Header())
	for _, b := range m.Content() {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		out.B = append(out.B, b)
	}
	return nil
}

// Embedding the engine in a gateway: start, handle frames, stop.
func Example() {
	srv := engine.New(upper{}, engine.WithAddr("tcp://127.0.0.1:0"), engine.WithLoops(1),
		engine.WithIdleTimeout(time.Minute))
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Stop(context.Background())

	c, _ := net.Dial("tcp", srv.Addr().String())
	defer c.Close()
	req, _ := frame.AppendMsg(nil, frame.CmdMsg, frame.QoS0, frame.MsgHeader{From: 1, To: 2}, []byte("hello"))
	c.Write(req)
	buf := make([]byte, len(req))
	io.ReadFull(c, buf)
	f, _, _ := frame.Decode(buf, 0)
	fmt.Printf("%s\n", frame.Msg(f.Body()).Content())
	// Output: HELLO
}
