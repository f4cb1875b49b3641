// Command examplegw is the gateway of the engine's example (an upper-casing
// echo of MSG frames) as a program of its own. It exists to be measured:
// engine's TestReactorFootprint builds it and bounds its size, so that the
// reactor keeps linking only gnet and bytebufferpool. With an argument it
// exits after package initialisation, for GODEBUG=inittrace=1.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/frame"
)

type upper struct{}

func (upper) OnOpen(*engine.Conn) error                { return nil }
func (upper) OnClose(*engine.Conn, engine.CloseReason) {}
func (upper) OnFrame(c *engine.Conn, f frame.Frame) error {
	if err := frame.Check(f); err != nil || f.Cmd() != frame.CmdMsg {
		return engine.CloseWith(engine.ReasonMalformed, fmt.Errorf("want MSG"))
	}
	m := frame.Msg(f.Body())
	out := c.Out()
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

func main() {
	addr := "tcp://127.0.0.1:5222"
	if len(os.Args) > 1 {
		if os.Args[1] == "-init" {
			return
		}
		addr = os.Args[1]
	}
	srv := engine.New(upper{}, engine.WithAddr(addr))
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on", srv.Addr())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	<-ch
	_ = srv.Stop(context.Background())
}
