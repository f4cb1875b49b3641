package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigFormats reads the same settings from JSON, YAML and TOML files,
// comments included where the format has them.
func TestConfigFormats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"myimd.json": `{"log-format": "json", "max-frame": 1048576, "idle-timeout": "45s", "pprof": false, "role": "center"}`,
		"myimd.yaml": "# the operator's notes\nlog-format: json   # for the collector\nmax-frame: 1048576\nidle-timeout: 45s\npprof: false\nrole: center\n",
		"myimd.yml":  "log-format: json\nmax-frame: 1048576\nidle-timeout: 45s\npprof: false\nrole: center\n",
		"myimd.toml": "# the operator's notes\nlog-format = \"json\"\nmax-frame = 1048576 # bytes\nidle-timeout = \"45s\"\npprof = false\nrole = \"center\"\n",
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig([]string{"--config", path}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.LogFormat != "json" || cfg.MaxFrame != 1<<20 || cfg.IdleTimeout != 45*time.Second || cfg.Role != "center" {
			t.Errorf("%s: read %+v", name, cfg)
		}
	}
}

// TestConfigErrorsOneLine wants syntax errors of every format as one line
// that says where, and unknown keys named.
func TestConfigErrorsOneLine(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"bad.json":  "{\n  \"log-format\": \"json\",\n  \"max-frame\" 4096\n}\n",
		"bad.yaml":  "log-format: json\n  max-frame: [\n",
		"bad.toml":  "log-format = \"json\"\nmax-frame = = 4\n",
		"key.yaml":  "no-such-flag: 1\n",
		"nest.yaml": "role:\n  a: b\n",
	} {
		path := filepath.Join(dir, name)
		_ = os.WriteFile(path, []byte(body), 0o600)
		_, err := loadConfig([]string{"--config", path}, func(string) string { return "" }, io.Discard)
		if err == nil {
			t.Errorf("%s accepted", name)
			continue
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\n") || strings.Contains(msg, `\n`) {
			t.Errorf("%s: error not on one line: %q", name, msg)
		}
		if !strings.Contains(msg, path) {
			t.Errorf("%s: error does not name the file: %q", name, msg)
		}
	}
	_, err := loadConfig([]string{"--config", filepath.Join(dir, "bad.json")}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("JSON error without its line: %v", err)
	}
}

// TestExampleConfig loads the example config that deploy/ ships.
func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig([]string{"--config", "../../deploy/myimd.example.yaml"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminAddr != "127.0.0.1:5281" || cfg.ShutdownGrace != 30*time.Second || cfg.LogFormat != "json" {
		t.Fatalf("example config read as %+v", cfg)
	}
}
