//go:build race

package main

const bigFile = 32 << 20
