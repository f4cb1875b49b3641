package main

import (
	"strings"

	"github.com/myim/myim/engine"
	"github.com/myim/myim/engine/ws"
)

// wsListener returns the handler and transport of the WebSocket listener:
// /login and /endpoint on one address, for the roles this process runs
// (nil, nil when it runs neither, or --ws-addr is empty).
func wsListener(cfg Config, login, endpoint engine.Handler) (engine.Handler, engine.Transport) {
	if cfg.WSAddr == "" {
		return nil, nil
	}
	var routes []ws.Route
	if login != nil {
		routes = append(routes, ws.Route{Path: "/login", Handler: login})
	}
	if endpoint != nil {
		routes = append(routes, ws.Route{Path: "/endpoint", Handler: endpoint})
	}
	if len(routes) == 0 {
		return nil, nil
	}
	mux := ws.NewMux(routes...)
	var origins []string
	for _, o := range strings.Split(cfg.WSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return mux, ws.New(ws.Config{Paths: mux.Paths(), Origins: origins, MaxMessage: cfg.MaxFrame + 4<<10})
}
