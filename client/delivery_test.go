package client

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/myim/myim/frame"
)

// groupFrame is a pushed GROUP_MSG of group 16 numbered seq.
func groupFrame(seq uint64) Frame {
	f, _ := frame.AppendMsg(nil, frame.CmdGroupMsg, frame.QoS1,
		frame.MsgHeader{From: 1, To: 16, CID: 100 + seq, MID: seq}, []byte("x"))
	return Frame{Cmd: frame.CmdGroupMsg, QoS: frame.QoS1, Body: frame.Frame(f).Body()}
}

func seqs(fs []Frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = frame.Msg(f.Body).MID()
	}
	return out
}

// TestGroupSequence: a tracked group's messages come out in order, each
// once, and the ack never passes a gap.
func TestGroupSequence(t *testing.T) {
	var g groupTracker
	g.track(16, 4) // joined at 4: expects 5
	now := time.Now()
	steps := []struct {
		in      uint64
		out     []uint64
		wantAck uint64
	}{
		{7, nil, 0}, // early: held
		{6, nil, 0}, // early: held
		{5, []uint64{5, 6, 7}, 7},
		{6, nil, 0}, // had it
		{9, nil, 0}, // gap at 8
		{8, []uint64{8, 9}, 9},
	}
	for i, s := range steps {
		out, ack := g.add(groupFrame(s.in), now, true)
		if !slices.Equal(seqs(out), s.out) || ack != s.wantAck {
			t.Fatalf("step %d (seq %d): out %v ack %d, want %v ack %d", i, s.in, seqs(out), ack, s.out, s.wantAck)
		}
	}
	// A gap that a complete fetch did not fill is given up.
	g.add(groupFrame(12), now, true)
	if gaps := g.gaps(now.Add(time.Second)); !slices.Equal(gaps, []uint64{16}) {
		t.Fatalf("gaps %v", gaps)
	}
	out, acks := g.skipGaps(now.Add(time.Second))
	if !slices.Equal(seqs(out), []uint64{12}) || acks[16] != 12 {
		t.Fatalf("skip: out %v acks %v", seqs(out), acks)
	}
}

// TestGroupSeedAfterFetch: a group the SDK knows nothing of is held until
// the first complete group fetch, then starts at the lowest it holds.
func TestGroupSeedAfterFetch(t *testing.T) {
	var g groupTracker
	now := time.Now()
	for _, s := range []uint64{21, 20, 23} { // a push (21) before the fetched 20
		if out, _ := g.add(groupFrame(s), now, false); out != nil {
			t.Fatalf("seq %d shown before the fetch ended", s)
		}
	}
	out, acks := g.seedAll()
	if !slices.Equal(seqs(out), []uint64{20, 21}) || acks[16] != 21 {
		t.Fatalf("seed: out %v acks %v", seqs(out), acks)
	}
	if out, ack := g.add(groupFrame(22), now, true); !slices.Equal(seqs(out), []uint64{22, 23}) || ack != 23 {
		t.Fatalf("after seed: out %v ack %d", seqs(out), ack)
	}
}

// TestSendErrorRetryable: a retry ERROR, a timeout and a lost connection
// may be retried with the same CID; another refusal is final.
func TestSendErrorRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&ServerError{Code: frame.ErrCodeRetry}, true},
		{ErrSendTimeout, true},
		{ErrNotAcked, true},
		{&ServerError{Code: frame.ErrCodeForbidden}, false},
	} {
		err := error(&SendError{CID: 1, Err: c.err})
		if Retryable(err) != c.want {
			t.Errorf("%v: retryable %v, want %v", c.err, !c.want, c.want)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%v is not found through SendError", c.err)
		}
	}
}
