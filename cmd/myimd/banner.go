package main

import (
	"fmt"
	"io"
	"log/slog"
)

// banner is what myimd prints on stdout as it starts: the version, each
// listener's address and the data directory. In text it is the lines an
// operator reads (and scripts parse: "  NAME listening on ADDR"); with
// --log-format json each line is a JSON object, as the logs are.
type banner struct {
	w    io.Writer
	json *slog.Logger // nil: text
}

func newBanner(cfg Config, w io.Writer) *banner {
	b := &banner{w: w}
	if cfg.LogFormat == "json" {
		b.json = slog.New(slog.NewJSONHandler(w, nil))
	}
	return b
}

func (b *banner) started(cfg Config) {
	if b.json != nil {
		b.json.Info("myimd started", "version", version, "node", cfg.ServerID, "role", cfg.Role)
		return
	}
	fmt.Fprintf(b.w, "myimd %s node %d started (role %s)\n", version, cfg.ServerID, cfg.Role)
}

// listening reports a bound listener; note, when set, is shown after it.
func (b *banner) listening(name, addr, note string) {
	if b.json != nil {
		if note != "" {
			b.json.Info("listening", "listener", name, "addr", addr, "note", note)
		} else {
			b.json.Info("listening", "listener", name, "addr", addr)
		}
		return
	}
	if note != "" {
		fmt.Fprintf(b.w, "  %-9s listening on %s (%s)\n", name, addr, note)
		return
	}
	fmt.Fprintf(b.w, "  %-9s listening on %s\n", name, addr)
}

// rootKey reports the cluster's root verify key, which clients pin.
func (b *banner) rootKey(key, file string) {
	if b.json != nil {
		b.json.Info("root key", "key", key, "file", file)
		return
	}
	fmt.Fprintf(b.w, "  root key  %s (clients pin it; also in %s)\n", key, file)
}

// data reports the data directory and the store kind; it is the last line.
func (b *banner) data(dir, kind string) {
	if b.json != nil {
		b.json.Info("data", "dir", dir, "store", kind)
		return
	}
	fmt.Fprintf(b.w, "  data      %s (%s)\n", dir, kind)
}
