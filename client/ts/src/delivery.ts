/**
 * What docs/protocol.md "Delivery and reconnect" asks of a client: drop a
 * message whose (sender, CID) was shown already, and show a group's
 * messages once each, in sequence order, acknowledging them cumulatively.
 */
import type { Msg } from "./frame.js";

/** Remembers the last n (sender, CID) pairs. Share one across a user's reconnects. */
export class Dedupe {
  private seen = new Set<string>();
  private ring: string[];
  private next = 0;
  /** Each group's next expected sequence number and the messages held behind a gap. */
  readonly groups = new Map<bigint, GroupSeq>();

  constructor(n = 1 << 16) {
    this.ring = new Array<string>(n).fill("");
  }

  /** Records (from, cid) and reports whether it was there already. CID 0 is never a duplicate. */
  seenBefore(from: bigint, cid: bigint): boolean {
    if (cid === 0n) return false;
    const k = `${from}:${cid}`;
    if (this.seen.has(k)) return true;
    const old = this.ring[this.next]!;
    if (old !== "") this.seen.delete(old);
    this.ring[this.next] = k;
    this.next = (this.next + 1) % this.ring.length;
    this.seen.add(k);
    return false;
  }

  /** Starts tracking a group at joinSeq + 1 (the GROUP JOIN answer's join_seq; 0 for a creator). */
  trackGroup(group: bigint, joinSeq: bigint): void {
    const g = this.groups.get(group);
    if (!g) this.groups.set(group, new GroupSeq(joinSeq + 1n));
    else if (g.next === null || g.next <= joinSeq) g.next = joinSeq + 1n;
  }

  /**
   * Takes a GROUP_MSG; returns the messages now showable, in order, and the
   * sequence number to acknowledge (GROUP_READ), or null when nothing moved.
   * An untracked group starts at the first message seen.
   */
  groupIn(m: Msg, now: number): { show: Msg[]; ack: bigint | null } {
    let g = this.groups.get(m.to);
    if (!g) {
      g = new GroupSeq(null);
      this.groups.set(m.to, g);
    }
    if (g.next === null) g.next = m.mid;
    if (m.mid < g.next || g.held.has(m.mid)) return { show: [], ack: null };
    if (m.mid > g.next) {
      g.held.set(m.mid, m);
      if (g.gapSince === 0) g.gapSince = now;
      return { show: [], ack: null };
    }
    const show = [m];
    g.next++;
    g.release(show);
    return { show, ack: g.next - 1n };
  }

  /** Groups with a gap open since before t. */
  gaps(t: number): bigint[] {
    const out: bigint[] = [];
    for (const [id, g] of this.groups) if (g.held.size > 0 && g.gapSince !== 0 && g.gapSince <= t) out.push(id);
    return out;
  }

  /**
   * Gives up on the gaps open since before t (a complete fetch did not fill
   * them: those messages are gone) and returns what is now showable.
   */
  skipGaps(t: number): { show: Msg[]; acks: Map<bigint, bigint> } {
    const show: Msg[] = [];
    const acks = new Map<bigint, bigint>();
    for (const id of this.gaps(t)) {
      const g = this.groups.get(id)!;
      let low: bigint | null = null;
      for (const k of g.held.keys()) if (low === null || k < low) low = k;
      g.next = low!;
      g.release(show);
      acks.set(id, g.next! - 1n);
    }
    return { show, acks };
  }
}

/** One group's place in its sequence. */
export class GroupSeq {
  held = new Map<bigint, Msg>();
  gapSince = 0;
  constructor(public next: bigint | null) {}

  /** Moves the held messages that now follow on into out. */
  release(out: Msg[]): void {
    for (;;) {
      const m = this.held.get(this.next!);
      if (!m) break;
      this.held.delete(this.next!);
      out.push(m);
      this.next!++;
    }
    this.gapSince = this.held.size > 0 ? Date.now() : 0;
  }
}
