// Command myimctl is the operator's tool for a running myimd: the admin API
// (stats, sessions, users, kicks, token revocation, drain and undrain, bulk
// users), the server's status and the nodes of its cluster, and user
// registration. Output is a table, or the server's JSON with --json.
//
//	myimctl [--admin ADDR] [--secret-file FILE] [--json] COMMAND [ARGS]
//
// See myimctl --help for the commands.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/myim/myim/internal/buildinfo"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)) }

// Exit statuses: 0 done, 1 the server refused or could not be reached, 2
// a usage error.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// ctl is one invocation: where the server is, how to authenticate, how to
// print.
type ctl struct {
	admin, public string
	secret        string
	json          bool
	hc            *http.Client
	scheme        string // of the public listener
	getenv        func(string) string
	stdin         io.Reader
	stdout        io.Writer
	stderr        io.Writer
}

// command is one verb of myimctl.
type command struct {
	name, args, help string
	admin            bool // needs the admin secret
	run              func(c *ctl, fs *flag.FlagSet, args []string) error
	flags            func(fs *flag.FlagSet)
}

var commands []command

func init() {
	commands = []command{
		{name: "version", help: "myimctl's version and the server's", run: (*ctl).version},
		{name: "server info", help: "the server's build, role, uptime and load (GET /v1/status)", run: (*ctl).serverInfo},
		{name: "cluster nodes", help: "every node of the cluster with role, state, sessions, RSS, CPU and rates", run: (*ctl).clusterNodes},
		{name: "stats", help: "the node's figures with handshake and close counts and recent warnings (GET /v1/admin/stats)", admin: true, run: (*ctl).stats},
		{name: "users online", help: "sessions online with their address", admin: true, run: (*ctl).online,
			flags: func(fs *flag.FlagSet) { fs.Int("limit", 1000, "at most this many sessions (up to 10000)") }},
		{name: "user info", args: "ID", help: "a user and its sessions", admin: true, run: (*ctl).userInfo},
		{name: "user add", args: "NAME", help: "register a user on the public API; the password is asked without echo (or read from a pipe)", run: (*ctl).userAdd},
		{name: "user kick", args: "ID", help: "close every session of a user", admin: true, run: (*ctl).kick},
		{name: "user kick-device", args: "ID DEVICE", help: "close a user's sessions on one device (the hex device of users online)", admin: true, run: (*ctl).kickDevice},
		{name: "token revoke", args: "SID|TOKEN", help: "refuse a token from now on and close its sessions (a sid from users online, or the token)", admin: true, run: (*ctl).revoke},
		{name: "drain", help: "refuse new sessions and tell clients to move; /readyz turns 503", admin: true, run: (*ctl).drain,
			flags: func(fs *flag.FlagSet) { fs.Duration("spread", 0, "spread the move notices over this long") }},
		{name: "undrain", help: "undo a drain: accept sessions again", admin: true, run: (*ctl).undrain},
		{name: "drain status", help: "whether the node drains, and its sessions", admin: true, run: (*ctl).drainStatus},
		{name: "group info", args: "ID", help: "a group's owner, members, highest seq and stored messages", admin: true, run: (*ctl).groupInfo},
		{name: "invite new", help: "a single-use registration code (with myimd --registration invite)", admin: true, run: (*ctl).inviteNew},
		{name: "token issue", args: "ID", help: "a token for user ID bound to a device key, as the login service would give (load tests)", admin: true, run: (*ctl).tokenIssue,
			flags: func(fs *flag.FlagSet) {
				fs.String("device-key", "", "standard base64 of the device's 32-byte X25519 public key (required)")
				fs.Duration("ttl", time.Hour, "how long the token lives (at most 24h)")
			}},
		{name: "users bulk", help: "create users PREFIX+N for N in [first, first+count) with one password (asked without echo)", admin: true, run: (*ctl).bulk,
			flags: func(fs *flag.FlagSet) {
				fs.String("prefix", "user", "name prefix")
				fs.Int64("first", 1, "first number")
				fs.Int("count", 1, "how many (up to 100000)")
			}},
	}
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: myimctl [flags] COMMAND [ARGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nFlags (before the command):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nThe admin secret comes from --secret-file, else MYIM_ADMIN_SECRET_FILE, else MYIM_ADMIN_SECRET.\n")
}

// transport returns the HTTP transport of the calls: one that trusts the
// CA certificate in the file tlsCA, if given.
func transport(tlsCA string) (*http.Transport, error) {
	tr := &http.Transport{}
	if tlsCA == "" {
		return tr, nil
	}
	pem, err := os.ReadFile(tlsCA)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", tlsCA)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}

func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	envOr := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("myimctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	admin := fs.String("admin", envOr("MYIM_ADMIN_ADDR", "127.0.0.1:5281"), "myimd's admin listener (env MYIM_ADMIN_ADDR)")
	public := fs.String("http", envOr("MYIM_HTTP_ADDR", "127.0.0.1:5280"), "myimd's public HTTP listener, for user add (env MYIM_HTTP_ADDR)")
	secretFile := fs.String("secret-file", getenv("MYIM_ADMIN_SECRET_FILE"), "file holding the admin secret (env MYIM_ADMIN_SECRET_FILE)")
	secret := fs.String("secret", "", "the admin secret itself (visible to other users in the process list: prefer the file or MYIM_ADMIN_SECRET)")
	asJSON := fs.Bool("json", false, "print the server's JSON instead of a table")
	tlsCA := fs.String("tls-ca", getenv("MYIM_TLS_CA"), "CA certificate (PEM) of an HTTPS public listener, e.g. the cluster's cluster-ca.pem (env MYIM_TLS_CA)")
	useTLS := fs.Bool("tls", false, "the public listener is HTTPS")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit of each call")
	version := fs.Bool("version", false, "print myimctl's version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "myimctl: %v (see myimctl --help)\n", err)
		return exitUsage
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Get().String("myimctl"))
		return exitOK
	}
	c := &ctl{admin: hostPort(*admin), public: hostPort(*public), json: *asJSON, getenv: getenv,
		stdin: stdin, stdout: stdout, stderr: stderr, scheme: "http"}
	if *tlsCA != "" || *useTLS {
		c.scheme = "https"
	}
	tr, err := transport(*tlsCA)
	if err != nil {
		fmt.Fprintf(stderr, "myimctl: %v\n", err)
		return exitUsage
	}
	c.hc = &http.Client{Timeout: *timeout, Transport: tr}
	rest := fs.Args()
	cmd, n := findCommand(rest)
	if cmd == nil {
		if len(rest) == 0 {
			usage(stderr, fs)
		} else {
			fmt.Fprintf(stderr, "myimctl: unknown command %q (see myimctl --help)\n", strings.Join(rest, " "))
		}
		return exitUsage
	}
	sub := flag.NewFlagSet("myimctl "+cmd.name, flag.ContinueOnError)
	sub.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(sub)
	}
	cmdArgs := rest[n:]
	if cmd.flags == nil && !isHelp(cmdArgs) {
		// Without flags every argument is positional, even one that
		// starts with '-' as a base64url token or session id may.
		cmdArgs = append([]string{"--"}, cmdArgs...)
	}
	if err := sub.Parse(cmdArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: myimctl %s %s\n\n%s\n", cmd.name, cmd.args, cmd.help)
			if cmd.flags != nil {
				fmt.Fprintln(stdout)
				sub.SetOutput(stdout)
				sub.PrintDefaults()
			}
			return exitOK
		}
		fmt.Fprintf(stderr, "myimctl %s: %v\n", cmd.name, err)
		return exitUsage
	}
	if want := len(strings.Fields(cmd.args)); sub.NArg() != want {
		fmt.Fprintf(stderr, "usage: myimctl %s %s\n", cmd.name, cmd.args)
		return exitUsage
	}
	if cmd.admin {
		s, err := adminSecret(*secret, *secretFile, getenv)
		if err != nil {
			fmt.Fprintf(stderr, "myimctl: %v\n", err)
			return exitUsage
		}
		c.secret = s
	}
	if err := cmd.run(c, sub, sub.Args()); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "myimctl %s: %v\n", cmd.name, err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "myimctl %s: %v\n", cmd.name, err)
		return exitFail
	}
	return exitOK
}

// usageError is a mistake in the command line found by a command.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// findCommand matches the longest command name at the start of args.
func findCommand(args []string) (*command, int) {
	var best *command
	bestN := 0
	for i := range commands {
		words := strings.Fields(commands[i].name)
		if len(words) <= len(args) && len(words) > bestN && strings.Join(args[:len(words)], " ") == commands[i].name {
			best, bestN = &commands[i], len(words)
		}
	}
	return best, bestN
}

// adminSecret takes the secret from the flag, the file (flag or env), or
// MYIM_ADMIN_SECRET, in that order.
func adminSecret(flagVal, file string, getenv func(string) string) (string, error) {
	if flagVal != "" {
		return flagVal, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("admin secret file: %v", err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("admin secret file %s is empty", file)
	}
	if s := getenv("MYIM_ADMIN_SECRET"); s != "" {
		return s, nil
	}
	return "", errors.New("this command needs the admin secret: --secret-file FILE, MYIM_ADMIN_SECRET_FILE or MYIM_ADMIN_SECRET")
}

// hostPort turns ":5281" into "127.0.0.1:5281".
func hostPort(a string) string {
	if strings.HasPrefix(a, ":") {
		return "127.0.0.1" + a
	}
	return a
}

// call makes a request and decodes the JSON answer into out (when not
// nil); the raw answer is returned for --json.
func (c *ctl) call(method, base, path string, body any, auth bool, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	scheme := "http"
	if base == c.public {
		scheme = c.scheme
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			msg += " (wrong admin secret?)"
		case http.StatusNotFound:
			if auth && strings.HasPrefix(path, "/v1/admin/") && msg == "404 page not found" {
				msg = "no admin API here: is --admin-secret set on myimd, and is --admin its admin listener?"
			}
		}
		return raw, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: bad answer: %v", method, path, err)
		}
	}
	return raw, nil
}

// print writes raw (indented) with --json, else calls table.
func (c *ctl) print(raw []byte, table func(tw *tabwriter.Writer)) error {
	if c.json {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") != nil {
			buf.Reset()
			buf.Write(raw)
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// status is the part of GET /v1/status myimctl shows.
type status struct {
	Node           uint32         `json:"node"`
	Version        string         `json:"version"`
	Uptime         float64        `json:"uptime_seconds"`
	Connections    map[string]int `json:"connections"`
	Sessions       int            `json:"sessions"`
	Draining       bool           `json:"draining"`
	MessagesPerSec float64        `json:"messages_per_sec"`
	P50            float64        `json:"delivery_p50_ms"`
	P99            float64        `json:"delivery_p99_ms"`
	RSS            uint64         `json:"rss_bytes"`
	CPU            float64        `json:"cpu_percent"`
	Delivered      uint64         `json:"delivered"`
	Stored         uint64         `json:"stored_offline"`
	Pending        int            `json:"pending_receipts"`
	Nodes          []nodeStatus   `json:"nodes"`
	Handshakes     map[string]map[string]uint64
	Closed         map[string]map[string]uint64
	Errors         []struct {
		Time  time.Time `json:"time"`
		Level string    `json:"level"`
		Msg   string    `json:"msg"`
		Err   string    `json:"err"`
	} `json:"recent_errors"`
}

type nodeStatus struct {
	ID        uint32  `json:"id"`
	Role      string  `json:"role"`
	Version   string  `json:"version"`
	State     string  `json:"state"`
	Sessions  int     `json:"sessions"`
	Conns     int     `json:"connections"`
	RSS       uint64  `json:"rss_bytes"`
	CPU       float64 `json:"cpu_percent"`
	Msgs      float64 `json:"messages_per_sec"`
	Logins    float64 `json:"logins_per_sec"`
	Failures  float64 `json:"login_failures_per_sec"`
	Errors    float64 `json:"errors_per_min"`
	Uptime    float64 `json:"uptime_seconds"`
	AdminAddr string  `json:"admin_addr"`
	Age       float64 `json:"age_seconds"`
	Self      bool    `json:"self"`
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", v)
}

func (c *ctl) version(_ *flag.FlagSet, _ []string) error {
	fmt.Fprintln(c.stdout, buildinfo.Get().String("myimctl"))
	var st status
	if _, err := c.call("GET", c.admin, "/v1/status", nil, false, &st); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "myimd %s (node %d at %s)\n", st.Version, st.Node, c.admin)
	return nil
}

func (c *ctl) serverInfo(_ *flag.FlagSet, _ []string) error {
	var st status
	raw, err := c.call("GET", c.admin, "/v1/status", nil, false, &st)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		role := ""
		for _, n := range st.Nodes {
			if n.Self {
				role = n.Role
			}
		}
		conns := 0
		for _, v := range st.Connections {
			conns += v
		}
		fmt.Fprintf(tw, "node\t%d\nversion\t%s\nrole\t%s\nuptime\t%s\ndraining\t%v\nconnections\t%d\nsessions\t%d\n",
			st.Node, st.Version, role, (time.Duration(st.Uptime) * time.Second).String(), st.Draining, conns, st.Sessions)
		fmt.Fprintf(tw, "messages/s\t%.1f\ndelivery p50\t%s\ndelivery p99\t%s\nRSS\t%s\nCPU\t%.1f%%\n",
			st.MessagesPerSec, ms(st.P50), ms(st.P99), mib(st.RSS), st.CPU)
	})
}

func (c *ctl) clusterNodes(_ *flag.FlagSet, _ []string) error {
	var st status
	raw, err := c.call("GET", c.admin, "/v1/status", nil, false, &st)
	if err != nil {
		return err
	}
	if c.json {
		b, _ := json.Marshal(map[string]any{"nodes": st.Nodes})
		raw = b
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tROLE\tSTATE\tSESSIONS\tCONNS\tRSS\tCPU\tMSG/S\tLOGIN/S\tFAIL/S\tERR/MIN\tVERSION\tADMIN")
		for _, n := range st.Nodes {
			id := strconv.FormatUint(uint64(n.ID), 10)
			if n.Self {
				id += "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%.1f%%\t%.1f\t%.2f\t%.2f\t%.1f\t%s\t%s\n", id, n.Role, n.State,
				n.Sessions, n.Conns, mib(n.RSS), n.CPU, n.Msgs, n.Logins, n.Failures, n.Errors, n.Version, n.AdminAddr)
		}
	})
}

func (c *ctl) stats(_ *flag.FlagSet, _ []string) error {
	var st status
	raw, err := c.call("GET", c.admin, "/v1/admin/stats", nil, true, &st)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		conns := 0
		for _, v := range st.Connections {
			conns += v
		}
		fmt.Fprintf(tw, "node\t%d\nversion\t%s\nconnections\t%d\nsessions\t%d\ndraining\t%v\nmessages/s\t%.1f\ndelivered\t%d\nstored offline\t%d\npending receipts\t%d\ndelivery p99\t%s\n",
			st.Node, st.Version, conns, st.Sessions, st.Draining, st.MessagesPerSec, st.Delivered, st.Stored, st.Pending, ms(st.P99))
		for _, kind := range []struct {
			name string
			m    map[string]map[string]uint64
		}{{"handshakes", st.Handshakes}, {"closed", st.Closed}} {
			for _, k := range sortedKeys(kind.m) {
				var parts []string
				for _, r := range sortedKeys(kind.m[k]) {
					parts = append(parts, fmt.Sprintf("%s=%d", r, kind.m[k][r]))
				}
				fmt.Fprintf(tw, "%s %s\t%s\n", kind.name, k, strings.Join(parts, " "))
			}
		}
		for _, e := range st.Errors {
			fmt.Fprintf(tw, "%s\t%s %s %s\n", e.Time.Format(time.RFC3339), e.Level, e.Msg, e.Err)
		}
	})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type session struct {
	User     uint64    `json:"user"`
	Endpoint uint32    `json:"endpoint"`
	Center   uint32    `json:"center"`
	Session  uint64    `json:"session"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
	SID      string    `json:"sid"`
	Device   string    `json:"device"`
}

func sessionTable(tw *tabwriter.Writer, list []session) {
	fmt.Fprintln(tw, "USER\tENDPOINT\tCENTER\tSESSION\tREMOTE\tSINCE\tSID\tDEVICE")
	for _, s := range list {
		since := ""
		if !s.Since.IsZero() {
			since = s.Since.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", s.User, s.Endpoint, s.Center, s.Session, s.Remote, since, s.SID, s.Device)
	}
}

func (c *ctl) online(fs *flag.FlagSet, _ []string) error {
	limit := fs.Lookup("limit").Value.String()
	var out struct {
		Sessions  []session `json:"sessions"`
		Total     int       `json:"total"`
		Truncated bool      `json:"truncated"`
	}
	raw, err := c.call("GET", c.admin, "/v1/admin/users/online?limit="+url.QueryEscape(limit), nil, true, &out)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		sessionTable(tw, out.Sessions)
		if out.Truncated {
			fmt.Fprintf(tw, "(%d of %d shown)\n", len(out.Sessions), out.Total)
		}
	})
}

func userID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError{fmt.Sprintf("user id must be a positive number, not %q", s)}
	}
	return id, nil
}

func (c *ctl) userInfo(_ *flag.FlagSet, args []string) error {
	id, err := userID(args[0])
	if err != nil {
		return err
	}
	var u struct {
		ID       uint64    `json:"id"`
		Name     string    `json:"name"`
		Online   bool      `json:"online"`
		Sessions []session `json:"sessions"`
	}
	raw, err := c.call("GET", c.admin, fmt.Sprintf("/v1/admin/users/%d", id), nil, true, &u)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "id\t%d\nname\t%s\nonline\t%v\n", u.ID, u.Name, u.Online)
		if len(u.Sessions) > 0 {
			fmt.Fprintln(tw)
			sessionTable(tw, u.Sessions)
		}
	})
}

func (c *ctl) kicked(raw []byte, what string) error {
	var out struct {
		Kicked int `json:"kicked"`
	}
	_ = json.Unmarshal(raw, &out)
	return c.print(raw, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "%s: %d sessions closed\n", what, out.Kicked) })
}

func (c *ctl) kick(_ *flag.FlagSet, args []string) error {
	id, err := userID(args[0])
	if err != nil {
		return err
	}
	raw, err := c.call("POST", c.admin, fmt.Sprintf("/v1/admin/users/%d/kick", id), nil, true, nil)
	if err != nil {
		return err
	}
	return c.kicked(raw, "user "+args[0])
}

func (c *ctl) kickDevice(_ *flag.FlagSet, args []string) error {
	id, err := userID(args[0])
	if err != nil {
		return err
	}
	raw, err := c.call("POST", c.admin, fmt.Sprintf("/v1/admin/users/%d/devices/%s/kick", id, url.PathEscape(args[1])), nil, true, nil)
	if err != nil {
		return err
	}
	return c.kicked(raw, "user "+args[0]+" device")
}

func (c *ctl) revoke(_ *flag.FlagSet, args []string) error {
	body := map[string]string{"sid": args[0]}
	if strings.Count(args[0], ".") == 2 { // a JWT
		body = map[string]string{"token": args[0]}
	}
	raw, err := c.call("POST", c.admin, "/v1/admin/tokens/revoke", body, true, nil)
	if err != nil {
		return err
	}
	return c.kicked(raw, "token revoked")
}

type drainState struct {
	Draining bool `json:"draining"`
	Notified int  `json:"notified"`
	Sessions int  `json:"sessions"`
}

func (c *ctl) drain(fs *flag.FlagSet, _ []string) error {
	spread := fs.Lookup("spread").Value.String()
	var st drainState
	raw, err := c.call("POST", c.admin, "/v1/admin/drain", map[string]any{"draining": true, "spread": spread}, true, &st)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "draining: %d sessions told to move (spread over %s), %d still here\n", st.Notified, spread, st.Sessions)
	})
}

func (c *ctl) undrain(_ *flag.FlagSet, _ []string) error {
	var st drainState
	raw, err := c.call("POST", c.admin, "/v1/admin/drain", map[string]any{"draining": false}, true, &st)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "serving again (draining %v), %d sessions\n", st.Draining, st.Sessions)
	})
}

func (c *ctl) drainStatus(_ *flag.FlagSet, _ []string) error {
	var st drainState
	raw, err := c.call("GET", c.admin, "/v1/admin/drain", nil, true, &st)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "draining\t%v\nsessions\t%d\n", st.Draining, st.Sessions)
	})
}

// password asks for a password: without echo on a terminal, else the
// first line of standard input.
func (c *ctl) password(prompt string) (string, error) {
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (c *ctl) userAdd(_ *flag.FlagSet, args []string) error {
	pw, err := c.password(fmt.Sprintf("password for %s: ", args[0]))
	if err != nil {
		return err
	}
	raw, err := c.call("POST", c.public, "/v1/users", map[string]string{"name": args[0], "password": pw}, false, nil)
	if err != nil {
		return err
	}
	var u struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
	}
	_ = json.Unmarshal(raw, &u)
	return c.print(raw, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "user %s created with id %d\n", u.Name, u.ID) })
}

func (c *ctl) bulk(fs *flag.FlagSet, _ []string) error {
	prefix := fs.Lookup("prefix").Value.String()
	first, _ := strconv.ParseInt(fs.Lookup("first").Value.String(), 10, 64)
	count, _ := strconv.Atoi(fs.Lookup("count").Value.String())
	pw, err := c.password(fmt.Sprintf("password for %s%d..%s%d: ", prefix, first, prefix, first+int64(count)-1))
	if err != nil {
		return err
	}
	var out struct {
		Users []struct {
			Name string `json:"name"`
			ID   uint64 `json:"id"`
		} `json:"users"`
		Created int `json:"created"`
	}
	raw, err := c.call("POST", c.admin, "/v1/admin/users/bulk",
		map[string]any{"prefix": prefix, "first": first, "count": count, "password": pw}, true, &out)
	if err != nil {
		return err
	}
	return c.print(raw, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tID")
		for _, u := range out.Users {
			fmt.Fprintf(tw, "%s\t%d\n", u.Name, u.ID)
		}
		fmt.Fprintf(tw, "(%d created, %d existed)\n", out.Created, len(out.Users)-out.Created)
	})
}

// isHelp reports whether args is a lone request for a command's help.
func isHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help")
}
