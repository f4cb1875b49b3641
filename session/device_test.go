package session

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

func TestLoadOrCreateDeviceKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")
	k1 := must(LoadOrCreateDeviceKey(path))(t)
	if runtime.GOOS != "windows" {
		st := must(os.Stat(path))(t)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", st.Mode().Perm())
		}
	}
	k2 := must(LoadOrCreateDeviceKey(path))(t)
	if !k1.Equal(k2) {
		t.Fatal("second call made a new key")
	}
	other := must(LoadOrCreateDeviceKey(filepath.Join(t.TempDir(), "device.key")))(t)
	if k1.Equal(other) {
		t.Fatal("two devices share a key")
	}
	if matches := must(filepath.Glob(filepath.Join(filepath.Dir(path), ".key-*")))(t); len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

func TestLoadOrCreateDeviceKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateDeviceKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k.Bytes()
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("racing creators got different keys")
		}
	}
}

func TestKeyFileRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix permissions")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "device.key")
	must(LoadOrCreateDeviceKey(path))(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDeviceKey(path); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("world-readable: %v", err)
	}
	junk := filepath.Join(dir, "junk.key")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDeviceKey(junk); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("junk: %v", err)
	}
	// An Ed25519 key where an X25519 key belongs.
	sk := filepath.Join(dir, "root.key")
	if err := SaveSigningKey(sk, must(NewSigningKey())(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDeviceKey(sk); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("ed25519 file: %v", err)
	}
}

func TestSigningKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "root.key")
	k := must(NewSigningKey())(t)
	if err := SaveSigningKey(path, k); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if st := must(os.Stat(path))(t); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
	}
	got := must(LoadSigningKey(path))(t)
	if got.ID != k.ID || !got.Private.Equal(k.Private) {
		t.Fatal("loaded key differs")
	}
	if err := SaveSigningKey(path, must(NewSigningKey())(t)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	if again := must(LoadSigningKey(path))(t); !again.Private.Equal(k.Private) {
		t.Fatal("root overwritten")
	}
	dev := filepath.Join(dir, "device.key")
	must(LoadOrCreateDeviceKey(dev))(t)
	if _, err := LoadSigningKey(dev); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("x25519 file: %v", err)
	}
}

func TestVerifyKeyText(t *testing.T) {
	k := must(NewSigningKey())(t).Verify()
	got := must(ParseVerifyKey(" " + k.String() + "\n"))(t)
	if got.ID != k.ID || !got.Public.Equal(k.Public) {
		t.Fatal("round trip differs")
	}
	for _, s := range []string{"", "x", "0102:AAAA", "zzzzzzzz:" + k.String()[9:], k.String()[:20]} {
		if _, err := ParseVerifyKey(s); !errors.Is(err, ErrVerifyKey) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestFingerprintAndHash(t *testing.T) {
	a := Fingerprint("machine-1", "app-salt")
	if len(a) != 64 || a != Fingerprint("machine-1", "app-salt") {
		t.Fatalf("fingerprint %q not stable hex SHA-256", a)
	}
	if a == Fingerprint("machine-2", "app-salt") || a == Fingerprint("machine-1", "other-app") {
		t.Fatal("fingerprint ignores an input")
	}
	pub := bytes.Repeat([]byte{9}, 32)
	if DeviceKeyHash(pub) != sha256.Sum256(pub) {
		t.Fatal("DeviceKeyHash is not SHA-256")
	}
}

func TestPayloads(t *testing.T) {
	r := &LoginRequest{Name: "bob", Password: []byte("pw"), Fingerprint: "fp", DeviceName: "phone"}
	enc := must(r.AppendBinary(nil))(t)
	got := must(ParseLoginRequest(enc))(t)
	if got.Name != "bob" || string(got.Password) != "pw" || got.Fingerprint != "fp" || got.DeviceName != "phone" {
		t.Fatalf("round trip: %+v", got)
	}
	enc[len(enc)-1] = 'X'
	if string(got.Password) != "pw" {
		t.Fatal("parsed request aliases its input")
	}
	bad := [][]byte{nil, {2}, {1}, {1, 0, 3, 'b'}, append(must(r.AppendBinary(nil))(t), 0), must((&LoginRequest{Name: "x"}).AppendBinary(nil))(t)[:3]}
	for _, b := range bad {
		if _, err := ParseLoginRequest(b); !errors.Is(err, ErrPayload) {
			t.Errorf("%x: %v", b, err)
		}
	}
	for _, r := range []*LoginRequest{{}, {Name: string(make([]byte, MaxUserName+1))}, {Name: "a", Password: make([]byte, MaxPassword+1)}, {Name: "\xff"}} {
		if _, err := r.AppendBinary(nil); !errors.Is(err, ErrPayload) {
			t.Errorf("%+v encoded: %v", r, err)
		}
	}
	// The largest request still fits the default handshake limit.
	big := &LoginRequest{Name: string(bytes.Repeat([]byte{'n'}, MaxUserName)), Password: make([]byte, MaxPassword),
		Fingerprint: string(bytes.Repeat([]byte{'f'}, MaxFingerprint)), DeviceName: string(bytes.Repeat([]byte{'d'}, MaxDeviceName))}
	if n := len(must(big.AppendBinary(nil))(t)) + overheadXX[2]; n > defaultMaxHandshakeMessage {
		t.Fatalf("largest login message %d bytes > %d", n, defaultMaxHandshakeMessage)
	}
	if _, err := ParseAccepted([]byte{1, 2}); !errors.Is(err, ErrPayload) {
		t.Fatal("short accepted record parsed")
	}
}
