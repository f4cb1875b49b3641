// Command gopeer is a Go SDK client that client/ts's browser test drives
// through a line protocol on stdin, so that a Go client and a browser talk
// in one test. Commands, one a line:
//
//	login NAME PASSWORD     log in and connect (the user exists)
//	befriend NAME           ask NAME to be friends (HTTP API)
//	accept NAME             accept NAME's request (HTTP API)
//	send NAME TEXT...       send TEXT to NAME at QoS 1 and wait for the ACK
//
// It answers "ok ...", "acked STATUS" or "error ...", and prints "msg
// FROM TEXT" for every message it receives (acknowledged, deduplicated).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/myim/myim/client"
	"github.com/myim/myim/frame"
	"github.com/myim/myim/session"
)

type peer struct {
	cfg       client.Config
	loginAddr string
	httpURL   string
	conn      *client.Conn
	token     string
	out       sync.Mutex
}

func (p *peer) say(format string, a ...any) {
	p.out.Lock()
	defer p.out.Unlock()
	fmt.Printf(format+"\n", a...)
}

func main() {
	loginAddr := flag.String("login", "", "login listener (TCP)")
	httpURL := flag.String("http", "", "public HTTP listener URL")
	rootFile := flag.String("roots", "", "root.pub")
	flag.Parse()
	raw, err := os.ReadFile(*rootFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := session.ParseVerifyKey(string(raw))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dev, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p := &peer{loginAddr: *loginAddr, httpURL: *httpURL, cfg: client.Config{Roots: []session.VerifyKey{root}, Device: dev,
		AutoAck: true, AutoFetch: true, Dedupe: client.NewDedupe(0)}}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if err := p.run(f); err != nil {
			p.say("error %v", err)
		}
	}
}

func (p *peer) run(f []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch {
	case f[0] == "login" && len(f) == 3:
		res, err := client.Login(ctx, p.cfg, p.loginAddr, f[1], []byte(f[2]))
		if err != nil {
			return err
		}
		c, err := client.Connect(ctx, p.cfg, res, res.Servers[0])
		if err != nil {
			return err
		}
		p.conn, p.token = c, res.Token
		go p.read(c)
		p.say("ok %d", c.UserID())
	case f[0] == "befriend" && len(f) == 2:
		id, err := p.find(ctx, f[1])
		if err != nil {
			return err
		}
		if err := p.post(ctx, "/v1/friends/requests", fmt.Sprintf(`{"to":%d}`, id)); err != nil {
			return err
		}
		p.say("ok")
	case f[0] == "accept" && len(f) == 2:
		id, err := p.find(ctx, f[1])
		if err != nil {
			return err
		}
		if err := p.post(ctx, "/v1/friends/accept", fmt.Sprintf(`{"from":%d}`, id)); err != nil {
			return err
		}
		p.say("ok")
	case f[0] == "send" && len(f) >= 3:
		id, err := p.find(ctx, f[1])
		if err != nil {
			return err
		}
		a, err := p.conn.SendWait(ctx, frame.CmdMsg, id, p.conn.NewCID(), []byte(strings.Join(f[2:], " ")))
		if err != nil {
			return err
		}
		p.say("acked %s", map[byte]string{frame.AckDelivered: "delivered", frame.AckStored: "stored", frame.AckDuplicate: "duplicate"}[a.Status])
	default:
		return errors.New("unknown command")
	}
	return nil
}

func (p *peer) read(c *client.Conn) {
	for f := range c.Frames() {
		if f.Cmd == frame.CmdMsg {
			m := frame.Msg(f.Body)
			p.say("msg %d %s", m.From(), m.Content())
		}
	}
}

func (p *peer) find(ctx context.Context, name string) (uint64, error) {
	var card struct {
		User uint64 `json:"user"`
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", p.httpURL+"/v1/users?name="+url.QueryEscape(name), nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("find %s: %s", name, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&card)
	return card.User, err
}

func (p *peer) post(ctx context.Context, path, body string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", p.httpURL+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}
