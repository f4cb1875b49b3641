// Command mochi runs the mochi-mqtt broker (github.com/mochi-mqtt/server/v2)
// for the benchmarks: one TCP listener, every client allowed, library
// defaults unless a flag says otherwise. The bench drives it as MQTT 3.1.1:
// each client subscribes at QoS 1 to its own topic u/<id> and publishes to
// the others'.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/myim/myim/benchmarks/internal/peer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5302", "listen address")
	queue := flag.Int("write-queue", 0, "per-client queue of pending writes (0: the library default, 8192)")
	flag.Parse()
	peer.CollectOnSignal()
	caps := mqtt.NewDefaultServerCapabilities()
	if *queue > 0 {
		caps.MaximumClientWritesPending = int32(*queue)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: log})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		fmt.Fprintln(os.Stderr, "mochi:", err)
		os.Exit(1)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		fmt.Fprintln(os.Stderr, "mochi:", err)
		os.Exit(1)
	}
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "mochi:", err)
		os.Exit(1)
	}
	fmt.Printf("mochi listening on %s\n", *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = s.Close()
}
