package frame

import "github.com/valyala/bytebufferpool"

// encodePool holds buffers for outbound frames. It is its own pool so that
// frame sizes calibrate it, not crypto or JSON scratch sizes.
var encodePool bytebufferpool.Pool

// AcquireBuffer returns an empty pooled buffer for encoding frames. Pair every
// call with ReleaseBuffer; a buffer handed to gnet's AsyncWrite is released in
// its callback, never before. Safe for concurrent use.
func AcquireBuffer() *bytebufferpool.ByteBuffer { return encodePool.Get() }

// ReleaseBuffer returns b to the pool. b must not be used afterwards.
// Oversized buffers are dropped by the pool rather than kept.
func ReleaseBuffer(b *bytebufferpool.ByteBuffer) { encodePool.Put(b) }
