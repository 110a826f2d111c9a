// The page's store, alone (no browser): what `ack`, `read` and `sync` may claim when a
// conversation has a gap, and one message id held under one seq. The store's
// TypeScript is bundled by esbuild for the test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = join(mkdtempSync(join(tmpdir(), "parley-store-")), "store.mjs");
await build({
  entryPoints: ["src/store.ts"],
  bundle: true,
  format: "esm",
  platform: "node",
  outfile: out,
  logLevel: "warning",
});
const { Conversation, Store } = await import(out);

function msg(seq, prev, id = `m${seq}`) {
  return {
    conversation_id: "c",
    seq,
    prev_seq: prev,
    prev_unknown: false,
    message_id: id,
    sender_id: "amy",
    body: id,
    ts: seq,
  };
}

test("receipts and the sync cursor stop at the end of the gap-free run", () => {
  const store = new Store("bob");
  const c = store.upsert({ conversation_id: "c", type: "direct", title: null, last_seq: 3, unread: 0, members: 2 });
  for (const m of [msg(1, null), msg(2, 1), msg(3, 2)]) c.insert(m);
  assert.equal(c.contiguous(), 3);
  // 4 and 5 were missed live; 6 arrives and says its predecessor is 5.
  c.insert(msg(6, 5));
  assert.equal(c.newest(), 6);
  assert.equal(c.contiguous(), 3, "nothing past the gap is claimed");
  assert.deepEqual(store.cursors(), { c: 3 }, "a sync resumes at the gap");
  // The gap is filled from history: the run reaches the newest.
  c.insert(msg(4, 3));
  c.insert(msg(5, 4));
  assert.equal(c.contiguous(), 6);
  assert.deepEqual(store.cursors(), { c: 6 });
  // A predecessor the router did not know is a gap until history says.
  c.insert({ ...msg(8, null), prev_unknown: true });
  assert.equal(c.contiguous(), 6);
});

test("one message id is held under one seq, the first", () => {
  const c = new Conversation({ conversation_id: "c", type: "direct", title: null, last_seq: null, unread: 0, members: 2 });
  assert.equal(c.insert(msg(1, null, "x")), true);
  // The same id routed again under a later seq (a resend): not a second message.
  assert.equal(c.insert(msg(5, 1, "x")), false);
  assert.deepEqual([...c.messages.keys()], [1]);
  // Known first under a later seq, then history's (earlier) seq: history wins.
  const d = new Conversation({ conversation_id: "d", type: "direct", title: null, last_seq: null, unread: 0, members: 2 });
  d.insert(msg(9, 8, "y"));
  d.insert(msg(3, 2, "y"));
  assert.deepEqual([...d.messages.keys()], [3]);
  assert.equal(d.ids.get("y"), 3);
});
