// The REST half of the protocol: every call with the user's token, every failure an
// ApiError with the server's code and message.

import type { SearchPage } from "./search";
import type { Attachment, ConversationDetail, ConversationSummary, MessageChange, MessageView, Receipt, Sent, ServerFrame } from "./protocol";

/** A change to a message, as the page asks for it. */
export type Change = { kind: "edit"; body: string } | { kind: "delete" } | { kind: "react"; emoji: string; on: boolean };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function answer<T>(r: Response): Promise<T> {
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(r.status, "bad_answer", `the server answered ${r.status}: ${text.slice(0, 200)}`);
  }
  if (!r.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(r.status, e?.code ?? "http_" + r.status, e?.message ?? `HTTP ${r.status}`);
  }
  return body as T;
}

/** A dev token (only from a gateway started with --dev-auth). */
export async function devToken(user: string): Promise<string> {
  const r = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: user }),
  });
  return (await answer<{ token: string }>(r)).token;
}

/** An attachment as a send names it. */
export function attachRef(a: Attachment): Record<string, unknown> {
  const r: Record<string, unknown> = { attachment_id: a.attachment_id, name: a.name };
  if (a.width !== undefined) r.width = a.width;
  if (a.height !== undefined) r.height = a.height;
  return r;
}

export interface Poll {
  frames: ServerFrame[];
  cursor: string;
  has_more: boolean;
}

export class Api {
  constructor(readonly token: string) {}

  async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    return answer<T>(r);
  }

  async conversations(): Promise<ConversationSummary[]> {
    return (await this.call<{ conversations: ConversationSummary[] }>("GET", "/v1/conversations")).conversations;
  }

  conversation(id: string): Promise<ConversationDetail> {
    return this.call("GET", `/v1/conversations/${encodeURIComponent(id)}`);
  }

  /** Disappearing messages: seconds after which each new message goes; 0 turns them off. */
  async disappearAfter(id: string, seconds: number): Promise<void> {
    await this.call("PATCH", `/v1/conversations/${encodeURIComponent(id)}`, { disappear_after_s: seconds });
  }

  async create(kind: "direct" | "group", members: string[], title?: string): Promise<string> {
    const body: Record<string, unknown> = { type: kind, members };
    if (title) body.title = title;
    return (await this.call<{ conversation_id: string }>("POST", "/v1/conversations", body)).conversation_id;
  }

  async addMembers(id: string, members: string[]): Promise<void> {
    await this.call("POST", `/v1/conversations/${encodeURIComponent(id)}/members`, { members });
  }

  /** Messages with after < seq < before, oldest first. */
  history(
    id: string,
    q: { after?: number; before?: number; limit?: number },
  ): Promise<{ messages: MessageView[]; changes?: MessageChange[]; has_more: boolean }> {
    const p = new URLSearchParams();
    if (q.after !== undefined) p.set("after", String(q.after));
    if (q.before !== undefined) p.set("before", String(q.before));
    p.set("limit", String(q.limit ?? 50));
    return this.call("GET", `/v1/conversations/${encodeURIComponent(id)}/messages?${p}`);
  }

  /** The messages this user may read that match `q` (newest first). */
  search(q: string, cursor: string | undefined, limit: number): Promise<SearchPage> {
    const p = new URLSearchParams({ q, limit: String(limit) });
    if (cursor) p.set("cursor", cursor);
    return this.call("GET", `/v1/search?${p}`);
  }

  async receipts(id: string): Promise<Receipt[]> {
    return (await this.call<{ receipts: Receipt[] }>("GET", `/v1/conversations/${encodeURIComponent(id)}/receipts`)).receipts;
  }

  postMessage(id: string, clientMsgId: string, body: string, retry: boolean, replyTo?: number, attachments?: Attachment[]): Promise<Sent> {
    const b: Record<string, unknown> = { client_msg_id: clientMsgId, body };
    if (retry) b.retry = true;
    if (replyTo !== undefined) b.reply_to = replyTo;
    if (attachments && attachments.length > 0) b.attachments = attachments.map(attachRef);
    return this.call("POST", `/v1/conversations/${encodeURIComponent(id)}/messages`, b);
  }

  /** An edit, deletion or reaction over REST (for long-poll pages); the `changed` frame. */
  change(id: string, seq: number, change: Change): Promise<unknown> {
    const path = `/v1/conversations/${encodeURIComponent(id)}/messages/${seq}`;
    switch (change.kind) {
      case "edit":
        return this.call("PATCH", path, { body: change.body });
      case "delete":
        return this.call("DELETE", path);
      case "react":
        return this.call(change.on ? "PUT" : "DELETE", `${path}/reactions/${encodeURIComponent(change.emoji)}`);
    }
  }

  /**
   * Uploads `file` for conversation `id`: a slot, then the bytes through the gateway
   * (this page connects only to its own origin), reporting progress as a fraction.
   */
  async upload(id: string, file: File, progress: (done: number) => void): Promise<Attachment> {
    const type = file.type || "application/octet-stream";
    const slot = await this.call<{ attachment_id: string }>("POST", "/v1/uploads", {
      conversation_id: id,
      content_type: type,
      size: file.size,
    });
    await new Promise<void>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", `/v1/uploads/${encodeURIComponent(slot.attachment_id)}`);
      xhr.setRequestHeader("authorization", `Bearer ${this.token}`);
      xhr.setRequestHeader("content-type", type);
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable) progress(ev.loaded / ev.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) return resolve();
        let code = `http_${xhr.status}`;
        let message = `the upload failed (HTTP ${xhr.status})`;
        try {
          const e = JSON.parse(xhr.responseText).error;
          code = e.code ?? code;
          message = e.message ?? message;
        } catch {
          // not JSON
        }
        reject(new ApiError(xhr.status, code, message));
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "the upload was interrupted"));
      xhr.send(file);
    });
    progress(1);
    return { attachment_id: slot.attachment_id, name: file.name || "file", content_type: type, size: file.size };
  }

  /** An attachment's bytes (or an image's thumbnail), through the gateway. */
  async attachment(attachmentId: string, thumbnail: boolean): Promise<Blob> {
    const p = new URLSearchParams({ via: "gateway" });
    if (thumbnail) p.set("thumbnail", "true");
    const r = await fetch(`/v1/attachments/${encodeURIComponent(attachmentId)}?${p}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!r.ok) await answer(r);
    return r.blob();
  }

  async postReceipt(id: string, kind: "delivered" | "read", seq: number): Promise<void> {
    await this.call("POST", `/v1/conversations/${encodeURIComponent(id)}/receipts`, { kind, seq });
  }

  async wsTicket(): Promise<string> {
    return (await this.call<{ ticket: string }>("POST", "/v1/ws-ticket")).ticket;
  }

  poll(cursor: string | null, timeoutMs: number, signal: AbortSignal): Promise<Poll> {
    const p = new URLSearchParams({ timeout_ms: String(timeoutMs) });
    if (cursor) p.set("cursor", cursor);
    return this.call("GET", `/v1/events?${p}`, undefined, signal);
  }
}
