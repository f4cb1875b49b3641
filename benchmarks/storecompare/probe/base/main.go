// Command base is the baseline of the binary size comparison: it does what
// the engine probes do around the engine (temp dir, formatting, errors).
package main

import (
	"fmt"
	"os"
)

func main() {
	dir, err := os.MkdirTemp("", "probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	fmt.Println("ok", dir)
}
