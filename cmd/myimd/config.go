package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// Config is myimd's single source of truth: every option is a field here,
// declared once in options() with its flag name, environment variable,
// default and help text; flags, environment and the config file all fill it.
// Precedence: defaults < config file < environment < flags.
type Config struct {
	Role         string
	EndpointAddr string
	LoginAddr    string
	HTTPAddr     string
	CenterAddr   string
	DataDir      string
	MySQLDSN     string
	RedisAddr    string
	LogFormat    string
	LogLevel     string
	ConfigFile   string

	Loops             int
	MaxFrame          int
	MaxOutbound       int
	MaxConns          int
	IdleTimeout       time.Duration
	FirstFrameTimeout time.Duration
	HandshakeTimeout  time.Duration
	MaxSession        time.Duration
	HandshakeRate     float64
	HandshakeBurst    int
	ServerID          uint

	// Cluster links: see docs/operations.md.
	CenterLink    string // endpoint: the center's link address
	Failback      time.Duration
	RouteRetry    time.Duration
	RouteTTL      time.Duration
	Join          string // a join token from `myimd cluster token` (MYIM_JOIN)
	JoinFile      string // a file holding the join token
	JoinURL       string // the first node's join listener, https://host:port
	JoinAddr      string // first node: where it serves joins
	LinkPlaintext bool   // links without TLS (loopback and private networks only)
	LinkSecret    string // shared secret that authenticates plain-text links
	AdvertiseAddr string // endpoint: the address clients dial (default: the endpoint listener's)
	LinkAdvertise string // center: the link address other centers dial (default: the link listener's)
	Priority      int    // endpoint: its priority in the server list, lower first
	RedisPrefix   string // prefix of every Redis key, so clusters can share a Redis

	// AdminSecret guards the admin API; empty disables it (404).
	AdminSecret string
	// PProf serves /debug/pprof/ on the HTTP listener, behind AdminSecret.
	PProf bool

	// File server and file transfer limits (engine.FilesConfig).
	FileQuota     int
	MaxFileSize   int
	UploadTimeout time.Duration
	XferIdle      time.Duration

	// Group messages: how long one is kept, how often expired ones are deleted.
	GroupTTL   time.Duration
	GroupSweep time.Duration

	// GCPercent is the collector's target (debug.SetGCPercent), unless the
	// GOGC environment variable is set.
	GCPercent int
	// IdleReclaim is how often the process looks whether a burst of
	// allocation has ended, to collect once and return the freed memory
	// to the kernel (reclaim.go); 0: never.
	IdleReclaim time.Duration

	// AdminAddr is the operators' listener: metrics, admin API, pprof and
	// the status page (empty: off).
	AdminAddr string
	// TLS on the public HTTP listener: a certificate and key in PEM files,
	// or one made at start from the cluster CA (self-signed without one).
	HTTPTLSCert, HTTPTLSKey string
	HTTPTLSAuto             bool
	// WSAddr is the WebSocket listener (/login and /endpoint; empty: off);
	// WSOrigins the browser origins it accepts, comma-separated.
	WSAddr, WSOrigins string
	// ShutdownGrace is how long SIGTERM drains before the process stops.
	ShutdownGrace time.Duration
	// Registration is open, invite or closed; RegistrationRate is how many
	// registrations one address may make per hour.
	Registration     string
	RegistrationRate int
	// UserInvites is how many invite codes each user may issue (0: none);
	// InviteTTL is how long a code lives.
	UserInvites int
	InviteTTL   time.Duration

	// ReceiptTimeout is how long a pushed QoS 1 message waits for the
	// recipient's receipt before it is stored and its sender acked STORED
	// (center.Config.AckTimeout).
	ReceiptTimeout time.Duration
}

type option struct {
	name, usage string
	value       flag.Value
}

func (c *Config) options() []option {
	return []option{
		{"role", "what this process runs: all, login, endpoint or center", (*roleValue)(&c.Role)},
		{"endpoint-addr", "client (endpoint) listener address", (*addrValue)(&c.EndpointAddr)},
		{"login-addr", "login center listener address", (*addrValue)(&c.LoginAddr)},
		{"http-addr", "public HTTP listener: the user API, /healthz and /readyz (the operators' routes are on --admin-addr)", (*addrValue)(&c.HTTPAddr)},
		{"center-addr", "center link listener address", (*addrValue)(&c.CenterAddr)},
		{"ws-addr", "WebSocket listener for browsers: /login and /endpoint, the same frames and handshakes as TCP; wss:// with the --http-tls-cert or --http-tls-auto certificate, else ws:// (keep that on loopback); empty: off", (*addrValue)(&c.WSAddr)},
		{"ws-origins", "WebSocket: browser origins accepted, comma-separated (e.g. https://chat.example.com; * for any); empty: pages from the listener's own host, any port", (*stringValue)(&c.WSOrigins)},
		{"data-dir", "directory for the embedded store and keys", (*stringValue)(&c.DataDir)},
		{"mysql-dsn", "MySQL/MariaDB DSN (empty: embedded store)", (*stringValue)(&c.MySQLDSN)},
		{"redis-addr", "Redis address (empty: in-process routing)", (*stringValue)(&c.RedisAddr)},
		{"log-format", "log format: text or json", &enumValue{&c.LogFormat, []string{"text", "json"}}},
		{"log-level", "log level: debug, info, warn or error", &enumValue{&c.LogLevel, []string{"debug", "info", "warn", "error"}}},
		{"config", "optional config file, JSON, YAML (.yaml, .yml) or TOML (.toml); keys are the flag names", (*stringValue)(&c.ConfigFile)},
		{"loops", "event loops per listener (0: one per CPU)", (*intValue)(&c.Loops)},
		{"max-frame", "maximum frame size in bytes", (*intValue)(&c.MaxFrame)},
		{"max-outbound", "maximum queued outbound bytes per connection", (*intValue)(&c.MaxOutbound)},
		{"max-conns", "maximum concurrent client connections (kept under the open-file limit)", (*intValue)(&c.MaxConns)},
		{"idle-timeout", "close a connection with no frame for this long", (*durationValue)(&c.IdleTimeout)},
		{"first-frame-timeout", "close a connection with no frame this long after connect", (*durationValue)(&c.FirstFrameTimeout)},
		{"handshake-timeout", "close a connection not authenticated this long after connect", (*durationValue)(&c.HandshakeTimeout)},
		{"max-session", "end a session after this long even if its token lives longer; the client handshakes again (at most 24h)", (*durationValue)(&c.MaxSession)},
		{"handshake-rate", "endpoint: handshakes a second one client address (IPv6: one /64) may start (negative: no limit)", (*floatValue)(&c.HandshakeRate)},
		{"handshake-burst", "endpoint: handshakes one client address may start in a burst", (*intValue)(&c.HandshakeBurst)},
		{"server-id", "this node's id in the cluster (1..65535)", (*uintValue)(&c.ServerID)},
		{"center-link", "endpoint role: the center's link address host:port, then other centers to move to, comma-separated", (*stringValue)(&c.CenterLink)},
		{"route-ttl", "center role, with Redis: lifetime of a published user route, rewritten every third of it (a dead center's users leave the table within it; each refresh is one Redis write per online session)", (*durationValue)(&c.RouteTTL)},
		{"route-retry", "center role, with Redis: how long a QoS 1 message for a user of another center waits for an unreadable route table before it is stored offline (negative: store at once)", (*durationValue)(&c.RouteRetry)},
		{"center-failback", "endpoint role: on another center of --center-link, try the first one again this often and move back once it answers (0: never)", (*durationValue)(&c.Failback)},
		{"join", "join token from 'myimd cluster token' (endpoint, login, and further center or all nodes); prefer --join-file or MYIM_JOIN, which ps does not show", (*secretValue)(&c.Join)},
		{"join-file", "file holding the join token from 'myimd cluster token', read on first start", (*stringValue)(&c.JoinFile)},
		{"join-url", "the first node's join listener, e.g. https://10.0.0.1:5270", (*stringValue)(&c.JoinURL)},
		{"join-addr", "first node: where to serve cluster joins (needs 'myimd cluster init')", (*addrValue)(&c.JoinAddr)},
		{"link-plaintext", "endpoint-center and center-center links without TLS (loopback and private networks only; needs --link-secret)", (*boolValue)(&c.LinkPlaintext)},
		{"link-secret", "with --link-plaintext: shared secret, at least 16 bytes, that every node of the cluster proves it holds before a link is accepted (set it in MYIM_LINK_SECRET or the config file, where ps does not show it)", (*secretValue)(&c.LinkSecret)},
		{"advertise-addr", "endpoint: the address clients dial (default: the endpoint listener's)", (*stringValue)(&c.AdvertiseAddr)},
		{"link-advertise-addr", "center: the link address other centers dial (default: the link listener's)", (*stringValue)(&c.LinkAdvertise)},
		{"priority", "endpoint: priority in the server list, lower first", (*intValue)(&c.Priority)},
		{"redis-prefix", "prefix of every Redis key this cluster uses", (*stringValue)(&c.RedisPrefix)},
		{"admin-secret", "bearer secret of the admin API (empty: admin API off)", (*secretValue)(&c.AdminSecret)},
		{"pprof", "serve /debug/pprof/ on the HTTP listener, behind the admin secret", (*boolValue)(&c.PProf)},
		{"file-quota", "file server quota per user in bytes, uploads in progress included", (*intValue)(&c.FileQuota)},
		{"max-file-size", "largest file the file server takes, in bytes", (*intValue)(&c.MaxFileSize)},
		{"upload-timeout", "discard a file server upload with no write for this long", (*durationValue)(&c.UploadTimeout)},
		{"xfer-idle", "end a user-to-user file transfer with no progress for this long", (*durationValue)(&c.XferIdle)},
		{"admin-addr", "operators' HTTP listener: /metrics, the admin API, pprof, the status page (empty: off; keep it on loopback or a private network)", (*addrValue)(&c.AdminAddr)},
		{"http-tls-cert", "PEM certificate (chain) for TLS on the public HTTP listener, with --http-tls-key", (*stringValue)(&c.HTTPTLSCert)},
		{"http-tls-key", "PEM private key for --http-tls-cert", (*stringValue)(&c.HTTPTLSKey)},
		{"http-tls-auto", "TLS on the public HTTP listener with a certificate made at start from the cluster CA (clients trust cluster-ca.pem of the first node's data dir), or self-signed without one", (*boolValue)(&c.HTTPTLSAuto)},
		{"shutdown-grace", "on SIGTERM: how long to drain (readiness 503, new sessions refused, clients told to move, spread over this time) before stopping; a second SIGTERM stops at once", (*durationValue)(&c.ShutdownGrace)},
		{"group-ttl", "center: how long a group message is kept for members that have not acknowledged it", (*durationValue)(&c.GroupTTL)},
		{"group-sweep", "center: how often expired group messages are deleted from the store", (*durationValue)(&c.GroupSweep)},
		{"registration", "who may register over the HTTP API: open (anyone, --registration-rate per address), invite (with a code from POST /v1/admin/invites or a user's POST /v1/invites) or closed (the admin API only)", &enumValue{&c.Registration, []string{"open", "invite", "closed"}}},
		{"registration-rate", "registrations one client address may make per hour, the first ones at once (0: no limit)", (*intValue)(&c.RegistrationRate)},
		{"user-invites", "invite codes each user may issue with POST /v1/invites, in all (0: only the admin API issues them)", (*intValue)(&c.UserInvites)},
		{"invite-ttl", "how long an invite code lives", (*durationValue)(&c.InviteTTL)},
		{"receipt-timeout", "center role: how long a pushed QoS 1 message waits for the recipient's receipt before it is stored and its sender acked STORED (it is not pushed again to that session; the late receipt deletes it)", (*durationValue)(&c.ReceiptTimeout)},
		{"gc-percent", "Go collector target: heap growth over live data, in percent, before a collection (Go's default is 100; lower holds less memory per session for some CPU under traffic; -1: off; Go's GOGC variable, when set, wins)", (*intValue)(&c.GCPercent)},
		{"idle-reclaim", "how often to look whether a burst of allocation (a ramp or a reconnect storm of handshakes, 32 MiB or more) has ended; at the first interval that allocates under 1 MiB the process collects and returns the freed memory to the kernel, and once more 22 s later if still quiet (when idle sessions have dropped their cipher state), instead of holding it until the runtime's next collection (0: never)", (*durationValue)(&c.IdleReclaim)},
	}
}

// defaults returns the all-in-one configuration of a fresh machine.
func defaults() Config {
	return Config{
		Role:              "all",
		EndpointAddr:      ":5222",
		LoginAddr:         ":5223",
		HTTPAddr:          ":5280",
		CenterAddr:        ":5269",
		WSAddr:            ":5290",
		DataDir:           "./myim-data",
		LogFormat:         "text",
		LogLevel:          "info",
		Loops:             0,
		MaxFrame:          1 << 20,
		MaxOutbound:       4 << 20,
		MaxConns:          1_000_000,
		IdleTimeout:       120 * time.Second,
		FirstFrameTimeout: 10 * time.Second,
		HandshakeTimeout:  10 * time.Second,
		MaxSession:        24 * time.Hour,
		HandshakeRate:     100,
		HandshakeBurst:    1000,
		JoinAddr:          ":5270",
		RedisPrefix:       "myim:",
		ServerID:          1,
		FileQuota:         1 << 30,
		MaxFileSize:       4 << 30,
		UploadTimeout:     time.Hour,
		XferIdle:          10 * time.Minute,
		GroupTTL:          7 * 24 * time.Hour,
		GroupSweep:        time.Minute,
		Failback:          30 * time.Second,
		RouteRetry:        5 * time.Second,
		RouteTTL:          30 * time.Second,
		GCPercent:         50,
		IdleReclaim:       2 * time.Second,
		AdminAddr:         "127.0.0.1:5281",
		ShutdownGrace:     30 * time.Second,
		Registration:      "open",
		RegistrationRate:  30,
		InviteTTL:         7 * 24 * time.Hour,
		ReceiptTimeout:    10 * time.Second,
	}
}

// envName maps a flag name to its environment variable: endpoint-addr ->
// MYIM_ENDPOINT_ADDR.
func envName(flagName string) string {
	return "MYIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig fills a Config from defaults, the config file, the environment
// and args, in that order.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := defaults()
	fs := flag.NewFlagSet("myimd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts := c.options()
	for _, o := range opts {
		fs.Var(o.value, o.name, o.usage)
	}
	fs.Usage = func() {} // errors are one line; --help prints usage below
	// The config file's path can come from a flag or the environment, so
	// find it first.
	path := getenv(envName("config"))
	for i, a := range args {
		if a == "--config" || a == "-config" {
			if i+1 < len(args) {
				path = args[i+1]
			}
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if v, ok := strings.CutPrefix(a, "-config="); ok {
			path = v
		}
	}
	if path != "" {
		if err := applyFile(path, opts); err != nil {
			return c, err
		}
	}
	for _, o := range opts {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.value.Set(v); err != nil {
				return c, fmt.Errorf("%s=%q: %v", envName(o.name), v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stderr, opts)
			return c, flag.ErrHelp
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.ServerID == 0 || c.ServerID > 65535 {
		return c, fmt.Errorf("--server-id must be 1..65535, got %d", c.ServerID)
	}
	if c.ReceiptTimeout <= 0 {
		return c, fmt.Errorf("--receipt-timeout must be positive, got %v", c.ReceiptTimeout)
	}
	if c.GCPercent != -1 && c.GCPercent < 10 {
		return c, fmt.Errorf("--gc-percent must be -1 (off) or at least 10, got %d", c.GCPercent)
	}
	if c.IdleReclaim < 0 {
		return c, fmt.Errorf("--idle-reclaim must be 0 (never) or positive, got %v", c.IdleReclaim)
	}
	if c.PProf && c.AdminSecret == "" {
		return c, errors.New("--pprof needs --admin-secret: profiles are served only behind it")
	}
	if (c.HTTPTLSCert == "") != (c.HTTPTLSKey == "") {
		return c, errors.New("--http-tls-cert and --http-tls-key go together")
	}
	if c.HTTPTLSCert != "" && c.HTTPTLSAuto {
		return c, errors.New("--http-tls-auto and --http-tls-cert exclude each other")
	}
	return c, nil
}

// applyFile reads the config file: TOML for .toml, YAML for .yaml and
// .yml, JSON otherwise. Keys are the flag names; values are what the flag
// takes (a number, a boolean, or a string such as "30s").
func applyFile(path string, opts []option) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %v", err)
	}
	m := map[string]any{}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		if _, err := toml.Decode(string(b), &m); err != nil {
			return fmt.Errorf("config file %s: %s", path, oneLine(err.Error()))
		}
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("config file %s: %s", path, oneLine(err.Error()))
		}
	default:
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("config file %s: %s", path, jsonError(b, err))
		}
	}
	byName := make(map[string]option, len(opts))
	for _, o := range opts {
		byName[o.name] = o
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o, ok := byName[k]
		if !ok {
			return fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		var v string
		switch x := m[k].(type) {
		case map[string]any, []any:
			return fmt.Errorf("config file %s: %s: want a single value", path, k)
		case float64: // JSON numbers: 1048576 must not become 1.048576e+06
			v = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			v = fmt.Sprint(x)
		}
		if err := o.value.Set(v); err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, k, err)
		}
	}
	return nil
}

// jsonError says where in b a JSON error is, as line and column.
func jsonError(b []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return oneLine(err.Error())
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(b[:off], '\n'))
	return fmt.Sprintf("line %d, column %d: %s", line, col, oneLine(err.Error()))
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printUsage(w io.Writer, opts []option) {
	fmt.Fprintf(w, "Usage: myimd [flags]\n       myimd cluster init|token [--data-dir DIR] [--server-id N]\n       myimd --version\n\nWith no flags myimd runs all-in-one (login + endpoint + center) on an embedded store.\nEvery flag can also be set with its environment variable or a key of the --config file.\n\n")
	printFlags(w, opts)
}

// printFlags lists opts with their environment variables and defaults.
func printFlags(w io.Writer, opts []option) {
	for _, o := range opts {
		def := o.value.String()
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-20s %s\n  %-22s env %s, default %s\n", o.name, o.usage, "", envName(o.name), def)
	}
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

// secretValue never shows its value, so that --help does not print a
// secret taken from the environment.
type secretValue string

func (v *secretValue) String() string {
	if v == nil || *v == "" {
		return ""
	}
	return "(set)"
}
func (v *secretValue) Set(s string) error { *v = secretValue(s); return nil }

type floatValue float64

func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	*v = floatValue(f)
	return err
}

type boolValue bool

func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, not %q", s)
	}
	*v = boolValue(b)
	return nil
}

type addrValue string

func (v *addrValue) String() string { return string(*v) }
func (v *addrValue) Set(s string) error {
	if s == "" {
		*v = ""
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad address %q: %v", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port in %q", s)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("bad host in %q: use an IP address", s)
	}
	*v = addrValue(s)
	return nil
}

type roleValue string

func (v *roleValue) String() string { return string(*v) }
func (v *roleValue) Set(s string) error {
	switch s {
	case "all", "login", "endpoint", "center":
		*v = roleValue(s)
		return nil
	}
	return fmt.Errorf("role must be all, login, endpoint or center, not %q", s)
}

type enumValue struct {
	p       *string
	allowed []string
}

func (v *enumValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}
func (v *enumValue) Set(s string) error {
	for _, a := range v.allowed {
		if s == a {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("must be one of %s, not %q", strings.Join(v.allowed, ", "), s)
}

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want a non-negative integer, not %q", s)
	}
	*v = intValue(n)
	return nil
}

type uintValue uint

func (v *uintValue) String() string { return strconv.FormatUint(uint64(*v), 10) }
func (v *uintValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a non-negative integer, not %q", s)
	}
	*v = uintValue(n)
	return nil
}

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		if n, err2 := strconv.Atoi(s); err2 == nil { // plain seconds
			d, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration like 30s, not %q", s)
	}
	*v = durationValue(d)
	return nil
}

// flagTable is the README's flag reference, made from the flag set: one
// row a flag with its environment variable, default and meaning.
func flagTable() string {
	c := defaults()
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, o := range c.options() {
		def := o.value.String()
		if def == "" {
			def = "(empty)"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", o.name, envName(o.name), def,
			strings.ReplaceAll(o.usage, "|", "\\|"))
	}
	return b.String()
}
