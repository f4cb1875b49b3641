package main

import (
	"bytes"
	stdcmp "cmp"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/myim/myim/client"
	"github.com/myim/myim/session"
)

// sessionDevice is the one device key every bench user's token is bound to.
type sessionDevice struct {
	key *ecdh.PrivateKey
}

// account is a bench user with a token for the endpoint.
type account struct {
	Name  string `json:"name"`
	ID    uint64 `json:"id"`
	token string
}

// target is an endpoint the sessions dial, with its static key.
type target struct {
	addr string
	key  []byte
}

// fleet is what provisioning produced.
type fleet struct {
	users   []account
	dev     *sessionDevice
	targets []target // one, or with --spread the whole server list by id
	admin   bool     // the admin API was used
}

// errNoAdminAPI: the server has no provisioning API (or no --admin-secret
// was given): users are registered and logged in one by one.
var errNoAdminAPI = errors.New("bench: admin API unavailable")

type httpAPI struct {
	base, admin, secret string // admin: the admin listener, for /v1/admin/ paths
	hc                  *http.Client
}

func (h *httpAPI) post(ctx context.Context, path, bearer string, in, out any) (int, error) {
	b, err := sonic.Marshal(in)
	if err != nil {
		return 0, err
	}
	base := h.base
	if strings.HasPrefix(path, "/v1/admin/") {
		base = h.admin
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+base+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if out != nil {
		if err := sonic.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("POST %s: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

// loadRoot reads --root: a file holding the key (root.pub) or the key
// itself. A path that names no file says so, rather than failing to parse
// the path as a key.
func loadRoot(s string) ([]session.VerifyKey, error) {
	b, ferr := os.ReadFile(s)
	if ferr == nil {
		s = string(b)
	}
	k, err := session.ParseVerifyKey(strings.TrimSpace(s))
	if err != nil {
		if ferr != nil && (strings.ContainsAny(s, `/\`) || strings.HasSuffix(s, ".pub")) {
			return nil, fmt.Errorf("--root %s: %w (give root.pub from the server's data directory, or the key it prints)", s, ferr)
		}
		return nil, fmt.Errorf("--root: %w (give root.pub from the server's data directory, or the key it prints)", err)
	}
	return []session.VerifyKey{k}, nil
}

// userName is bench user number i (0-based within this run).
func (c *Config) userName(i int) string { return c.Prefix + strconv.Itoa(c.First+i) }

// provision creates n bench users and, with tokens, gets a token for each,
// through the admin API when it answers and by registering and logging in
// otherwise.
func provision(ctx context.Context, cfg *Config, n int, tokens bool) (*fleet, error) {
	key, err := session.NewStaticKey()
	if err != nil {
		return nil, err
	}
	fl := &fleet{dev: &sessionDevice{key: key}}
	api := &httpAPI{base: cfg.HTTP, admin: cfg.AdminAPI, secret: cfg.Admin, hc: &http.Client{Timeout: 5 * time.Minute}}
	err = provisionAdmin(ctx, cfg, api, fl, n, tokens)
	if err == nil {
		fl.admin = true
		return fl, nil
	}
	if !errors.Is(err, errNoAdminAPI) {
		return nil, err
	}
	if !cfg.Quiet {
		fmt.Fprintf(cfg.Out, "provision: no admin API (%v); registering %d users one by one\n", err, n)
	}
	return fl, provisionSlow(ctx, cfg, api, fl, n, tokens)
}

func provisionAdmin(ctx context.Context, cfg *Config, api *httpAPI, fl *fleet, n int, tokens bool) error {
	if cfg.Admin == "" {
		return fmt.Errorf("%w: no --admin-secret", errNoAdminAPI)
	}
	const chunk = 5000
	start := time.Now()
	for first := 0; first < n; first += chunk {
		cnt := min(chunk, n-first)
		var out struct {
			Users []account `json:"users"`
		}
		code, err := api.post(ctx, "/v1/admin/users/bulk", cfg.Admin, map[string]any{
			"prefix": cfg.Prefix, "first": cfg.First + first, "count": cnt, "password": cfg.Password}, &out)
		if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
			return fmt.Errorf("%w: %v", errNoAdminAPI, err)
		}
		if err != nil {
			return err
		}
		if len(out.Users) != cnt {
			return fmt.Errorf("bulk users: asked for %d, got %d", cnt, len(out.Users))
		}
		fl.users = append(fl.users, out.Users...)
	}
	if !tokens {
		return nil
	}
	pub := base64.StdEncoding.EncodeToString(fl.dev.key.PublicKey().Bytes())
	if cfg.Spread && cfg.MinServers > 0 && n > 0 {
		if err := waitServers(ctx, cfg, api, fl.users[0].ID, pub); err != nil {
			return err
		}
	}
	for first := 0; first < n; first += chunk {
		ids := make([]uint64, 0, chunk)
		for _, u := range fl.users[first:min(first+chunk, n)] {
			ids = append(ids, u.ID)
		}
		var out struct {
			Tokens  []string             `json:"tokens"`
			Servers []session.ServerInfo `json:"servers"`
		}
		if _, err := api.post(ctx, "/v1/admin/tokens", cfg.Admin, map[string]any{
			"users": ids, "device_key": pub, "ttl": "2h"}, &out); err != nil {
			return err
		}
		if len(out.Tokens) != len(ids) || len(out.Servers) == 0 {
			return fmt.Errorf("tokens: asked for %d, got %d tokens and %d servers", len(ids), len(out.Tokens), len(out.Servers))
		}
		for i, t := range out.Tokens {
			fl.users[first+i].token = t
		}
		if err := fl.pickServer(cfg, out.Servers, ""); err != nil {
			return err
		}
	}
	if !cfg.Quiet {
		fmt.Fprintf(cfg.Out, "provision: %d users and tokens through the admin API in %.1fs\n", n, time.Since(start).Seconds())
	}
	return nil
}

// waitServers asks for a token until the server list that comes with it
// has --min-servers endpoints, for at most serverWait: endpoint processes
// register themselves a moment after they start.
func waitServers(ctx context.Context, cfg *Config, api *httpAPI, user uint64, pub string) error {
	deadline := time.Now().Add(serverWait)
	for {
		var out struct {
			Servers []session.ServerInfo `json:"servers"`
		}
		if _, err := api.post(ctx, "/v1/admin/tokens", cfg.Admin, map[string]any{
			"users": []uint64{user}, "device_key": pub, "ttl": "1m"}, &out); err != nil {
			return err
		}
		if len(out.Servers) >= cfg.MinServers {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server list has %d endpoints after %v, --min-servers wants %d", len(out.Servers), serverWait, cfg.MinServers)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// serverWait bounds waitServers: an endpoint registers within seconds of
// its start, or something is wrong with it.
const serverWait = 60 * time.Second

// pickServer takes the first server of the list (by priority, then load)
// unless --addr names one; with --spread it takes the whole list, ordered
// by server id so that every bench process numbers it alike.
func (fl *fleet) pickServer(cfg *Config, servers []session.ServerInfo, loginHost string) error {
	if len(fl.targets) > 0 {
		return nil
	}
	lr := &client.LoginResult{LoginHost: hostOf(cfg, loginHost)}
	if cfg.Spread {
		list := slices.Clone(servers)
		slices.SortFunc(list, func(a, b session.ServerInfo) int { return stdcmp.Compare(a.ID, b.ID) })
		for _, s := range list {
			fl.targets = append(fl.targets, target{addr: lr.EndpointAddr(s), key: s.Key})
		}
		return nil
	}
	best := servers[0]
	for _, s := range servers[1:] {
		if s.Priority < best.Priority || (s.Priority == best.Priority && s.Load < best.Load) {
			best = s
		}
	}
	t := target{addr: cfg.Endpoint, key: best.Key}
	if t.addr == "" {
		t.addr = lr.EndpointAddr(best)
	}
	fl.targets = []target{t}
	return nil
}

func hostOf(cfg *Config, loginHost string) string {
	if loginHost != "" {
		return loginHost
	}
	h := cfg.HTTP
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}

// provisionSlow registers each user over HTTP (409 means it exists) and
// logs it in through the login service, with LoginConc at a time.
func provisionSlow(ctx context.Context, cfg *Config, api *httpAPI, fl *fleet, n int, tokens bool) error {
	var roots []session.VerifyKey
	if tokens {
		var err error
		if roots, err = loadRoot(cfg.Root); err != nil {
			return err
		}
	}
	ccfg := client.Config{Roots: roots, Device: fl.dev.key, WebSocket: cfg.webSocket()}
	fl.users = make([]account, n)
	var next, done atomic.Int64
	var mu sync.Mutex
	var first error
	prog := newProgress(cfg, "provision", func() string { return fmt.Sprintf("%d/%d users registered and logged in", done.Load(), n) })
	defer prog.stop()
	var wg sync.WaitGroup
	for w := 0; w < min(cfg.LoginConc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				name := cfg.userName(i)
				code, err := api.post(ctx, "/v1/users", "", map[string]string{"name": name, "password": cfg.Password}, nil)
				if err != nil && code != http.StatusConflict {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
					return
				}
				if !tokens {
					fl.users[i] = account{Name: name}
					done.Add(1)
					continue
				}
				res, err := client.Login(ctx, ccfg, cfg.Login, name, []byte(cfg.Password))
				if err != nil {
					mu.Lock()
					first = cmp(first, fmt.Errorf("login %s: %w", name, err))
					mu.Unlock()
					return
				}
				fl.users[i] = account{Name: name, ID: res.UserID, token: res.Token}
				mu.Lock()
				if len(res.Servers) > 0 {
					_ = fl.pickServer(cfg, res.Servers, res.LoginHost)
				}
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
