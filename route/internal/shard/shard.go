// Package shard spreads user ids over a fixed power-of-two number of
// shards, for the route package's sharded maps.
package shard

// Count is the number of shards in route.Local, route.Memory and the Redis
// table's recent writes. 64 keeps lock contention negligible up to a few
// dozen cores (the chance that two of N concurrent lookups collide is about
// N²/128) while the array of locks still fits in a handful of cache lines'
// worth of headers. It must be a power of two because Of keeps the top Bits
// bits of a product.
const (
	Bits  = 6
	Count = 1 << Bits
)

// Of maps a user id to a shard in [0, Count). User ids are often
// sequential, so the id is mixed with a Fibonacci multiplier first and the
// top bits are used; taking the low bits directly would be fine for
// sequential ids but cluster badly for ids that share a low-bit pattern
// (e.g. per-region prefixes).
func Of(user uint64) uint64 {
	return (user * 0x9E3779B97F4A7C15) >> (64 - Bits)
}
