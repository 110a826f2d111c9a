// How the page talks to Parley in real time: a WebSocket (opened with a one-use ticket),
// reconnected with backoff whenever it drops; or, when no WebSocket can be opened at all,
// long-polling GET /v1/events. Each (re)connection over a WebSocket starts with `ready`,
// after which the app sends `sync` from its cursors: nothing is missed in between.

import { Api, ApiError } from "./api";
import type { ServerFrame } from "./protocol";

export type Via = "websocket" | "long-poll";
export type State = "connecting" | "live" | "offline";

export interface Events {
  frame(f: ServerFrame): void;
  /** A WebSocket session is ready (again): time to sync. */
  ready(): void;
  state(s: State, via: Via): void;
  /** The token is no longer accepted. */
  signedOut(): void;
}

/** WebSocket attempts that never reached `ready` before falling back to long-poll. */
const FAILURES_BEFORE_POLL = 2;
const POLL_TIMEOUT_MS = 25_000;

export class Connection {
  private ws: WebSocket | null = null;
  private stopped = false;
  private everReady = false;
  private failures = 0;
  private backoff = 500;
  private cursor: string | null = null;
  private abort = new AbortController();
  via: Via = "websocket";

  constructor(
    private readonly api: Api,
    private readonly on: Events,
  ) {}

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.ws?.close(1000);
  }

  /** Sends a frame over the WebSocket; false if there is none open (the caller keeps it). */
  send(frame: object): boolean {
    if (this.via !== "websocket" || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get live(): boolean {
    return this.via === "websocket" ? this.ws?.readyState === WebSocket.OPEN : true;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.on.state("connecting", "websocket");
    let ticket: string;
    try {
      ticket = await this.api.wsTicket();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.on.signedOut();
      return this.retry();
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws?ticket=${encodeURIComponent(ticket)}`);
    this.ws = ws;
    let ready = false;
    ws.onmessage = (ev) => {
      let f: ServerFrame;
      try {
        f = JSON.parse(String(ev.data)) as ServerFrame;
      } catch {
        return;
      }
      if (f.type === "ready" && !ready) {
        ready = true;
        this.everReady = true;
        this.failures = 0;
        this.backoff = 500;
        this.on.state("live", "websocket");
        this.on.ready();
      }
      this.on.frame(f);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4001) {
        // The token expired: the app signs in again.
        return this.on.signedOut();
      }
      if (!ready) this.failures++;
      if (!this.everReady && this.failures >= FAILURES_BEFORE_POLL) {
        this.via = "long-poll";
        void this.pollLoop();
        return;
      }
      this.retry();
    };
  }

  private retry(): void {
    this.on.state("offline", this.via);
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 5_000);
    setTimeout(() => void this.connect(), wait);
  }

  private async pollLoop(): Promise<void> {
    let backoff = 500;
    this.on.state("connecting", "long-poll");
    while (!this.stopped) {
      try {
        const answer = await this.api.poll(this.cursor, POLL_TIMEOUT_MS, this.abort.signal);
        this.cursor = answer.cursor;
        backoff = 500;
        this.on.state("live", "long-poll");
        for (const f of answer.frames) this.on.frame(f);
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof ApiError && e.status === 401) return this.on.signedOut();
        this.on.state("offline", "long-poll");
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }
}
