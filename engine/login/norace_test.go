//go:build !race

package login_test

const raceEnabled = false
