package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootFileMissing wants a missing --root file named as missing, not
// read as a malformed key.
func TestRootFileMissing(t *testing.T) {
	_, err := loadRoot(filepath.Join(t.TempDir(), "myim-data", "root.pub"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing root.pub: %v", err)
	}
	if _, err := loadRoot("not-a-key"); err == nil || strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a bad key given inline: %v", err)
	}
}

// TestIdleNoticesServerGone kills the server while the idle scenario holds
// its sessions: the run ends at once with an error instead of reporting
// the sessions held for the whole hold.
func TestIdleNoticesServerGone(t *testing.T) {
	s := startServer(t)
	cfg := s.config("idle", "gone")
	cfg.Conns, cfg.Hold = 10, 60*time.Second
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get("http://" + s.addrs["admin"] + "/v1/status")
			if err == nil {
				var st struct {
					Sessions int `json:"sessions"`
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if json.Unmarshal(b, &st) == nil && st.Sessions == cfg.Conns {
					_ = syscall.Kill(s.pid, syscall.SIGKILL)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "ended by the server") {
		t.Fatalf("idle run with its server killed: %v", err)
	}
	if took := time.Since(start); took >= cfg.Hold {
		t.Fatalf("the run went on for %v, the whole hold", took)
	}
}
