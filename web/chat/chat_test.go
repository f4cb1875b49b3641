package chat

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestPageCarriesConfig(t *testing.T) {
	h := Handler(Config{Roots: "5eed0001:irJLJ3OTSl3vKBmkkyrdB6X8YfdQ3560NV8RsFYArHM", WebSocket: func() string { return ":5290</script>" }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/chat", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body, _ := io.ReadAll(rec.Body)
	m := regexp.MustCompile(`<script id="myim-config" type="application/json">([^<]*)</script>`).FindSubmatch(body)
	if m == nil {
		t.Fatal("no config element in the page")
	}
	var cfg struct{ Roots, WS string }
	if err := json.Unmarshal(m[1], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Roots != "5eed0001:irJLJ3OTSl3vKBmkkyrdB6X8YfdQ3560NV8RsFYArHM" || cfg.WS != ":5290</script>" {
		t.Fatalf("config %+v", cfg)
	}
	if strings.Contains(string(body), "__MYIM_CONFIG__") || strings.Contains(string(body), "__MYIM_SCRIPT__") {
		t.Fatal("a placeholder is left in the page")
	}
}
