//go:build race

package login_test

// raceEnabled lets scale tests shrink under the race detector, which makes
// crypto about ten times slower; scripts/test.sh runs them at full size
// without it.
const raceEnabled = true
