// Attachments on the page: the files staged for the next send (each uploading at once,
// with a progress bar), and a message's files: images inline from their thumbnail,
// everything else as a download link with its name and size. Bytes are fetched with the
// user's token and shown from blob: URLs (the page connects only to its own origin).

import { type Api } from "./api";
import { $, el } from "./dom";
import type { Attachment } from "./protocol";

/** Shown inline (with a thumbnail); the gateway's own list. */
const IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

interface Staged {
  file: File;
  done: number;
  uploaded?: Attachment;
  failed?: string;
  upload: Promise<Attachment | null>;
}

/** Files chosen or dropped for the next message of the open conversation. */
export class Uploads {
  private staged: Staged[] = [];

  constructor(
    private readonly api: Api,
    private readonly fail: (e: unknown) => void,
  ) {}

  /** Starts uploading `files` for conversation `id`. */
  add(id: string, files: Iterable<File>): void {
    for (const file of files) {
      const s: Staged = { file, done: 0, upload: Promise.resolve(null) };
      s.upload = this.api
        .upload(id, file, (done) => {
          s.done = done;
          this.render();
        })
        .then((a) => {
          s.uploaded = a;
          this.render();
          return a;
        })
        .catch((e) => {
          s.failed = e instanceof Error ? e.message : String(e);
          this.fail(e);
          this.render();
          return null;
        });
      this.staged.push(s);
    }
    this.render();
  }

  get empty(): boolean {
    return this.staged.length === 0;
  }

  /** The uploaded files, once every upload has ended (failed ones left out); clears the list. */
  async take(): Promise<Attachment[]> {
    const all = await Promise.all(this.staged.map((s) => s.upload));
    this.staged = [];
    this.render();
    return all.filter((a): a is Attachment => a !== null);
  }

  clear(): void {
    this.staged = [];
    this.render();
  }

  private render(): void {
    const list = $("uploads");
    list.hidden = this.staged.length === 0;
    list.replaceChildren(
      ...this.staged.map((s, i) => {
        const bar = el("progress", { max: "1", value: String(s.done) });
        const state = s.failed ? "failed" : s.uploaded ? "uploaded" : "uploading";
        const remove = el("button", { type: "button", class: "link", title: "remove" }, "×");
        remove.onclick = () => {
          this.staged.splice(i, 1);
          this.render();
        };
        return el(
          "li",
          { class: `upload ${state}`, "data-state": state, "data-name": s.file.name },
          el("span", { class: "upload-name" }, `${s.file.name} (${size(s.file.size)})`),
          " ",
          bar,
          " ",
          remove,
        );
      }),
    );
  }
}

/** blob: URLs of fetched thumbnails, by attachment id (kept for the page's life). */
const thumbs = new Map<string, Promise<string>>();

/** A message's files. */
export function attachmentsView(api: Api, files: Attachment[], fail: (e: unknown) => void): HTMLElement {
  return el(
    "div",
    { class: "attachments" },
    ...files.map((a) => {
      const link = el("a", { href: "#", class: "file", "data-attachment": a.attachment_id }, `${a.name} (${size(a.size)})`);
      link.onclick = (ev) => {
        ev.preventDefault();
        void save(api, a).catch(fail);
      };
      if (!IMAGES.includes(a.content_type)) return el("div", { class: "attachment" }, "📄 ", link);
      const img = el("img", { class: "thumb", alt: a.name, "data-attachment": a.attachment_id });
      let url = thumbs.get(a.attachment_id);
      if (!url) {
        url = api.attachment(a.attachment_id, true).then((b) => URL.createObjectURL(b));
        thumbs.set(a.attachment_id, url);
        url.catch(() => thumbs.delete(a.attachment_id));
      }
      url.then((u) => (img.src = u)).catch(() => img.replaceWith(el("span", { class: "thumb-missing" }, "image unavailable")));
      img.onclick = () => void save(api, a).catch(fail);
      return el("div", { class: "attachment image" }, img, link);
    }),
  );
}

/** Downloads a file to the person's machine, under its name. */
async function save(api: Api, a: Attachment): Promise<void> {
  const blob = await api.attachment(a.attachment_id, false);
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: a.name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
