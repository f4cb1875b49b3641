//go:build !race

package main

// bigFile is the size of the large-file tests: 1 GiB against the plain
// binary; the race detector's client side makes that too slow.
const bigFile = 1 << 30
