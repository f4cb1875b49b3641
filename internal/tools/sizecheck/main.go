// Command sizecheck fails when a non-test Go file of the main module is
// over 800 lines or one of its functions is over 100 lines, so that files
// stay small enough to read and functions short enough to follow. It walks
// the directory given (default "."), skipping other modules (a directory
// with its own go.mod, such as benchmarks/), testdata, node_modules and
// hidden directories. scripts/test.sh runs it from the repository root.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The limits, in lines; a function's span runs from its func keyword
// (not its doc comment) to its closing brace.
const (
	maxFileLines = 800
	maxFuncLines = 100
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	problems, err := check(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sizecheck:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "sizecheck: %d over the limits (files %d lines, functions %d lines): split them by concern\n",
			len(problems), maxFileLines, maxFuncLines)
		os.Exit(1)
	}
}

// check returns one line per file or function over the limits under root.
func check(root string) ([]string, error) {
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return skipDir(root, path, d.Name())
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
			problems = append(problems, fmt.Sprintf("%s: %d lines (limit %d)", path, n, maxFileLines))
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n > maxFuncLines {
				problems = append(problems, fmt.Sprintf("%s:%d: func %s: %d lines (limit %d)", path, start.Line, funcName(fn), n, maxFuncLines))
			}
		}
		return nil
	})
	return problems, err
}

// skipDir returns fs.SkipDir for a directory outside the main module's
// own sources.
func skipDir(root, path, name string) error {
	if path == root {
		return nil
	}
	if name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") {
		return fs.SkipDir
	}
	if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
		return fs.SkipDir // another module
	}
	return nil
}

// funcName is fn's name, with its receiver type for a method.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if ix, ok := t.(*ast.IndexListExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}
