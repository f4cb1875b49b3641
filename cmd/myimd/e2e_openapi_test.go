package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/myim/myim/engine/node"
)

const openAPIDoc = "../../docs/openapi.yaml"

// loadOpenAPI loads and validates docs/openapi.yaml.
func loadOpenAPI(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIDoc)
	if err != nil {
		t.Fatalf("load %s: %v", openAPIDoc, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not valid OpenAPI 3: %v", openAPIDoc, err)
	}
	return doc
}

// docListeners returns the listeners that serve a path of the doc: its
// x-myim-listener, or the public one.
func docListeners(item *openapi3.PathItem) []string {
	v, ok := item.Extensions["x-myim-listener"].([]any)
	if !ok {
		return []string{node.ListenerHTTP}
	}
	var out []string
	for _, l := range v {
		out = append(out, fmt.Sprint(l))
	}
	return out
}

// docOperations returns "METHOD /path" for every operation of the doc, and
// withListeners "listener METHOD /path" for each listener that serves it.
func docOperations(doc *openapi3.T, withListeners bool) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !withListeners {
				out = append(out, method+" "+path)
				continue
			}
			for _, l := range docListeners(item) {
				out = append(out, l+" "+method+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// routeKey turns a ServeMux pattern into the doc's "METHOD /path" form: the
// "{$}" that anchors "/" is dropped.
func routeKey(pattern string) string {
	return strings.Replace(pattern, "{$}", "", 1)
}

// TestOpenAPIMatchesRouter builds myimd's node as the process does, with
// every optional route on (admin secret, profiler), and compares its router
// with docs/openapi.yaml both ways.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	cfg, err := loadConfig([]string{"--data-dir", t.TempDir(), "--endpoint-addr", "127.0.0.1:0",
		"--login-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--center-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0", "--admin-secret", "openapi-secret", "--pprof"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	n, parts, err := buildNode(cfg, log, node.NewLogRing(log.Handler(), 1), newBanner(cfg, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer parts.close()
	served := map[string]bool{}
	for _, r := range n.Routes() {
		served[r.Listener+" "+routeKey(r.Pattern)] = true
	}
	documented := map[string]bool{}
	for _, op := range docOperations(doc, true) {
		documented[op] = true
		if !served[op] {
			t.Errorf("%s documents %s, which the server does not serve", openAPIDoc, op)
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("the server serves %s, which %s does not document", op, openAPIDoc)
		}
	}
}

// apiChecker makes HTTP calls to a real myimd and validates each request
// and answer against docs/openapi.yaml, counting the operations covered.
type apiChecker struct {
	t       *testing.T
	p       *proc
	router  routers.Router
	covered map[string]int
}

// addr returns the address of the listener that serves path, as the doc
// says (x-myim-listener).
func (a *apiChecker) addr(path string) string {
	a.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.p.addrs["http"]+path, nil)
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		req.Method = m
		if route, _, err := a.router.FindRoute(req); err == nil {
			if slices.Contains(docListeners(route.PathItem), node.ListenerHTTP) {
				return a.p.addrs["http"]
			}
			return a.p.addrs["admin"]
		}
	}
	a.t.Fatalf("%s: not in %s", path, openAPIDoc)
	return ""
}

// do makes one call, checks it against the doc and that the status is
// want, and returns the answer's body.
func (a *apiChecker) do(method, path, token string, body []byte, hdr map[string]string, want int) []byte {
	a.t.Helper()
	base := "http://" + a.addr(path)
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	if body == nil {
		req, _ = http.NewRequest(method, base+path, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil && hdr["Content-Type"] == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	route, params, err := a.router.FindRoute(req)
	if err != nil {
		a.t.Fatalf("%s %s: not in %s: %v", method, path, openAPIDoc, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if body != nil {
		// ValidateRequest reads the body: give it a copy.
		in.Request = req.Clone(context.Background())
		in.Request.Body = io.NopCloser(bytes.NewReader(body))
	}
	// A request the server refuses may well break the doc's schemas: that
	// is why it is refused. Those the server takes must not.
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && want < 400 {
		a.t.Errorf("%s %s: the request breaks %s: %v", method, path, openAPIDoc, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.t.Fatalf("%s %s: status %d (%s), want %d", method, path, resp.StatusCode, out, want)
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Options: opts}
	rin.SetBodyBytes(out)
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		a.t.Errorf("%s %s: the answer %d %.300s breaks %s: %v", method, path, resp.StatusCode, out, openAPIDoc, err)
	}
	a.covered[route.Method+" "+route.Path]++
	return out
}

func (a *apiChecker) json(method, path, token, body string, want int) []byte {
	a.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return a.do(method, path, token, b, nil, want)
}

// TestOpenAPIAnswers calls every documented operation of a real myimd, and
// the refusals a client must handle, and validates each request and answer
// against docs/openapi.yaml.
func TestOpenAPIAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	const secret = "openapi-admin-secret"
	p := startMyimd(t, "--admin-secret", secret, "--pprof", "--user-invites", "1")
	// The doc names the default ports.
	doc.Servers = openapi3.Servers{{URL: "http://" + p.addrs["http"]}, {URL: "http://" + p.addrs["admin"]}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiChecker{t: t, p: p, router: router, covered: map[string]int{}}

	a.json("GET", "/healthz", "", "", http.StatusOK)
	a.json("GET", "/readyz", "", "", http.StatusOK)
	a.json("GET", "/", "", "", http.StatusOK)
	a.json("GET", "/chat", "", "", http.StatusOK)
	a.json("GET", "/metrics", "", "", http.StatusOK)
	a.json("GET", "/v1/status", "", "", http.StatusOK)

	a.json("POST", "/v1/users", "", `{"name":"ada","password":"password-ada"}`, http.StatusCreated)
	a.json("POST", "/v1/users", "", `{"name":"ada","password":"password-ada"}`, http.StatusConflict)
	a.json("POST", "/v1/users", "", `{"name":"bo","password":"short"}`, http.StatusBadRequest)
	for _, n := range []string{"bo", "cy"} {
		p.register(t, n, "password-"+n)
	}
	ada := p.connect(t, "ada", newDevice(t))
	bo := p.connect(t, "bo", newDevice(t))
	cy := p.connect(t, "cy", newDevice(t))
	tok := ada.login.Token

	a.json("GET", "/v1/users?name=bo", tok, "", http.StatusOK)
	a.json("GET", "/v1/users?name=nobody", tok, "", http.StatusNotFound)
	a.json("GET", "/v1/users?name=bo", "", "", http.StatusUnauthorized)

	a.json("PUT", "/v1/me", tok, `{"signature":"hello","profile":{"city":"Oslo"}}`, http.StatusOK)
	a.json("PUT", "/v1/me", tok, `{"profile":[1]}`, http.StatusBadRequest)
	a.json("POST", "/v1/invites", tok, "", http.StatusCreated)
	a.json("POST", "/v1/invites", tok, "", http.StatusForbidden) // one each
	a.json("POST", "/v1/invites", "", "", http.StatusUnauthorized)
	a.json("POST", "/v1/friends/requests", tok, fmt.Sprintf(`{"to":%d}`, bo.id), http.StatusAccepted)
	a.json("POST", "/v1/friends/requests", tok, `{"to":999999}`, http.StatusNotFound)
	a.json("GET", "/v1/friends", bo.login.Token, "", http.StatusOK)
	a.json("POST", "/v1/friends/accept", bo.login.Token, fmt.Sprintf(`{"from":%d}`, ada.id), http.StatusOK)
	a.json("POST", "/v1/friends/accept", bo.login.Token, fmt.Sprintf(`{"from":%d}`, cy.id), http.StatusNotFound)
	a.json("POST", "/v1/friends/requests", tok, fmt.Sprintf(`{"to":%d}`, bo.id), http.StatusConflict)
	a.json("POST", "/v1/friends/requests", tok, fmt.Sprintf(`{"to":%d}`, cy.id), http.StatusAccepted)
	a.json("DELETE", fmt.Sprintf("/v1/friends/%d", cy.id), tok, "", http.StatusNoContent)

	// Groups.
	out := a.json("POST", "/v1/groups", tok, `{"name":"api"}`, http.StatusCreated)
	var g struct {
		Group uint64 `json:"group"`
	}
	_ = jsonUnmarshal(out, &g)
	gp := fmt.Sprintf("/v1/groups/%d", g.Group)
	a.json("POST", "/v1/groups", tok, `{"name":""}`, http.StatusBadRequest)
	a.json("GET", "/v1/groups", tok, "", http.StatusOK)
	a.json("POST", gp+"/join", cy.login.Token, "", http.StatusForbidden)
	a.json("GET", gp+"/members", cy.login.Token, "", http.StatusForbidden)
	a.json("POST", gp+"/invite", tok, fmt.Sprintf(`{"user":%d}`, bo.id), http.StatusOK)
	a.json("POST", gp+"/invite", tok, `{"user":999999}`, http.StatusNotFound)
	a.json("POST", gp+"/role", tok, fmt.Sprintf(`{"user":%d,"role":"admin"}`, bo.id), http.StatusOK)
	a.json("POST", gp+"/role", tok, fmt.Sprintf(`{"user":%d,"role":"boss"}`, bo.id), http.StatusBadRequest)
	a.json("PATCH", gp, bo.login.Token, `{"open":true}`, http.StatusForbidden)
	a.json("PATCH", gp, tok, `{"open":true}`, http.StatusOK)
	a.json("POST", gp+"/join", cy.login.Token, "", http.StatusOK)
	a.json("GET", gp+"/members", cy.login.Token, "", http.StatusOK)
	a.json("POST", gp+"/remove", bo.login.Token, fmt.Sprintf(`{"user":%d}`, cy.id), http.StatusOK)
	a.json("POST", gp+"/remove", bo.login.Token, fmt.Sprintf(`{"user":%d}`, cy.id), http.StatusNotFound)
	a.json("POST", gp+"/leave", tok, "", http.StatusConflict)
	a.json("POST", gp+"/leave", bo.login.Token, "", http.StatusNoContent)
	a.json("GET", "/v1/groups/0/members", tok, "", http.StatusBadRequest)

	// Files: a whole upload, a resumed one, ranges, shares.
	content := bytes.Repeat([]byte("myim "), 1000)
	sum := sha256.Sum256(content)
	hexSum := hex.EncodeToString(sum[:])
	out = a.do("PUT", "/v1/files?name=a.txt&sha256="+hexSum, tok, content,
		map[string]string{"Content-Type": "application/octet-stream"}, http.StatusCreated)
	var f struct {
		ID uint64 `json:"id"`
	}
	_ = jsonUnmarshal(out, &f)
	a.do("PUT", "/v1/files?name=b.txt&sha256="+strings.Repeat("0", 64), tok, content,
		map[string]string{"Content-Type": "application/octet-stream"}, http.StatusBadRequest)
	up, err := ada.conn.StartUpload(context.Background(), "c.txt", int64(len(content)), hexSum)
	if err != nil {
		t.Fatal(err)
	}
	a.json("GET", fmt.Sprintf("/v1/uploads/%d", up), tok, "", http.StatusOK)
	a.do("PUT", fmt.Sprintf("/v1/uploads/%d", up), tok, content[:1000],
		map[string]string{"Content-Type": "application/octet-stream", "Upload-Offset": "5"}, http.StatusConflict)
	a.do("PUT", fmt.Sprintf("/v1/uploads/%d", up), tok, content,
		map[string]string{"Content-Type": "application/octet-stream", "Upload-Offset": "0"}, http.StatusCreated)
	a.json("GET", fmt.Sprintf("/v1/uploads/%d", up), tok, "", http.StatusNotFound)
	a.json("GET", "/v1/files", tok, "", http.StatusOK)
	fp := fmt.Sprintf("/v1/files/%d", f.ID)
	a.json("GET", fp, tok, "", http.StatusOK)
	a.do("GET", fp, tok, nil, map[string]string{"Range": "bytes=0-9"}, http.StatusPartialContent)
	a.json("GET", fp, bo.login.Token, "", http.StatusNotFound)
	a.json("POST", fp+"/share", tok, fmt.Sprintf(`{"user":%d}`, bo.id), http.StatusOK)
	a.json("POST", fp+"/share", tok, fmt.Sprintf(`{"user":%d}`, cy.id), http.StatusForbidden)
	a.json("GET", fp, bo.login.Token, "", http.StatusOK)
	a.json("POST", fp+"/unshare", tok, fmt.Sprintf(`{"user":%d}`, bo.id), http.StatusOK)
	a.json("DELETE", fp, bo.login.Token, "", http.StatusNotFound)
	a.json("DELETE", fp, tok, "", http.StatusNoContent)

	// Admin.
	a.json("GET", "/v1/admin/stats", "", "", http.StatusUnauthorized)
	a.json("GET", "/v1/admin/stats", secret, "", http.StatusOK)
	out = a.json("GET", "/v1/admin/users/online?limit=10", secret, "", http.StatusOK)
	a.json("GET", "/v1/admin/users/online?limit=x", secret, "", http.StatusBadRequest)
	var online struct {
		Sessions []struct {
			User   uint64 `json:"user"`
			SID    string `json:"sid"`
			Device string `json:"device"`
		} `json:"sessions"`
	}
	_ = jsonUnmarshal(out, &online)
	var cySID, cyDevice string
	for _, s := range online.Sessions {
		if s.User == cy.id {
			cySID, cyDevice = s.SID, s.Device
		}
	}
	if cySID == "" || cyDevice == "" {
		t.Fatalf("cy's session in %s", out)
	}
	a.json("GET", fmt.Sprintf("/v1/admin/users/%d", cy.id), secret, "", http.StatusOK)
	a.json("GET", "/v1/admin/users/999999", secret, "", http.StatusNotFound)
	a.json("GET", fmt.Sprintf("/v1/admin/groups/%d", g.Group), secret, "", http.StatusOK)
	a.json("GET", "/v1/admin/groups/999999", secret, "", http.StatusNotFound)
	a.json("POST", fmt.Sprintf("/v1/admin/users/%d/devices/%s/kick", cy.id, cyDevice), secret, "", http.StatusOK)
	a.json("POST", fmt.Sprintf("/v1/admin/users/%d/devices/zz/kick", cy.id), secret, "", http.StatusBadRequest)
	a.json("POST", "/v1/admin/tokens/revoke", secret, fmt.Sprintf(`{"sid":%q}`, cySID), http.StatusOK)
	a.json("POST", "/v1/admin/tokens/revoke", secret, `{}`, http.StatusBadRequest)
	a.json("POST", fmt.Sprintf("/v1/admin/users/%d/kick", bo.id), secret, "", http.StatusOK)
	a.json("POST", "/v1/admin/invites", secret, "", http.StatusCreated)
	a.json("POST", "/v1/admin/users/bulk", secret, `{"prefix":"load","first":1,"count":3,"password":"password-load"}`, http.StatusOK)
	a.json("POST", "/v1/admin/users/bulk", secret, `{"prefix":"load","count":0,"password":"password-load"}`, http.StatusBadRequest)
	key := base64.StdEncoding.EncodeToString(newDevice(t).PublicKey().Bytes())
	a.json("POST", "/v1/admin/tokens", secret, fmt.Sprintf(`{"users":[%d],"device_key":%q,"ttl":"10m"}`, ada.id, key), http.StatusOK)
	a.json("POST", "/v1/admin/tokens", secret, `{"users":[1],"device_key":"x"}`, http.StatusBadRequest)
	a.json("GET", "/debug/pprof/", secret, "", http.StatusOK)
	a.json("GET", "/debug/pprof/cmdline", secret, "", http.StatusOK)
	a.json("GET", "/debug/pprof/symbol", secret, "", http.StatusOK)
	a.do("POST", "/debug/pprof/symbol", secret, []byte("0x0"), map[string]string{"Content-Type": "text/plain"}, http.StatusOK)
	a.json("GET", "/debug/pprof/profile?seconds=1", secret, "", http.StatusOK)
	a.json("GET", "/debug/pprof/trace?seconds=0.1", secret, "", http.StatusOK)
	a.json("GET", "/v1/admin/drain", secret, "", http.StatusOK)
	a.json("POST", "/v1/admin/drain", secret, "", http.StatusOK) // last: the endpoint empties

	for _, op := range docOperations(doc, false) {
		if a.covered[op] == 0 {
			t.Errorf("no real answer checked for %s", op)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestOpenAPIRegistration checks registration by invite against the doc:
// refused without a code, taken with one from the admin API.
func TestOpenAPIRegistration(t *testing.T) {
	doc := loadOpenAPI(t)
	const secret = "openapi-admin-secret"
	p := startMyimd(t, "--admin-secret", secret, "--registration", "invite")
	doc.Servers = openapi3.Servers{{URL: "http://" + p.addrs["http"]}, {URL: "http://" + p.addrs["admin"]}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiChecker{t: t, p: p, router: router, covered: map[string]int{}}
	a.json("POST", "/v1/users", "", `{"name":"ivy","password":"password-ivy"}`, http.StatusForbidden)
	var inv struct {
		Code string `json:"code"`
	}
	_ = jsonUnmarshal(a.json("POST", "/v1/admin/invites", secret, "", http.StatusCreated), &inv)
	a.json("POST", "/v1/users", "", fmt.Sprintf(`{"name":"ivy","password":"password-ivy","invite":%q}`, inv.Code), http.StatusCreated)
	a.json("POST", "/v1/users", "", fmt.Sprintf(`{"name":"ivo","password":"password-ivo","invite":%q}`, inv.Code), http.StatusForbidden)
}
