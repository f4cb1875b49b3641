package node

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/myim/myim/storage"
)

// TestEveryStoreMethodUsed keeps the Store interface free of dead code:
// each method is called by production code (under engine or cmd, tests and the
// metrics wrapper that only forwards calls left out), or it goes.
func TestEveryStoreMethodUsed(t *testing.T) {
	var src strings.Builder
	for _, root := range []string{"../../engine", "../../cmd"} {
		err := filepath.WalkDir(root, func(f string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(f, ".go") ||
				strings.HasSuffix(f, "_test.go") || filepath.Base(f) == "metrics.go" {
				return err
			}
			b, err := os.ReadFile(f)
			src.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	code := src.String()
	st := reflect.TypeFor[storage.Store]()
	for i := 0; i < st.NumMethod(); i++ {
		name := st.Method(i).Name
		if !strings.Contains(code, "."+name+"(") {
			t.Errorf("storage.Store.%s is called by no production code: use it or remove it", name)
		}
	}
}
