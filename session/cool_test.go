package session

import (
	"bytes"
	"testing"

	"github.com/myim/myim/frame"
)

// A cooled session drops its AES-GCM state and carries frames on as before
// in both directions, the nonces going on from where they were.
func TestCool(t *testing.T) {
	c, s := keyPair(t, nil)
	round := func(from, to *Keys, body string) {
		t.Helper()
		sealed, err := from.Seal(nil, frame.CmdMsg, frame.QoS1, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := to.Open(nil, frame.Frame(sealed))
		if err != nil || !bytes.Equal(got, []byte(body)) {
			t.Fatalf("open %q: %q, %v", body, got, err)
		}
	}
	round(c, s, "one")
	round(s, c, "two")
	c.Cool()
	s.Cool()
	if s.send.hot != nil || s.recv.hot != nil {
		t.Fatal("Cool kept the cipher state")
	}
	round(c, s, "three")
	round(s, c, "four")
	if s.recv.n != 2 || s.send.n != 2 {
		t.Fatalf("counters %d/%d after two frames each way, want 2/2", s.send.n, s.recv.n)
	}
}
