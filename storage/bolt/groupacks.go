package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/myim/myim/storage"
)

// seqRange is the seqs (from, to] one member's ack covers.
type seqRange struct{ from, to uint64 }

// AckGroups applies the acks in one transaction: each member's floor moves
// as in AckGroup, and each group's messages are walked once, each counting
// every ack that covers it, instead of once per ack.
func (s *store) AckGroups(ctx context.Context, acks []storage.GroupAck) error {
	if len(acks) == 0 {
		return s.begin(ctx)
	}
	return s.batch(ctx, func(tx *bbolt.Tx) error {
		ranges := make(map[uint64][]seqRange)
		for _, a := range acks {
			r, ok, err := ackMember(tx, a)
			if err != nil {
				return err
			}
			if ok {
				ranges[a.Group] = append(ranges[a.Group], r)
			}
		}
		for group, rs := range ranges {
			if err := countDeliveredRanges(tx, group, rs); err != nil {
				return err
			}
		}
		return nil
	})
}

// ackMember moves a's member's acked seq up to a.Seq (capped at the
// group's highest) and returns the seqs it newly covers; ok is false when
// it covers none, or the group or the membership is gone.
func ackMember(tx *bbolt.Tx, a storage.GroupAck) (seqRange, bool, error) {
	g, err := getGroup(tx, a.Group)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return seqRange{}, false, nil
		}
		return seqRange{}, false, err
	}
	m, ok, err := getMember(tx, a.Group, a.User)
	if err != nil || !ok {
		return seqRange{}, false, err
	}
	upTo, floor := min(a.Seq, g.highest), max(m.JoinSeq, m.AckedSeq)
	if upTo <= floor {
		return seqRange{}, false, nil
	}
	m.AckedSeq = upTo
	return seqRange{floor, upTo}, true, putMember(tx, a.Group, a.User, m)
}

// countDeliveredRanges adds to SentCount of each of the group's stored
// messages the number of ranges that cover its seq, and deletes those that
// reached MemberCount.
func countDeliveredRanges(tx *bbolt.Tx, group uint64, rs []seqRange) error {
	starts := make([]uint64, 0, len(rs)) // first seq covered
	ends := make([]uint64, 0, len(rs))   // last seq covered
	for _, r := range rs {
		if r.to > r.from {
			starts, ends = append(starts, r.from+1), append(ends, r.to)
		}
	}
	if len(starts) == 0 {
		return nil
	}
	slices.Sort(starts)
	slices.Sort(ends)
	msgs := tx.Bucket(bktGMsgs)
	type change struct {
		key, val []byte // copies; nil val: delete
		expKey   []byte
	}
	var changes []change
	end := pair(group, ends[len(ends)-1])
	c := msgs.Cursor()
	si, ei, active := 0, 0, 0
	for k, v := c.Seek(pair(group, starts[0])); k != nil && bytes.Compare(k, end) <= 0; k, v = c.Next() {
		if len(v) < gmsgFixed {
			return errCorrupt("gmsgs")
		}
		seq := binary.BigEndian.Uint64(k[8:])
		for si < len(starts) && starts[si] <= seq {
			si, active = si+1, active+1
		}
		for ei < len(ends) && ends[ei] < seq {
			ei, active = ei+1, active-1
		}
		if active == 0 {
			continue
		}
		sent := binary.BigEndian.Uint32(v[gmsgSentOff:]) + uint32(active)
		if sent >= binary.BigEndian.Uint32(v[gmsgCountOff:]) {
			ch := change{key: bytes.Clone(k)}
			if exp := getTime(v[gmsgExpOff:]); exp != 0 {
				ch.expKey = expKey(exp, group, seq)
			}
			changes = append(changes, ch)
			continue
		}
		nv := bytes.Clone(v)
		binary.BigEndian.PutUint32(nv[gmsgSentOff:], sent)
		changes = append(changes, change{key: bytes.Clone(k), val: nv})
	}
	// Applied after the scan: changing a bucket under a live cursor can make
	// Next skip keys.
	exp := tx.Bucket(bktGExp)
	for _, ch := range changes {
		if ch.val != nil {
			if err := msgs.Put(ch.key, ch.val); err != nil {
				return err
			}
			continue
		}
		if err := msgs.Delete(ch.key); err != nil {
			return err
		}
		if ch.expKey != nil {
			if err := exp.Delete(ch.expKey); err != nil {
				return err
			}
		}
	}
	return nil
}
