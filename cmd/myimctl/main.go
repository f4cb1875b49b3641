// Command myimctl administers a running myimd through its HTTP API.
//
//	myimctl [--http ADDR] user add NAME    (the password is read from stdin)
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bytedance/sonic"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("myimctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", envOr("MYIM_HTTP_ADDR", "127.0.0.1:5280"), "myimd HTTP API address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) != 3 || rest[0] != "user" || rest[1] != "add" {
		fmt.Fprintln(stderr, "usage: myimctl [--http ADDR] user add NAME   (password on stdin)")
		return 2
	}
	name := rest[2]
	fmt.Fprintf(stderr, "password for %s: ", name)
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(stderr, "\nmyimctl: no password given")
		return 2
	}
	body, _ := sonic.Marshal(map[string]string{"name": name, "password": strings.TrimRight(line, "\r\n")})
	host := *addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	cl := &http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Post("http://"+host+"/v1/users", "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "\nmyimctl: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintln(stderr)
	if resp.StatusCode != http.StatusCreated {
		fmt.Fprintf(stderr, "myimctl: %s: %s\n", resp.Status, strings.TrimSpace(string(out)))
		return 1
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(out)))
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
