// What the page knows: each conversation's messages by seq (each message id once), the
// sends still waiting for their `sent`, receipts, typing and presence.

import type { Attachment, ConversationDetail, ConversationSummary, MessageChange, MessageView, ReceiptKind } from "./protocol";

export interface PendingSend {
  clientMsgId: string;
  body: string;
  replyTo?: number;
  attachments?: Attachment[];
  /** Sent at least once before: a resend is marked as a retry. */
  tried: boolean;
}

export class Conversation {
  readonly messages = new Map<number, MessageView>();
  /** message id → the seq it is held under (one seq per id). */
  readonly ids = new Map<string, number>();
  readonly pending = new Map<string, PendingSend>();
  /** user → how far they received and read. */
  readonly receipts = new Map<string, { delivered: number; read: number }>();
  /** user → typing until (ms since the epoch). */
  readonly typing = new Map<string, number>();
  detail: ConversationDetail | null = null;
  unread = 0;
  mentions = 0;
  /** The newest page of history was loaded, and older pages may follow. */
  loaded = false;
  /**
   * The change mark: every edit, deletion and reaction at or before this seq is
   * reflected in the copies held (docs/protocol.md, "Keeping a conversation complete").
   */
  changesThrough: number | null = null;
  hasOlder = true;
  lastActivity = 0;

  constructor(public summary: ConversationSummary) {
    this.unread = summary.unread;
    this.mentions = summary.mentions ?? 0;
  }

  get id(): string {
    return this.summary.conversation_id;
  }

  /**
   * Adds a message (history's copy replaces a live one); true if it was new. One id is
   * held under one seq: the first occurrence, which is the one history keeps (a resend
   * routed again under a later seq is dropped).
   */
  insert(m: MessageView): boolean {
    const held = this.ids.get(m.message_id);
    if (held !== undefined && held !== m.seq) {
      if (held < m.seq) return false;
      this.messages.delete(held);
    }
    this.ids.set(m.message_id, m.seq);
    const same = this.messages.get(m.seq);
    if (same && (m.changed_seq ?? -1) < (same.changed_seq ?? -1)) {
      // An older copy (a live one after history's): its links count, not its text.
      this.messages.set(m.seq, { ...same, prev_seq: m.prev_seq, prev_unknown: m.prev_unknown });
    } else {
      this.messages.set(m.seq, same?.reply_to?.preview !== undefined && m.reply_to?.preview === undefined ? { ...m, reply_to: same.reply_to } : m);
    }
    this.lastActivity = Math.max(this.lastActivity, m.ts);
    return held === undefined;
  }

  /**
   * Applies an edit, deletion or reaction to the message it names, if held, by the rules
   * a client can check (docs/protocol.md, "Keeping a conversation complete"): each
   * change once (`changed_seq`), nothing after a deletion, an edit only by the author.
   * True if the message changed.
   */
  applyChange(f: MessageChange, me: string): boolean {
    const m = this.messages.get(f.target_seq);
    if (!m || m.deleted || (m.changed_seq ?? -1) >= f.seq) return false;
    const next: MessageView = { ...m, reactions: { ...(m.reactions ?? {}) }, my_reactions: [...(m.my_reactions ?? [])] };
    switch (f.type) {
      case "message_edited":
        if (f.sender_id !== m.sender_id) return false;
        next.body = f.body;
        next.edited = true;
        next.edited_at = f.edited_at;
        break;
      case "message_deleted":
        next.deleted = true;
        next.body = "";
        next.edited = false;
        next.reactions = {};
        next.my_reactions = [];
        break;
      case "reaction": {
        const mine = f.user_id === me;
        if (mine && next.my_reactions!.includes(f.emoji) === f.on) return false;
        const n = (next.reactions![f.emoji] ?? 0) + (f.on ? 1 : -1);
        if (n > 0) next.reactions![f.emoji] = n;
        else delete next.reactions![f.emoji];
        if (mine) next.my_reactions = f.on ? [...next.my_reactions!, f.emoji] : next.my_reactions!.filter((e) => e !== f.emoji);
        break;
      }
    }
    next.changed_seq = f.seq;
    this.messages.set(m.seq, next);
    return true;
  }

  /**
   * Whether an event at `seq` whose change before it is `prev` (-1: none; undefined: not
   * known) links to the change mark; if so (or if nothing is held, so nothing can miss a
   * change), the mark moves to `seq`. If not, a change was missed: fill from the mark.
   */
  chain(seq: number, prev: number | undefined): boolean {
    const linked =
      this.messages.size === 0 ||
      (prev !== undefined && (prev < 0 || (this.changesThrough !== null && this.changesThrough >= prev)));
    if (linked) this.mark(seq);
    return linked;
  }

  /** Every change at or before `seq` is reflected now. */
  mark(seq: number): void {
    this.changesThrough = Math.max(this.changesThrough ?? -1, seq);
  }

  sorted(): MessageView[] {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  newest(): number | null {
    let n: number | null = null;
    for (const s of this.messages.keys()) if (n === null || s > n) n = s;
    return n;
  }

  /**
   * The end of the gap-free run from the oldest message held: every message up to it
   * is held (as far as the `prev_seq` links tell). What `ack` and `read` may claim, and
   * where a sync resumes: a message after a gap is not "everything up to" it.
   */
  contiguous(): number | null {
    const list = this.sorted();
    if (list.length === 0) return null;
    let end = list[0].seq;
    for (let i = 1; i < list.length; i++) {
      const m = list[i];
      if (m.prev_unknown || (m.prev_seq !== null && m.prev_seq !== list[i - 1].seq)) break;
      end = m.seq;
    }
    return end;
  }

  oldest(): number | null {
    let n: number | null = null;
    for (const s of this.messages.keys()) if (n === null || s < n) n = s;
    return n;
  }

  /** Where history is missing among the messages held: (after, before) ranges. */
  gaps(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const list = this.sorted();
    for (let i = 1; i < list.length; i++) {
      const m = list[i];
      if (m.prev_unknown || (m.prev_seq !== null && m.prev_seq !== list[i - 1].seq)) {
        out.push([list[i - 1].seq, m.seq + 1]);
      }
    }
    return out;
  }

  receipt(user: string, kind: ReceiptKind, seq: number): void {
    const r = this.receipts.get(user) ?? { delivered: -1, read: -1 };
    if (kind === "read") {
      r.read = Math.max(r.read, seq);
      r.delivered = Math.max(r.delivered, seq);
    } else {
      r.delivered = Math.max(r.delivered, seq);
    }
    this.receipts.set(user, r);
  }

  /** How far another member than `me` got with `seq`: sent, delivered or read. */
  tick(me: string, seq: number): "sent" | "delivered" | "read" {
    let best: "sent" | "delivered" | "read" = "sent";
    for (const [user, r] of this.receipts) {
      if (user === me) continue;
      if (r.read >= seq) return "read";
      if (r.delivered >= seq) best = "delivered";
    }
    return best;
  }

  /** The other member of a direct conversation. */
  other(me: string): string | null {
    if (this.summary.type !== "direct" || !this.detail) return null;
    return this.detail.members.find((m) => m !== me) ?? null;
  }

  name(me: string): string {
    if (this.summary.title) return this.summary.title;
    const other = this.other(me);
    if (other) return other;
    if (this.detail) return this.detail.members.filter((m) => m !== me).join(", ") || "just you";
    return this.summary.type === "direct" ? "direct chat" : "group";
  }
}

export class Store {
  readonly conversations = new Map<string, Conversation>();
  readonly online = new Map<string, boolean>();
  open: string | null = null;

  constructor(readonly me: string) {}

  upsert(summary: ConversationSummary): Conversation {
    const c = this.conversations.get(summary.conversation_id);
    if (c) {
      c.summary = summary;
      return c;
    }
    const fresh = new Conversation(summary);
    this.conversations.set(summary.conversation_id, fresh);
    return fresh;
  }

  /** Conversations, the most recently active first. */
  ordered(): Conversation[] {
    return [...this.conversations.values()].sort((a, b) => b.lastActivity - a.lastActivity || a.id.localeCompare(b.id));
  }

  /**
   * The `sync` cursors: per conversation, the end of the gap-free run held (so a sync
   * brings what a gap left out), or the newest seq known when nothing is held.
   */
  cursors(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.conversations.values()) {
      let n = c.contiguous() ?? c.summary.last_seq;
      // Not past the change mark: a change missed comes with the sync.
      if (n !== null && n !== undefined && c.changesThrough !== null) n = Math.min(n, c.changesThrough);
      if (n !== null && n !== undefined) out[c.id] = n;
    }
    return out;
  }
}
