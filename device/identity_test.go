package device

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func testIdentity(t testing.TB) Identity {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{AdminURL: "https://gate.example.com:8443/", Account: "10042", DeviceID: NewID(), Key: priv}
}

func TestIdentityFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id")
	if _, err := Reserve(path, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Reserve(path, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second Reserve: %v, want ErrExists", err)
	}
	id := testIdentity(t)
	if err := id.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	got, err := ReadIdentity(path)
	if err != nil || got.AdminURL != id.AdminURL || got.Account != id.Account || got.DeviceID != id.DeviceID || !got.Key.Equal(id.Key) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// With overwrite, Reserve keeps the file and undo leaves it.
	undo2, err := Reserve(path, true)
	if err != nil {
		t.Fatal(err)
	}
	undo2()
	if _, err := ReadIdentity(path); err != nil {
		t.Fatalf("after an undone overwrite: %v", err)
	}
}

var badIdentities = []string{
	``, `{}`, `[]`, `{"version":2}`,
	`{"version":1,"admin_url":"http://gate/","account":"10042","device_id":"abcdefghijklmnop","private_key":""}`,
	`{"version":1,"admin_url":"https://gate/","account":"-x","device_id":"abcdefghijklmnop","private_key":""}`,
	`{"version":1,"admin_url":"https://gate/","account":"10042","device_id":"BAD","private_key":""}`,
	`{"version":1,"admin_url":"https://gate/","account":"10042","device_id":"abcdefghijklmnop","private_key":"AAAA"}`,
}

func TestParseIdentityRefuses(t *testing.T) {
	for _, b := range badIdentities {
		if _, err := ParseIdentity([]byte(b)); err == nil {
			t.Errorf("%s: accepted", b)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	for _, b := range badIdentities {
		f.Add([]byte(b))
	}
	path := filepath.Join(f.TempDir(), "id")
	testIdentity(f).Write(path)
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseIdentity(b)
		if err != nil {
			return
		}
		if len(id.Key) != ed25519.PrivateKeySize || id.Account == "" || id.DeviceID == "" {
			t.Fatalf("accepted an incomplete identity: %+v", id)
		}
	})
}
