// Package buildinfo names the build every MyIM binary runs: its version
// (set at link time with -ldflags "-X github.com/myim/myim/internal/buildinfo.Version=1.2.3",
// else taken from the module's build information) and the commit and Go
// version the binary was built from.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release this binary was built as. The link-time value
// wins; without it, a build from a module download reports the module's
// version, and a build from a work tree reports "devel".
var Version = ""

// Info describes a build. The zero value is not useful: use Get.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version"`
}

// Get returns this binary's build. Safe for concurrent use.
func Get() Info {
	in := Info{Version: Version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				in.Commit = s.Value[:12]
			}
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// String is the line `--version` prints: "myimd 1.2.3 (commit abcdef123456, go1.26.8)".
func (in Info) String(program string) string {
	if in.Commit != "" {
		return fmt.Sprintf("%s %s (commit %s, %s)", program, in.Version, in.Commit, in.GoVersion)
	}
	return fmt.Sprintf("%s %s (%s)", program, in.Version, in.GoVersion)
}
