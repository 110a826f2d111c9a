// The frames and REST bodies of docs/protocol.md that this client uses.

export interface MessageView {
  conversation_id: string;
  seq: number;
  prev_seq: number | null;
  prev_unknown?: boolean;
  message_id: string;
  sender_id: string;
  body: string;
  ts: number;
  reply_to?: ReplyTo;
  edited?: boolean;
  edited_at?: number;
  deleted?: boolean;
  reactions?: Record<string, number>;
  my_reactions?: string[];
  /** The seq of the latest change this copy reflects. */
  changed_seq?: number;
  /** The conversation's change before it: -1 for none; absent when not known. */
  prev_change?: number;
  /** Files sent with it (GET /v1/attachments/{attachment_id}). */
  attachments?: Attachment[];
  /** When it disappears (ms since the epoch): sent while disappearing messages were on. */
  expires_at?: number;
}

/** A file sent with a message. */
export interface Attachment {
  attachment_id: string;
  name: string;
  content_type: string;
  size: number;
  width?: number;
  height?: number;
}

export interface ReplyTo {
  seq: number;
  sender_id?: string;
  preview?: string;
  deleted?: boolean;
}

/** An edit, a deletion for everyone or a reaction, at its own seq. */
export type MessageChange = (
  | { type: "message_edited"; conversation_id: string; seq: number; target_seq: number; sender_id: string; body: string; edited_at: number }
  | { type: "message_deleted"; conversation_id: string; seq: number; target_seq: number; actor: string }
  | { type: "reaction"; conversation_id: string; seq: number; target_seq: number; user_id: string; emoji: string; on: boolean }
) & { prev_change?: number };

export interface Sent {
  type: "sent";
  client_msg_id: string;
  message_id: string;
  conversation_id: string;
  seq: number;
  prev_seq: number | null;
  ts: number;
  prev_change?: number;
}

export type ReceiptKind = "delivered" | "read";

export type ServerFrame =
  | { type: "ready"; user_id: string; live: boolean }
  | Sent
  | ({ type: "message" } & MessageView)
  | { type: "sync_batch"; conversation_id: string; messages: MessageView[]; changes?: MessageChange[]; has_more: boolean }
  | MessageChange
  | { type: "changed"; request_id?: string; conversation_id: string; seq: number; target_seq: number }
  | { type: "synced"; request_id?: string }
  | { type: "receipt"; conversation_id: string; user_id: string; kind: ReceiptKind; seq: number }
  | { type: "receipt_counts"; conversation_id: string; seq: number; delivered: number; read: number }
  | { type: "typing"; conversation_id: string; user_id: string; active: boolean; expires_at: number }
  | { type: "presence"; user_id: string; online: boolean; last_seen: number | null }
  | { type: "error"; code: string; message: string; client_msg_id?: string; request_id?: string; retry_after_ms?: number }
  | { type: "pong" }
  | { type: "history" }
  | { type: "presence_result" };

export interface ConversationSummary {
  conversation_id: string;
  type: "direct" | "group";
  title: string | null;
  last_seq: number | null;
  unread: number;
  /** Of the unread, how many mention the caller. */
  mentions?: number;
  members: number;
}

export interface ConversationDetail {
  conversation_id: string;
  type: "direct" | "group";
  title: string | null;
  members: string[];
  creator: string | null;
  admins: string[];
  full_history: boolean;
  /** Disappearing messages: each message sent from now on goes this long (ms) after it was sent. */
  disappear_after_ms?: number;
  /** The seq of the change that set it: the messages after it have it. */
  disappear_since_seq?: number;
  last_seq: number | null;
}

export interface Receipt {
  user_id: string;
  delivered: number | null;
  read: number | null;
}
