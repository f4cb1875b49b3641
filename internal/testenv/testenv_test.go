package testenv

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// echoServer answers every line with the same line until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// echo sends line over c and returns the answer.
func echo(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

// dialEcho dials addr and checks that line comes back; the connection is
// closed when the test ends.
func dialEcho(t *testing.T, addr, line string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if got, err := echo(c, line); err != nil || got != line {
		t.Fatalf("echo of %q through the proxy: %q, %v", line, got, err)
	}
	return c
}

func TestProxyCutRestore(t *testing.T) {
	p := StartProxy(t, echoServer(t))
	addr := p.Addr()
	c := dialEcho(t, addr, "one")

	p.Cut()
	if _, err := echo(c, "two"); err == nil {
		t.Fatal("a forwarded connection survived Cut")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a cut proxy accepted a connection")
	}
	p.Cut() // a second Cut does nothing

	p.Restore()
	if p.Addr() != addr {
		t.Fatalf("restored on %s, was %s", p.Addr(), addr)
	}
	dialEcho(t, addr, "three")
}

func TestRedisPrefixCleanup(t *testing.T) {
	addr := RedisAddr(t)
	c, err := redisClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var prefix string
	t.Run("keys", func(t *testing.T) {
		prefix = RedisPrefix(t, addr)
		for _, k := range []string{"a", "b{x}", "c:d"} {
			if err := c.Do(ctx, c.B().Set().Key(prefix+k).Value("1").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	})
	e, err := c.Do(ctx, c.B().Scan().Cursor(0).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Elements) != 0 || e.Cursor != 0 {
		t.Fatalf("keys left under %s after the test: %v", prefix, e.Elements)
	}
}

func TestRedisServerRestart(t *testing.T) {
	r := StartRedisServer(t)
	set := func(k string) {
		t.Helper()
		if got, err := r.do("SET", k, "1"); err != nil || got != "+OK" {
			t.Fatalf("SET %s: %q %v", k, got, err)
		}
	}
	exists := func(k string) bool {
		t.Helper()
		got, err := r.do("EXISTS", k)
		if err != nil {
			t.Fatal(err)
		}
		return got == ":1"
	}
	pid := r.PID()
	set("saved")
	r.Save()
	set("unsaved")
	r.Kill()
	if r.PID() != 0 {
		t.Fatal("a killed server has a PID")
	}
	if _, err := r.do("PING"); err == nil {
		t.Fatal("a killed server answered")
	}
	r.Start()
	if r.PID() == pid {
		t.Fatal("restarted with the old PID")
	}
	if !exists("saved") || exists("unsaved") {
		t.Fatal("a restart kept other than what Save wrote")
	}

	// A key set after the last Save is lost; the saved one stays.
	set("gone")
	r.Kill()
	r.Start()
	if exists("gone") || !exists("saved") {
		t.Fatal("a restart did not load exactly the last Save")
	}
}

func TestMySQLDatabase(t *testing.T) {
	var dsn string
	t.Run("create", func(t *testing.T) {
		dsn = MySQLDatabase(t)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
	})
	if dsn == "" {
		t.Skip("no MySQL")
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := mc.DBName
	mc.DBName = ""
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s left after the test", name)
	}
}
