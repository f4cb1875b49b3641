package center

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/myim/myim/frame"
	"github.com/myim/myim/storage"
)

// TestRefusalTable checks each row of the one mapping from errors to
// answers: the error wrapped as the store and the engine wrap it maps to
// the row's ERROR code and HTTP status; only unavailability says retry;
// and docs/protocol.md lists every row. The server-side tests per row are
// in cmd/myimd (TestInvalidRequestsAreNotRetry: invalid, not found, exists,
// not a member, not a friend; TestFileServer: over quota;
// TestStoreDownRefusesQoS1: unavailable).
func TestRefusalTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "#### Errors from the store")
	section, _, _ = strings.Cut(section, "\n#")
	for _, r := range refusals {
		wrapped := fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", r.err))
		code, status, text := refusalOf(wrapped)
		if code != r.code || status != r.status {
			t.Errorf("%v: code %d HTTP %d, want %d %d", r.err, code, status, r.code, r.status)
		}
		if retry := code == frame.ErrCodeRetry; retry != r.retry || strings.Contains(text, "retry") != r.retry {
			t.Errorf("%v: answered %d %q; retry should be %v", r.err, code, text, r.retry)
		}
		if want := fmt.Sprintf("| %d ", r.code); !strings.Contains(section, want) ||
			!strings.Contains(section, fmt.Sprintf("| %d  |", r.status)) {
			t.Errorf("docs/protocol.md's store error table has no row for ERROR %d / HTTP %d", r.code, r.status)
		}
	}
	// The store's own error text reaches the client for invalid input.
	if _, _, text := refusalOf(fmt.Errorf("%w: empty group name", storage.ErrInvalid)); text != "invalid argument: empty group name" {
		t.Errorf("invalid argument text %q", text)
	}
	// A closed store and a passed deadline are unavailability; a
	// cancelled request and anything unknown are not retried.
	for err, want := range map[error]uint16{
		storage.ErrClosed:          frame.ErrCodeRetry,
		context.DeadlineExceeded:   frame.ErrCodeRetry,
		errors.New("disk on fire"): frame.ErrCodeInternal,
		context.Canceled:           frame.ErrCodeInternal,
	} {
		if code, _, _ := refusalOf(err); code != want {
			t.Errorf("%v: code %d, want %d", err, code, want)
		}
	}
	if _, status, _ := refusalOf(errors.New("x")); status != http.StatusInternalServerError {
		t.Errorf("unknown error: HTTP %d", status)
	}
}
