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

test("edits, deletions and reactions apply once, by the rules a client can check", () => {
  const c = new Conversation({ conversation_id: "c", type: "group", title: null, last_seq: 1, unread: 0, members: 3 });
  c.insert(msg(1, null));
  const edit = (seq, by, body) => ({ type: "message_edited", conversation_id: "c", seq, target_seq: 1, sender_id: by, body, edited_at: 5 });
  const react = (seq, user, on) => ({ type: "reaction", conversation_id: "c", seq, target_seq: 1, user_id: user, emoji: "👍", on });
  assert.equal(c.applyChange(edit(2, "bob", "not his"), "me"), false);
  assert.equal(c.applyChange(edit(3, "amy", "fixed"), "me"), true);
  assert.equal(c.messages.get(1).body, "fixed");
  assert.equal(c.messages.get(1).edited, true);
  assert.equal(c.applyChange(react(4, "me", true), "me"), true);
  assert.equal(c.applyChange(react(4, "me", true), "me"), false, "the same change twice");
  assert.equal(c.applyChange(react(5, "bob", true), "me"), true);
  assert.deepEqual(c.messages.get(1).reactions, { "👍": 2 });
  assert.deepEqual(c.messages.get(1).my_reactions, ["👍"]);
  // A live copy arriving after the changes does not undo them; history's newer copy wins.
  c.insert(msg(1, null));
  assert.equal(c.messages.get(1).body, "fixed");
  c.insert({ ...msg(1, null), body: "from history", changed_seq: 9, reactions: { "🎉": 1 } });
  assert.equal(c.messages.get(1).body, "from history");
  assert.equal(c.applyChange(react(6, "bob", false), "me"), false, "history already reflects it");
  assert.equal(c.applyChange({ type: "message_deleted", conversation_id: "c", seq: 10, target_seq: 1, actor: "amy" }, "me"), true);
  assert.equal(c.messages.get(1).deleted, true);
  assert.equal(c.messages.get(1).body, "");
  assert.equal(c.applyChange(edit(11, "amy", "back"), "me"), false, "nothing after a deletion");
});

test("a missed edit, deletion or reaction holds the sync cursor back at the change mark", () => {
  const store = new Store("bob");
  const c = store.upsert({ conversation_id: "c", type: "direct", title: null, last_seq: 3, unread: 0, members: 2 });
  // Nothing held: nothing can miss a change.
  assert.equal(c.chain(1, 0), true);
  c.insert(msg(1, null));
  assert.equal(c.chain(2, -1), true, "no change before it");
  c.insert({ ...msg(4, 1), prev_change: 3 });
  assert.equal(c.chain(4, 3), false, "the change at 3 never came");
  assert.equal(c.chain(5, undefined), false, "not known: a fill tells");
  assert.deepEqual(store.cursors(), { c: 2 });
  // The fill's page brought the stretch up to 5.
  c.mark(5);
  assert.equal(c.chain(7, 5), true);
  assert.deepEqual(store.cursors(), { c: 4 });
});
