package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/myim/myim/storage"
)

// TestEveryStoreMethodUsed keeps the Store interface free of dead code:
// each method is called by production code (engine or cmd, tests and the
// metrics wrapper that only forwards calls left out), or it goes.
func TestEveryStoreMethodUsed(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{".", "../cmd/myimd"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || filepath.Base(f) == "metrics.go" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
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
