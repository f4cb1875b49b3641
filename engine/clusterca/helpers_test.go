package clusterca_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/myim/myim/engine/clusterca"
)

func newToken(t testing.TB, caDir string, spec clusterca.JoinTokenSpec) string {
	t.Helper()
	token, _, err := clusterca.NewJoinToken(caDir, spec)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// startJoinService serves the CA holder's join endpoint over HTTPS and
// returns its base URL.
func startJoinService(t testing.TB, caDir string) string {
	t.Helper()
	return startJoinServiceWith(t, caDir, nil)
}

// startJoinServiceWith also serves the identity service with id's keys.
func startJoinServiceWith(t testing.TB, caDir string, id *clusterca.Identity) string {
	t.Helper()
	svc, err := clusterca.JoinHandler(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := svc.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+clusterca.JoinPath, svc)
	mux.HandleFunc("GET "+clusterca.DenyPath, svc.ServeDenied)
	if id != nil {
		mux.Handle(clusterca.IdentityPath, clusterca.IdentityHandler(id, svc, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are expected
	go hs.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { hs.Close() })
	return "https://" + ln.Addr().String()
}
