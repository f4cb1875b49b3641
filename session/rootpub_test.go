package session

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"os"
	"strings"
	"testing"
)

// TestRootPubDocVector reads the root.pub example of the protocol reference
// and checks that it is the handshake vectors' root key in the documented
// text form.
func TestRootPubDocVector(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "Root-Pub: vector-root" {
			continue
		}
		for sc.Scan() && strings.TrimSpace(sc.Text()) != "```" {
		}
		sc.Scan()
		line = sc.Text()
		break
	}
	if line == "" {
		t.Fatal("docs/protocol.md has no Root-Pub: vector-root block")
	}
	root := &SigningKey{ID: hsRootID, Private: ed25519.NewKeyFromSeed(hsInput("root-seed", 32))}
	k, err := ParseVerifyKey(line)
	if err != nil {
		t.Fatalf("ParseVerifyKey(%q): %v", line, err)
	}
	if k.ID != root.ID || !k.Public.Equal(root.Verify().Public) {
		t.Fatalf("the doc's root.pub %q is not the vector root", line)
	}
	if line != root.Verify().String() {
		t.Fatalf("the doc shows %q, the writer gives %q", line, root.Verify().String())
	}
	for _, bad := range []string{
		line + "=", strings.ToUpper(line[:8]) + "x" + line[8:], line[:8] + line[9:],
		line[:9] + "+" + line[10:], line[:len(line)-1],
	} {
		if _, err := ParseVerifyKey(bad); err == nil {
			t.Errorf("ParseVerifyKey(%q) accepted", bad)
		}
	}
}
