// The signed-in page: the conversation list, the open conversation, and what flows
// between them and the connection.

import { Api, ApiError, attachRef, type Change } from "./api";
import { Connection, type State, type Via } from "./connection";
import { $, el, input, time } from "./dom";
import { attachmentsView, Uploads } from "./files";
import type { MessageChange, MessageView, ServerFrame } from "./protocol";
import { SearchBox } from "./search";
import { Conversation, Store } from "./store";

const PAGE = 50;
/** How often "typing" is said again while the person keeps typing. */
const TYPING_EVERY_MS = 3_000;
/** The fewest ms between two typing frames of this page (the gateway allows 2 a second). */
const TYPING_GAP_MS = 700;
/** The reactions offered on every message. */
const EMOJI = ["👍", "❤️", "😂", "🎉"];
/** How much of a quoted message a reply shows. */
const QUOTE_CHARS = 200;

export class App {
  private readonly store: Store;
  private readonly conn: Connection;
  private lastTyping = 0;
  /** The last typing frame said "typing". */
  private typingShown = false;
  /** A typing frame held back by the gap, sent when it ends. */
  private typingLater: ReturnType<typeof setTimeout> | null = null;
  /** The message the next send replies to. */
  private replyTo: MessageView | null = null;
  /** The message being edited in place. */
  private editing: number | null = null;
  /** The soonest time a shown message disappears (the list is drawn again then). */
  private nextExpiry = Infinity;
  /** A delete button clicked once: the second click deletes. */
  private confirmDelete: number | null = null;
  private changeCount = 0;
  private loadingOlder = false;
  private sendCount = 0;
  private readonly acked = new Map<string, { delivered: number; read: number }>();
  /** The message a search result opened, marked for a moment. */
  private found: { id: string; seq: number } | null = null;
  /** Files staged for the next message. */
  private readonly uploads: Uploads;

  constructor(
    private readonly api: Api,
    readonly me: string,
    private readonly signOut: () => void,
  ) {
    this.store = new Store(me);
    this.uploads = new Uploads(api, (e) => this.fail(e));
    this.conn = new Connection(api, {
      frame: (f) => this.onFrame(f),
      ready: () => this.sync(),
      state: (s, via) => this.onState(s, via),
      signedOut: () => this.signOut(),
    });
  }

  async start(): Promise<void> {
    $("me").textContent = this.me;
    $("app").hidden = false;
    this.bindForms();
    new SearchBox(
      this.api,
      (id) => this.store.conversations.get(id)?.name(this.me) ?? id,
      (id, seq) => void this.openAt(id, seq),
      (e) => this.fail(e),
    );
    await this.refreshList();
    this.conn.start();
    setInterval(() => this.renderTyping(), 1_000);
    document.addEventListener("visibilitychange", () => this.markRead());
  }

  stop(): void {
    this.conn.stop();
  }

  // --- the connection ---

  private onState(s: State, via: Via): void {
    $("banner").hidden = s !== "offline";
    if (s === "offline" && this.store.online.size > 0) {
      // Who is online is not known while this page is not.
      this.store.online.clear();
      this.renderList();
    }
    $("transport").textContent = via;
    $("transport").dataset.state = s;
  }

  private sync(): void {
    this.conn.send({ type: "sync", cursors: this.store.cursors(), request_id: "sync" });
    // Sends that never got their `sent`: again, as retries.
    for (const c of this.store.conversations.values()) {
      for (const p of c.pending.values()) this.transmit(c, p.clientMsgId, p.body, p.tried, p.replyTo);
    }
  }

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case "message": {
        const c = this.store.conversations.get(f.conversation_id);
        const linked = c?.chain(f.seq, f.prev_change) ?? true;
        this.receive([f]);
        if (c && !linked) void this.fillChanges(c, f.seq);
        break;
      }
      case "sync_batch": {
        this.receive(f.messages);
        this.changed(f.changes ?? []);
        // A sync starts at or below the change mark: the page's stretch is whole.
        const c = this.store.conversations.get(f.conversation_id);
        const seqs = [...f.messages.map((m) => m.seq), ...(f.changes ?? []).map((ch) => ch.seq)];
        if (c && seqs.length > 0) c.mark(Math.max(...seqs));
        break;
      }
      case "message_edited":
      case "message_deleted":
      case "reaction": {
        const c = this.store.conversations.get(f.conversation_id);
        // After a missed change, this one comes in order with the fill's page.
        if (c && !c.chain(f.seq, f.prev_change)) void this.fillChanges(c, f.seq);
        else this.changed([f]);
        break;
      }
      case "synced":
        for (const c of this.store.conversations.values()) if (c.loaded) void this.fillGaps(c);
        break;
      case "sent": {
        const c = this.store.conversations.get(f.conversation_id);
        if (!c) break;
        const linked = c.chain(f.seq, f.prev_change);
        const pending = c.pending.get(f.client_msg_id);
        c.pending.delete(f.client_msg_id);
        c.insert({
          conversation_id: f.conversation_id,
          seq: f.seq,
          prev_seq: f.prev_seq,
          message_id: f.message_id,
          sender_id: this.me,
          body: this.sentBodies.get(f.client_msg_id) ?? "",
          ts: f.ts,
          ...(pending?.replyTo !== undefined ? { reply_to: { seq: pending.replyTo } } : {}),
          ...(pending?.attachments?.length ? { attachments: pending.attachments } : {}),
        });
        if (!linked) void this.fillChanges(c, f.seq);
        this.sentBodies.delete(f.client_msg_id);
        this.renderList();
        if (this.store.open === c.id) this.renderMessages(true);
        break;
      }
      case "receipt": {
        const c = this.store.conversations.get(f.conversation_id);
        if (!c) break;
        c.receipt(f.user_id, f.kind, f.seq);
        if (this.store.open === c.id) this.renderMessages(false);
        break;
      }
      case "typing": {
        const c = this.store.conversations.get(f.conversation_id);
        if (!c || f.user_id === this.me) break;
        if (f.active) c.typing.set(f.user_id, f.expires_at);
        else c.typing.delete(f.user_id);
        this.renderTyping();
        break;
      }
      case "presence":
        this.store.online.set(f.user_id, f.online);
        this.renderList();
        break;
      case "error":
        this.onError(f);
        break;
      default:
        break;
    }
  }

  private readonly sentBodies = new Map<string, string>();

  private onError(f: Extract<ServerFrame, { type: "error" }>): void {
    if (f.client_msg_id) {
      const c = [...this.store.conversations.values()].find((c) => c.pending.has(f.client_msg_id!));
      const p = c?.pending.get(f.client_msg_id);
      if (c && p && (f.code === "rate_limited" || f.code === "unavailable")) {
        // Not lost: sent again in a moment, and said so gently.
        this.showNotice("sending more slowly: a moment…");
        setTimeout(() => this.transmit(c, p.clientMsgId, p.body, true, p.replyTo), f.retry_after_ms ?? 1_000);
        return;
      }
      c?.pending.delete(f.client_msg_id);
      if (c && this.store.open === c.id) this.renderMessages(false);
      this.showError(`message not sent: ${f.message}`);
    } else if (f.code === "rate_limited" && !f.request_id?.startsWith("change-")) {
      // Typing, receipts: best effort, nothing to tell.
    } else if (f.request_id !== "sync") {
      this.showError(f.message);
    }
  }

  /** Edits, deletions and reactions, live or from a sync page. */
  private changed(changes: MessageChange[]): void {
    let open = false;
    for (const f of changes) {
      const c = this.store.conversations.get(f.conversation_id);
      if (c?.applyChange(f, this.me) && this.store.open === c.id) open = true;
    }
    if (open) this.renderMessages(false);
  }

  /** Asks for a change to the message at `seq` of the open conversation. */
  private change(seq: number, change: Change): void {
    const c = this.current();
    if (!c) return;
    if (this.conn.via === "websocket") {
      const request_id = `change-${this.changeCount++}`;
      const base = { conversation_id: c.id, seq, request_id };
      const frame =
        change.kind === "edit"
          ? { type: "edit", ...base, body: change.body }
          : change.kind === "delete"
            ? { type: "delete", ...base }
            : { type: "react", ...base, emoji: change.emoji, on: change.on };
      if (this.conn.send(frame)) return;
    }
    // Long-poll (or the socket is down): REST; the change comes back with the next poll.
    this.api.change(c.id, seq, change).catch((e) => this.fail(e));
  }

  /** Messages from the connection: kept, acknowledged, shown. */
  private receive(messages: MessageView[]): void {
    const touched = new Set<Conversation>();
    let unknown = false;
    for (const m of messages) {
      const c = this.store.conversations.get(m.conversation_id);
      if (!c) {
        unknown = true;
        continue;
      }
      if (c.insert(m)) {
        touched.add(c);
        if (m.sender_id !== this.me && !(this.store.open === c.id && this.visible())) {
          c.unread++;
          if (mentions(m.body, this.me)) c.mentions++;
        }
      }
    }
    if (unknown) void this.refreshList();
    for (const c of touched) {
      this.acknowledge(c, "delivered");
      // A gap is filled in every conversation, open or not: until then the receipts
      // claim no more than the gap-free run.
      if (c.gaps().length > 0) void this.fillGaps(c);
      if (this.store.open === c.id) {
        this.renderMessages(true);
        this.markRead();
      }
    }
    if (touched.size > 0) this.renderList();
  }

  private visible(): boolean {
    return document.visibilityState === "visible";
  }

  /**
   * Tells the server how far this user got in `c` (once per new seq): the end of the
   * gap-free run held, never past a gap ("you hold everything up to seq").
   */
  private acknowledge(c: Conversation, kind: "delivered" | "read"): void {
    const seq = c.contiguous();
    if (seq === null) return;
    const done = this.acked.get(c.id) ?? { delivered: -1, read: -1 };
    if (done[kind] >= seq) return;
    done[kind] = seq;
    if (kind === "read") done.delivered = Math.max(done.delivered, seq);
    this.acked.set(c.id, done);
    const frame = { type: kind === "read" ? "read" : "ack", conversation_id: c.id, seq };
    if (!this.conn.send(frame)) {
      this.api.postReceipt(c.id, kind, seq).catch(() => {
        // Not recorded: asked again with the next message.
        done[kind] = -1;
      });
    }
  }

  private markRead(): void {
    const c = this.current();
    if (!c || !this.visible()) return;
    this.acknowledge(c, "read");
    if (c.unread !== 0 || c.mentions !== 0) {
      c.unread = 0;
      c.mentions = 0;
      this.renderList();
    }
  }

  // --- conversations ---

  private async refreshList(): Promise<void> {
    try {
      const list = await this.api.conversations();
      await Promise.all(
        list.map(async (s) => {
          const c = this.store.upsert(s);
          if (!c.detail) c.detail = await this.api.conversation(s.conversation_id).catch(() => null);
        }),
      );
      this.renderList();
    } catch (e) {
      this.fail(e);
    }
  }

  private current(): Conversation | null {
    return this.store.open ? (this.store.conversations.get(this.store.open) ?? null) : null;
  }

  private async openConversation(id: string): Promise<void> {
    const c = this.store.conversations.get(id);
    if (!c) return;
    // Files staged for another conversation are not sent here.
    if (this.store.open !== id) this.uploads.clear();
    this.store.open = id;
    $("chat").hidden = false;
    $("chat-title").textContent = c.name(this.me);
    $("add-member").hidden = c.summary.type !== "group";
    this.showDisappear(c);
    this.renderList();
    this.renderMessages(true);
    this.renderTyping();
    try {
      if (!c.loaded) {
        const page = await this.api.history(id, { limit: PAGE });
        for (const m of page.messages) c.insert(m);
        c.hasOlder = page.has_more;
        c.loaded = true;
        // History's copies are as they are now: every change to them is in.
        const newest = c.newest();
        if (newest !== null) c.mark(newest);
        await this.fillGaps(c);
      }
      // Its settings as they are now (another member may have changed them).
      c.detail = await this.api.conversation(id);
      if (this.store.open === id) this.showDisappear(c);
      for (const r of await this.api.receipts(id)) {
        if (r.delivered !== null) c.receipt(r.user_id, "delivered", r.delivered);
        if (r.read !== null) c.receipt(r.user_id, "read", r.read);
      }
    } catch (e) {
      this.fail(e);
    }
    if (this.store.open === id) {
      this.renderMessages(true);
      this.markRead();
    }
  }

  /** The conversation's disappearing-messages setting, in the header's select. */
  private showDisappear(c: Conversation): void {
    const select = $("disappear") as HTMLSelectElement;
    const seconds = String(Math.round((c.detail?.disappear_after_ms ?? 0) / 1000));
    if (![...select.options].some((o) => o.value === seconds)) {
      select.append(el("option", { value: seconds }, `${seconds} s`));
    }
    select.value = seconds;
  }

  /**
   * When `m` disappears: as history said, or, for a live copy, by the setting it was
   * sent under (the messages after the change that set it have it).
   */
  private expiry(c: Conversation, m: MessageView): number | null {
    if (m.expires_at !== undefined) return m.expires_at;
    const after = c.detail?.disappear_after_ms;
    const since = c.detail?.disappear_since_seq;
    return after && since !== undefined && m.seq > since && !m.deleted ? m.ts + after : null;
  }

  /**
   * Opens conversation `id` at the message `seq` (a search result): the page of history
   * that ends with it, what lies between it and the messages held, and the message
   * scrolled into view and marked.
   */
  private async openAt(id: string, seq: number): Promise<void> {
    if (!this.store.conversations.has(id)) await this.refreshList();
    await this.openConversation(id);
    const c = this.store.conversations.get(id);
    if (!c || this.store.open !== id) return;
    try {
      if (!c.sorted().some((m) => m.seq === seq)) {
        const page = await this.api.history(id, { before: seq + 1, limit: PAGE });
        for (const m of page.messages) c.insert(m);
        c.hasOlder = page.has_more;
        await this.fillGaps(c);
      }
    } catch (e) {
      this.fail(e);
    }
    if (this.store.open !== id) return;
    this.found = { id, seq };
    this.renderMessages(false);
    $("messages").querySelector<HTMLElement>(`li[data-seq="${seq}"]`)?.scrollIntoView({ block: "center" });
    setTimeout(() => {
      if (this.found?.seq !== seq || this.found.id !== id) return;
      this.found = null;
      this.renderMessages(false);
    }, 3_000);
  }

  /** conversation → the change fill under way, up to (not including) this seq. */
  private readonly changeFills = new Map<string, number>();

  /**
   * A change before `seq` was missed: reads history from the change mark up to and
   * including `seq`, whose pages list every change of that stretch, and applies them in
   * order. If it fails, the next sync brings them (its cursor is not past the mark).
   */
  private async fillChanges(c: Conversation, seq: number): Promise<void> {
    const running = this.changeFills.has(c.id);
    this.changeFills.set(c.id, Math.max(this.changeFills.get(c.id) ?? 0, seq + 1));
    if (running) return;
    try {
      for (let round = 0; round < 20; round++) {
        const before = this.changeFills.get(c.id)!;
        let after = c.changesThrough ?? (c.oldest() ?? before) - 1;
        for (;;) {
          const page = await this.api.history(c.id, { after, before, limit: 1000 });
          for (const m of page.messages) c.insert(m);
          this.changed(page.changes ?? []);
          const last = page.messages.at(-1)?.seq;
          if (!page.has_more || last === undefined) break;
          after = last;
        }
        c.mark(before - 1);
        if (this.changeFills.get(c.id) === before) break;
      }
    } catch {
      // Left to the next sync.
    } finally {
      this.changeFills.delete(c.id);
    }
    if (this.store.open === c.id) this.renderMessages(false);
  }

  /** Fetches what is missing between the messages held (history is the authority). */
  private readonly filling = new Set<string>();

  private async fillGaps(c: Conversation): Promise<void> {
    if (this.filling.has(c.id)) return;
    this.filling.add(c.id);
    try {
      await this.fillGapsNow(c);
    } finally {
      this.filling.delete(c.id);
    }
  }

  private async fillGapsNow(c: Conversation): Promise<void> {
    for (let round = 0; round < 20; round++) {
      const gaps = c.gaps();
      if (gaps.length === 0) return;
      let grew = false;
      for (const [after, before] of gaps) {
        const page = await this.api.history(c.id, { after, before, limit: 1000 });
        for (const m of page.messages) grew = c.insert(m) || grew;
        // History's copies replace the live ones: their prev_seq is the authority.
        for (const m of page.messages) c.messages.set(m.seq, m);
      }
      if (this.store.open === c.id) this.renderMessages(false);
      if (grew) {
        // The run grew: the receipts may say so.
        this.acknowledge(c, "delivered");
        if (this.store.open === c.id) this.markRead();
      }
      if (!grew && c.gaps().length === gaps.length) return;
    }
  }

  private async loadOlder(): Promise<void> {
    const c = this.current();
    if (!c || !c.loaded || !c.hasOlder || this.loadingOlder) return;
    const oldest = c.oldest();
    if (oldest === null) return;
    this.loadingOlder = true;
    const list = $("messages");
    const fromBottom = list.scrollHeight - list.scrollTop;
    try {
      const page = await this.api.history(c.id, { before: oldest, limit: PAGE });
      for (const m of page.messages) c.insert(m);
      c.hasOlder = page.has_more;
      if (this.store.open === c.id) {
        this.renderMessages(false);
        list.scrollTop = list.scrollHeight - fromBottom;
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.loadingOlder = false;
    }
  }

  // --- sending ---

  private async sendMessage(body: string): Promise<void> {
    const c = this.current();
    if (!c) return;
    const attachments = this.uploads.empty ? [] : await this.uploads.take();
    if (!body.trim() && attachments.length === 0) return;
    const clientMsgId = `${this.me}-${Date.now().toString(36)}-${(this.sendCount++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const replyTo = this.replyTo?.seq;
    this.setReply(null);
    c.pending.set(clientMsgId, { clientMsgId, body, tried: false, replyTo, attachments });
    this.sentBodies.set(clientMsgId, body);
    this.renderMessages(true);
    this.transmit(c, clientMsgId, body, false, replyTo);
    this.typingSignal(false);
  }

  private setReply(m: MessageView | null): void {
    this.replyTo = m;
    $("replying").hidden = m === null;
    $("replying-text").textContent = m ? `Replying to ${m.sender_id}: ${m.body.slice(0, QUOTE_CHARS)}` : "";
    if (m) input("composer-text").focus();
  }

  /** Sends over the WebSocket, or REST when polling; a send with no answer stays pending. */
  private transmit(c: Conversation, clientMsgId: string, body: string, retry: boolean, replyTo?: number): void {
    const p = c.pending.get(clientMsgId);
    if (!p) return;
    p.tried = true;
    const frame: Record<string, unknown> = { type: "send", client_msg_id: clientMsgId, conversation_id: c.id, body };
    if (retry) frame.retry = true;
    if (replyTo !== undefined) frame.reply_to = replyTo;
    if (p.attachments?.length) frame.attachments = p.attachments.map(attachRef);
    if (this.conn.via === "websocket") {
      // Not open: sent again by `sync` once the socket is back.
      this.conn.send(frame);
      return;
    }
    this.api
      .postMessage(c.id, clientMsgId, body, retry, replyTo, p.attachments)
      .then((sent) => this.onFrame(sent))
      .catch((e) => {
        if (e instanceof ApiError && e.status < 500 && e.code !== "rate_limited") {
          c.pending.delete(clientMsgId);
          this.fail(e);
          this.renderMessages(false);
        } else {
          if (e instanceof ApiError && e.code === "rate_limited") this.showNotice("sending more slowly: a moment…");
          setTimeout(() => this.transmit(c, clientMsgId, body, true, replyTo), 1_000);
        }
      });
  }

  /**
   * Paced: "typing" when the person starts and again every TYPING_EVERY_MS while they
   * go on, "stopped" only after a "typing", and never two frames within TYPING_GAP_MS
   * (a frame that would be is sent when the gap ends, if still true). A person typing
   * and sending at any pace stays under the gateway's typing limit.
   */
  private typingSignal(active: boolean): void {
    const c = this.current();
    if (!c) return;
    if (active === this.typingShown && (!active || Date.now() - this.lastTyping < TYPING_EVERY_MS)) return;
    const wait = this.lastTyping + TYPING_GAP_MS - Date.now();
    if (wait > 0) {
      if (this.typingLater) clearTimeout(this.typingLater);
      this.typingLater = setTimeout(() => {
        this.typingLater = null;
        const typed = input("composer-text").value.length > 0;
        if (typed === active) this.typingSignal(active);
      }, wait);
      return;
    }
    this.lastTyping = Date.now();
    this.typingShown = active;
    this.conn.send({ type: "typing", conversation_id: c.id, active });
  }

  // --- forms ---

  private bindForms(): void {
    $("signout").onclick = () => this.signOut();
    $("new-chat").onsubmit = (ev) => {
      ev.preventDefault();
      const members = input("new-members")
        .value.split(/[\s,]+/)
        .filter((m) => m && m !== this.me);
      const title = input("new-title").value.trim();
      if (members.length === 0) return;
      const kind = members.length === 1 && !title ? "direct" : "group";
      this.api
        .create(kind, members, title || undefined)
        .then(async (id) => {
          input("new-members").value = "";
          input("new-title").value = "";
          await this.refreshList();
          await this.openConversation(id);
        })
        .catch((e) => this.fail(e));
    };
    ($("disappear") as HTMLSelectElement).onchange = (ev) => {
      const c = this.current();
      if (!c) return;
      const seconds = Number((ev.target as HTMLSelectElement).value);
      this.api
        .disappearAfter(c.id, seconds)
        .then(async () => {
          c.detail = await this.api.conversation(c.id);
          this.showDisappear(c);
        })
        .catch((e) => {
          this.showDisappear(c);
          this.fail(e);
        });
    };
    setInterval(() => {
      if (Date.now() >= this.nextExpiry) this.renderMessages(false);
    }, 1000);
    $("add-member").onsubmit = (ev) => {
      ev.preventDefault();
      const c = this.current();
      const name = input("add-name").value.trim();
      if (!c || !name) return;
      this.api
        .addMembers(c.id, [name])
        .then(async () => {
          input("add-name").value = "";
          c.detail = await this.api.conversation(c.id);
          $("chat-title").textContent = c.name(this.me);
        })
        .catch((e) => this.fail(e));
    };
    $("composer").onsubmit = (ev) => {
      ev.preventDefault();
      const text = input("composer-text");
      const body = text.value;
      if (!body.trim() && this.uploads.empty) return;
      text.value = "";
      void this.sendMessage(body);
    };
    const files = input("composer-file");
    $("attach").onclick = () => files.click();
    files.onchange = () => {
      const c = this.current();
      if (c && files.files) this.uploads.add(c.id, files.files);
      files.value = "";
    };
    // Files dropped anywhere on the open conversation.
    const chat = $("chat");
    chat.ondragover = (ev) => {
      ev.preventDefault();
      chat.classList.add("dropping");
    };
    chat.ondragleave = () => chat.classList.remove("dropping");
    chat.ondrop = (ev) => {
      ev.preventDefault();
      chat.classList.remove("dropping");
      const c = this.current();
      if (c && ev.dataTransfer?.files.length) this.uploads.add(c.id, ev.dataTransfer.files);
    };
    input("composer-text").oninput = () => {
      if (input("composer-text").value.length > 0) this.typingSignal(true);
    };
    $("replying-cancel").onclick = () => this.setReply(null);
    $("messages").onscroll = () => {
      if ($("messages").scrollTop < 40) void this.loadOlder();
    };
  }

  private showError(message: string): void {
    this.toast(message, "error");
  }

  /** Something the person should know that is not a failure (a moment's wait). */
  private showNotice(message: string): void {
    this.toast(message, "notice");
  }

  private toast(message: string, kind: "error" | "notice"): void {
    const t = $("error");
    t.textContent = message;
    t.className = `toast ${kind}`;
    t.title = message;
    setTimeout(() => {
      if (t.textContent === message) t.textContent = "";
    }, kind === "error" ? 6_000 : 3_000);
  }

  private fail(e: unknown): void {
    if (e instanceof ApiError && e.status === 401) return this.signOut();
    this.showError(e instanceof Error ? e.message : String(e));
  }

  // --- rendering ---

  private renderList(): void {
    const ul = $("conversations");
    ul.replaceChildren(
      ...this.store.ordered().map((c) => {
        const other = c.other(this.me);
        const dot = el("span", {
          class: other === null ? "dot none" : this.store.online.get(other) ? "dot online" : "dot",
        });
        const li = el("li", { "data-id": c.id }, dot, el("span", { class: "name" }, c.name(this.me)));
        if (c.mentions > 0) li.append(el("span", { class: "mentions", title: "mentions of you" }, `@${c.mentions}`));
        if (c.unread > 0) li.append(el("span", { class: "unread" }, String(c.unread)));
        if (this.store.open === c.id) li.classList.add("open");
        li.onclick = () => void this.openConversation(c.id);
        return li;
      }),
    );
  }

  private renderMessages(toBottom: boolean): void {
    const c = this.current();
    const list = $("messages");
    if (!c) {
      list.replaceChildren();
      return;
    }
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    this.nextExpiry = Infinity;
    const items = c.sorted().map((m) => this.messageItem(c, m));
    for (const p of c.pending.values()) {
      items.push(
        el(
          "li",
          { class: "mine pending" },
          el("div", { class: "body" }, p.body),
          ...(p.attachments?.length ? [el("div", { class: "attachments" }, ...p.attachments.map((a) => el("div", { class: "attachment" }, a.name)))] : []),
          el("div", { class: "meta" }, el("span", { class: "tick", "data-tick": "pending" }, "…")),
        ),
      );
    }
    list.replaceChildren(...items);
    if (toBottom || atBottom) list.scrollTop = list.scrollHeight;
  }

  private messageItem(c: Conversation, m: MessageView): HTMLElement {
    const mine = m.sender_id === this.me;
    const found = this.found?.id === c.id && this.found.seq === m.seq;
    const li = el("li", { "data-seq": String(m.seq), class: (mine ? "mine" : "") + (found ? " found" : "") });
    if (!mine && c.summary.type === "group") li.append(el("div", { class: "sender" }, m.sender_id));
    if (m.reply_to) li.append(this.quote(c, m.reply_to.seq, m.reply_to));
    const expiry = this.expiry(c, m);
    if (expiry !== null && expiry <= Date.now() && !m.deleted) {
      li.classList.add("deleted");
      li.append(el("div", { class: "body" }, "message disappeared"));
      li.append(el("div", { class: "meta" }, time(m.ts)));
      return li;
    }
    if (expiry !== null) this.nextExpiry = Math.min(this.nextExpiry, expiry);
    if (m.deleted) {
      li.classList.add("deleted");
      li.append(el("div", { class: "body" }, "message deleted"));
    } else if (this.editing === m.seq) {
      const edit = el("input", { class: "edit-input", value: m.body, maxlength: "16384" });
      edit.onkeydown = (ev) => {
        if (ev.key === "Enter" && edit.value.trim() && edit.value !== m.body) {
          this.editing = null;
          this.change(m.seq, { kind: "edit", body: edit.value });
          this.renderMessages(false);
        } else if (ev.key === "Escape" || (ev.key === "Enter" && edit.value === m.body)) {
          this.editing = null;
          this.renderMessages(false);
        }
      };
      li.append(edit);
      setTimeout(() => edit.focus(), 0);
    } else if (m.body) {
      li.append(el("div", { class: "body" }, m.body));
    }
    if (!m.deleted && m.attachments?.length) li.append(attachmentsView(this.api, m.attachments, (e) => this.fail(e)));
    if (!m.deleted) {
      const chips = Object.entries(m.reactions ?? {}).map(([emoji, n]) => {
        const on = (m.my_reactions ?? []).includes(emoji);
        const chip = el("button", { type: "button", class: on ? "chip mine" : "chip", "data-emoji": emoji }, `${emoji} ${n}`);
        chip.onclick = () => this.change(m.seq, { kind: "react", emoji, on: !on });
        return chip;
      });
      if (chips.length > 0) li.append(el("div", { class: "reactions" }, ...chips));
    }
    const meta = el("div", { class: "meta" }, time(m.ts));
    if (m.edited && !m.deleted) meta.append(" ", el("span", { class: "edited", title: m.edited_at ? new Date(m.edited_at).toLocaleString() : "" }, "edited"));
    if (expiry !== null && !m.deleted) meta.append(" ", el("span", { class: "timer", title: `disappears ${new Date(expiry).toLocaleString()}` }, "⏱"));
    if (mine) {
      const tick = c.tick(this.me, m.seq);
      meta.append(" ", el("span", { class: `tick ${tick}`, "data-tick": tick }, tick === "sent" ? "✓" : "✓✓"));
    }
    li.append(meta);
    if (!m.deleted) li.append(this.actions(c, m, mine));
    return li;
  }

  /** The quoted message of a reply: as this page holds it now, else as history said. */
  private quote(c: Conversation, seq: number, reply: { sender_id?: string; preview?: string; deleted?: boolean }): HTMLElement {
    const held = c.messages.get(seq);
    const who = held?.sender_id ?? reply.sender_id ?? "a message";
    const deleted = held ? held.deleted : reply.deleted;
    const text = deleted ? "message deleted" : (held?.body ?? reply.preview ?? "…").slice(0, QUOTE_CHARS);
    return el("div", { class: "quote", "data-reply-to": String(seq) }, el("span", { class: "quote-sender" }, who), " ", text);
  }

  /** Reply, react, and for one's own messages edit and delete. */
  private actions(c: Conversation, m: MessageView, mine: boolean): HTMLElement {
    const bar = el("div", { class: "actions" });
    const button = (cls: string, label: string, title: string, click: () => void) => {
      const b = el("button", { type: "button", class: cls, title }, label);
      b.onclick = click;
      bar.append(b);
      return b;
    };
    button("act-reply", "↩", "reply", () => this.setReply(m));
    for (const emoji of EMOJI) {
      const on = (m.my_reactions ?? []).includes(emoji);
      button(`act-react${on ? " on" : ""}`, emoji, on ? "take back" : "react", () => this.change(m.seq, { kind: "react", emoji, on: !on })).dataset.emoji = emoji;
    }
    if (mine) {
      button("act-edit", "edit", "edit", () => {
        this.editing = m.seq;
        this.renderMessages(false);
      });
      const confirm = this.confirmDelete === m.seq;
      button(`act-delete${confirm ? " confirm" : ""}`, confirm ? "delete for everyone?" : "delete", "delete for everyone", () => {
        if (this.confirmDelete === m.seq) {
          this.confirmDelete = null;
          this.change(m.seq, { kind: "delete" });
        } else {
          this.confirmDelete = m.seq;
          setTimeout(() => {
            if (this.confirmDelete === m.seq) {
              this.confirmDelete = null;
              if (this.store.open === c.id) this.renderMessages(false);
            }
          }, 5_000);
        }
        this.renderMessages(false);
      });
    }
    return bar;
  }

  private renderTyping(): void {
    const c = this.current();
    const now = Date.now();
    const who = c ? [...c.typing].filter(([, until]) => until > now).map(([u]) => u) : [];
    $("typing").textContent =
      who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
  }
}

/** Whether `body` mentions `user` as `@user` (not inside a word, as the server counts). */
function mentions(body: string, user: string): boolean {
  const re = /(^|[^A-Za-z0-9._:-])@([A-Za-z0-9._:-]+)/g;
  for (const m of body.matchAll(re)) if (m[2].replace(/[.:]+$/, "") === user) return true;
  return false;
}
