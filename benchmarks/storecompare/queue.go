package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Msg is one offline message as the workload sees it: the recipient, the
// (Time, MID) pair that orders a recipient's queue, and the payload fields
// the storage package keeps too.
type Msg struct {
	To      uint64
	Time    int64
	MID     uint64
	From    uint64
	CID     uint64
	Content []byte
}

// Key names one stored message of a known recipient.
type Key struct {
	Time int64
	MID  uint64
}

// Queue is the minimal offline-queue workload every engine implements:
// append (one durable commit per call, concurrent callers may share one),
// fetch a recipient's oldest messages in (Time, MID) order, and delete what
// the client acknowledged (one durable commit per call).
type Queue interface {
	// Append stores msgs, all or none, durably.
	Append(msgs []Msg) error
	// Fetch returns up to limit of user's oldest messages in (Time, MID)
	// order, appended to buf[:0].
	Fetch(user uint64, limit int, buf []Msg) ([]Msg, error)
	// Ack deletes user's messages named by keys, durably. The keys are a
	// page Fetch returned.
	Ack(user uint64, keys []Key) error
	// Close releases the engine.
	Close() error
}

// Engine opens a Queue in an empty directory.
type Engine struct {
	// ID names the engine in benchmark names and flags; Label in tables.
	ID, Label string
	// Durability states what a successful commit guarantees.
	Durability string
	Open       func(dir string, noSync bool) (Queue, error)
}

// engines are the rows of the comparison. The baseline of the ratios is
// the first, bare bbolt.
var engines = []Engine{
	{ID: "bbolt", Label: "bbolt", Open: openBolt,
		Durability: "fdatasync of the data pages, then of the meta page, per commit (NoSync=false)"},
	{ID: "storage", Label: "bbolt via storage.Store", Open: openStorageQueue,
		Durability: "as bbolt (the real embedded store, with its MID and CID indexes)"},
	{ID: "pebble", Label: "pebble", Open: openPebble,
		Durability: "WAL fsync per commit (pebble.Sync); concurrent commits share one"},
	{ID: "sqlite", Label: "sqlite (modernc)", Open: openSQLite,
		Durability: "journal_mode=WAL, synchronous=FULL: WAL fsync per commit"},
}

// pebbleNaive is the queue layout without the two mitigations: every fetch
// scans from the start of the recipient's prefix and acks write point
// tombstones (Delete). Only the steady-state workload runs it.
var pebbleNaive = Engine{ID: "pebble-naive", Label: "pebble, naive (prefix scan, Delete)", Durability: "as pebble",
	Open: func(dir string, noSync bool) (Queue, error) { return openPebbleOpts(dir, noSync, true) }}

func engineByID(id string) (Engine, bool) {
	for _, e := range append(engines, pebbleNaive) {
		if e.ID == id {
			return e, true
		}
	}
	return Engine{}, false
}

// ---- keys and values shared by the key-value engines

// putTime appends t so that byte order matches int64 order.
func putTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^1<<63)
}

func getTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ 1<<63) }

// msgKey is to(8)|time(8)|mid(8), big endian: byte order is fetch order.
func msgKey(b []byte, to uint64, t int64, mid uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, to)
	b = putTime(b, t)
	return binary.BigEndian.AppendUint64(b, mid)
}

// msgVal is from(8)|cid(8)|content, the storage package's layout less the
// server id and QoS.
func msgVal(b []byte, m *Msg) []byte {
	b = binary.BigEndian.AppendUint64(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.CID)
	return append(b, m.Content...)
}

// cacheBytes is the block or page cache given to pebble and SQLite (bbolt
// reads through the OS page cache).
const cacheBytes = 32 << 20

// decodeKV fills m from a key and a value; the content is copied.
func decodeKV(k, v []byte, m *Msg) error {
	if len(k) != 24 || len(v) < 16 {
		return fmt.Errorf("corrupt record (key %d bytes, value %d bytes)", len(k), len(v))
	}
	m.To = binary.BigEndian.Uint64(k)
	m.Time = getTime(k[8:])
	m.MID = binary.BigEndian.Uint64(k[16:])
	m.From = binary.BigEndian.Uint64(v)
	m.CID = binary.BigEndian.Uint64(v[8:])
	m.Content = append(m.Content[:0], v[16:]...)
	return nil
}

// grow returns buf[:n+1] reusing its backing array (and the Content slice
// of the element) when it can.
func grow(buf []Msg) ([]Msg, *Msg) {
	if len(buf) < cap(buf) {
		buf = buf[:len(buf)+1]
	} else {
		buf = append(buf, Msg{})
	}
	return buf, &buf[len(buf)-1]
}

// dirSize is the sum of the apparent sizes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// ---- group commit

// groupCommit lets concurrent writers share one transaction and its fsyncs,
// the way storage's embedded backend does: a writer that finds no commit
// running commits alone at once; writers that arrive while one runs share
// the next. commit runs all fns in one transaction.
type groupCommit[T any] struct {
	commit func(fns []func(T) error) error

	mu         sync.Mutex
	pending    []*gcReq[T]
	committing bool
}

type gcReq[T any] struct {
	fn   func(T) error
	done chan error
}

func (g *groupCommit[T]) do(fn func(T) error) error {
	r := &gcReq[T]{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, r)
	lead := !g.committing
	g.committing = true
	g.mu.Unlock()
	if lead {
		g.run()
	}
	return <-r.done
}

func (g *groupCommit[T]) run() {
	g.mu.Lock()
	group := g.pending
	g.pending = nil
	g.mu.Unlock()

	fns := make([]func(T) error, len(group))
	for i, r := range group {
		fns[i] = r.fn
	}
	// A failing fn fails the whole group: the benchmark treats every
	// error as fatal, so there is no retry without it.
	err := g.commit(fns)
	for _, r := range group {
		r.done <- err
	}

	g.mu.Lock()
	more := len(g.pending) > 0
	g.committing = more
	g.mu.Unlock()
	if more {
		go g.run()
	}
}
