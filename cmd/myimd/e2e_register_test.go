package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/bytedance/sonic"
)

// Issue 11, attack 11: registration was open to anyone, unthrottled, and
// hashed on the login hasher. Now --registration closes it or asks for an
// admin's invite code, and one address gets --registration-rate
// registrations an hour, refused before anything is hashed.
func TestRegistrationModesAndRate(t *testing.T) {
	body := func(name, invite string) string {
		return fmt.Sprintf(`{"name":%q,"password":"password-%s","invite":%q}`, name, name, invite)
	}
	t.Run("closed", func(t *testing.T) {
		p := startMyimd(t, "--registration", "closed")
		if code, b := p.post(t, "/v1/users", "", body("eve", "")); code != http.StatusForbidden {
			t.Fatalf("closed registration answered %d %s", code, b)
		}
	})
	t.Run("invite", func(t *testing.T) {
		p := startMyimd(t, "--registration", "invite", "--admin-secret", testSecret)
		if code, b := p.post(t, "/v1/users", "", body("eve", "")); code != http.StatusForbidden {
			t.Fatalf("registration without a code answered %d %s", code, b)
		}
		if code, b := p.post(t, "/v1/users", "", body("eve", "made-up")); code != http.StatusForbidden {
			t.Fatalf("registration with a made-up code answered %d %s", code, b)
		}
		invite := func() string {
			code, b := p.call(t, "POST", "/v1/admin/invites", testSecret, "")
			var inv struct {
				Code string `json:"code"`
			}
			if code != http.StatusCreated || sonic.Unmarshal(b, &inv) != nil || inv.Code == "" {
				t.Fatalf("invite: %d %s", code, b)
			}
			return inv.Code
		}
		first := invite()
		if code, b := p.post(t, "/v1/users", "", body("eve", first)); code != http.StatusCreated {
			t.Fatalf("registration with a code answered %d %s", code, b)
		}
		if code, b := p.post(t, "/v1/users", "", body("mallory", first)); code != http.StatusForbidden {
			t.Fatalf("a used code answered %d %s", code, b)
		}
		// A code that fails to register someone (name taken) is not used up.
		second := invite()
		if code, b := p.post(t, "/v1/users", "", body("eve", second)); code != http.StatusConflict {
			t.Fatalf("a taken name answered %d %s", code, b)
		}
		if code, b := p.post(t, "/v1/users", "", body("frank", second)); code != http.StatusCreated {
			t.Fatalf("the code after a failed registration answered %d %s", code, b)
		}
	})
	t.Run("rate", func(t *testing.T) {
		p := startMyimd(t, "--registration-rate", "3")
		var created, limited int
		for i := 0; i < 20; i++ {
			code, b := p.post(t, "/v1/users", "", body(fmt.Sprintf("u%d", i), ""))
			switch code {
			case http.StatusCreated:
				created++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("registration %d: %d %s", i, code, b)
			}
		}
		t.Logf("20 registrations from one address: %d created, %d refused (429)", created, limited)
		if created != 3 || limited != 17 {
			t.Fatalf("%d created and %d refused, want 3 and 17", created, limited)
		}
	})
}
