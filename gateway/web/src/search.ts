// The search box: results with their snippets (matched words marked), newest first,
// a page at a time; a click opens the conversation at that message.

import { type Api } from "./api";
import { $, el, input, time } from "./dom";

export interface SnippetPart {
  text: string;
  hit?: boolean;
}

export interface SearchResult {
  conversation_id: string;
  seq: number;
  message_id: string;
  sender_id: string;
  ts: number;
  snippet: SnippetPart[];
}

export interface SearchPage {
  results: SearchResult[];
  next_cursor?: string;
}

const LIMIT = 20;

export class SearchBox {
  private query = "";
  private cursor: string | undefined;
  private shown: SearchResult[] = [];

  constructor(
    private readonly api: Api,
    /** The name of a conversation, as the list shows it. */
    private readonly name: (id: string) => string,
    private readonly open: (id: string, seq: number) => void,
    private readonly fail: (e: unknown) => void,
  ) {
    $("search").onsubmit = (ev) => {
      ev.preventDefault();
      const q = input("search-text").value.trim();
      if (!q) return this.close();
      this.query = q;
      this.shown = [];
      this.cursor = undefined;
      void this.more();
    };
    input("search-text").onkeydown = (ev) => {
      if (ev.key === "Escape") {
        input("search-text").value = "";
        this.close();
      }
    };
    $("search-close").onclick = () => {
      input("search-text").value = "";
      this.close();
    };
  }

  private close(): void {
    this.query = "";
    this.shown = [];
    $("search-results").hidden = true;
    $("search-close").hidden = true;
  }

  private async more(): Promise<void> {
    const q = this.query;
    try {
      const page = await this.api.search(q, this.cursor, LIMIT);
      if (q !== this.query) return;
      this.shown.push(...page.results);
      this.cursor = page.next_cursor;
      this.render();
    } catch (e) {
      this.fail(e);
    }
  }

  private render(): void {
    const list = $("search-results");
    const items: HTMLElement[] = this.shown.map((r) => {
      const snippet = el("div", { class: "snippet" });
      for (const p of r.snippet) snippet.append(p.hit ? el("mark", {}, p.text) : p.text);
      const li = el(
        "li",
        { "data-conversation": r.conversation_id, "data-seq": String(r.seq) },
        el("div", { class: "where" }, el("span", { class: "in" }, this.name(r.conversation_id)), " · ", el("span", { class: "sender" }, r.sender_id), " · ", time(r.ts)),
        snippet,
      );
      li.onclick = () => this.open(r.conversation_id, r.seq);
      return li;
    });
    if (this.shown.length === 0) items.push(el("li", { class: "none" }, `nothing found for “${this.query}”`));
    if (this.cursor) {
      const more = el("button", { type: "button", class: "link" }, "more results");
      more.onclick = () => void this.more();
      items.push(el("li", { class: "more" }, more));
    }
    list.replaceChildren(...items);
    list.hidden = false;
    $("search-close").hidden = false;
  }
}
