/**
 * `writeFileAtomic()` through symbolic links, on real trees: it replaces the file that
 * `fs.writeFile` (the kernel's open(2)) would write, whatever the links (relative ones inside
 * linked directories, chains, `..` after a link, dangling ones), and fails where it fails, with
 * the same code; calls through a link and through the file it leads to are coalesced as one file,
 * in the order they were made.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { AioError, writeFileAtomic } from "../mod.ts";
import { test } from "./harness.ts";
import { quiescent, withDir, within } from "./helpers.ts";

/** Builds a tree in `root`: each entry a directory (`/` at the end), a link (`-> target`) or a file. */
function build(root: string, entries: readonly string[]): void {
  for (const entry of entries) {
    const link = /^(.*?) -> (.*)$/.exec(entry);
    if (link !== null) {
      fs.symlinkSync(link[2].replaceAll("<root>", root), path.join(root, link[1]));
    } else if (entry.endsWith("/")) {
      fs.mkdirSync(path.join(root, entry), { recursive: true });
    } else {
      const [name, content] = entry.split("=");
      fs.writeFileSync(path.join(root, name), content ?? "");
    }
  }
}

/** Everything under `root`: directories, links (their text, `root` as `<root>`), files with content and mode. */
function snapshot(root: string, dir = ""): string[] {
  const lines: string[] = [];
  for (const name of fs.readdirSync(path.join(root, dir)).sort()) {
    const relative = path.join(dir, name);
    const full = path.join(root, relative);
    const stat = fs.lstatSync(full);
    if (stat.isSymbolicLink()) lines.push(`${relative} -> ${fs.readlinkSync(full).replaceAll(root, "<root>")}`);
    else if (stat.isDirectory()) lines.push(`${relative}/`, ...snapshot(root, relative));
    else lines.push(`${relative}=${fs.readFileSync(full, "utf8")} (${(stat.mode & 0o777).toString(8)})`);
  }
  return lines;
}

const code = (error: unknown): string => (error as { code?: string }).code ?? `${error}`;

/** Trees with links, and the path written through them. */
const CASES: { name: string; tree: string[]; write: string }[] = [
  {
    name: "a relative link inside a linked directory (resolved from the real directory)",
    tree: [
      "dir/a/b/",
      "dir/link -> a/b",
      "dir/a/b/l -> ../target.txt",
      "dir/target.txt=unrelated",
      "dir/a/target.txt=old",
    ],
    write: "dir/link/l",
  },
  {
    name: "the same file missing: the link creates it where the kernel does",
    tree: ["dir/a/b/", "dir/link -> a/b", "dir/a/b/l -> ../target.txt", "dir/target.txt=unrelated"],
    write: "dir/link/l",
  },
  { name: "an absolute link", tree: ["data/", "data/real=old", "abs -> <root>/data/real"], write: "abs" },
  {
    name: "a chain of relative links in different directories",
    tree: ["data/", "sub/", "data/real=old", "first -> sub/second", "sub/second -> ../data/real"],
    write: "first",
  },
  {
    name: "a link whose text has .. after a linked directory",
    tree: ["sub/deep/", "x -> sub/deep", "y=not this one", "sub/y=old", "l -> x/../y"],
    write: "l",
  },
  {
    name: "a path with .. after a linked directory",
    tree: ["sub/deep/", "x -> sub/deep", "z=not this one"],
    write: "x/../z",
  },
  { name: "a link in the middle of the path", tree: ["data/", "data/real=old", "mid -> data"], write: "mid/real" },
  { name: "a dangling link", tree: ["dangling -> created"], write: "dangling" },
  { name: "a dangling link into a missing directory", tree: ["dangling -> nodir/file"], write: "dangling" },
  { name: "a link to a directory", tree: ["sub/", "to-dir -> sub"], write: "to-dir" },
  { name: "a link ending with /", tree: ["slash -> newdir/"], write: "slash" },
  { name: "a link to ..", tree: ["sub/", "sub/up -> .."], write: "sub/up" },
  { name: "a loop", tree: ["loop.a -> loop.b", "loop.b -> loop.a"], write: "loop.a" },
  { name: "a link to itself", tree: ["self -> self"], write: "self" },
  { name: "a file used as a directory", tree: ["plain=x", "through -> plain/x"], write: "through" },
];

for (const { name, tree, write } of CASES) {
  test(`writeFileAtomic() through ${name}: the tree and the outcome fs.writeFileSync gives`, async () => {
    await withDir(async (dir) => {
      const [expected, actual] = ["fs", "aio"].map((each) => path.join(dir, each));
      fs.mkdirSync(expected);
      fs.mkdirSync(actual);
      build(expected, tree);
      build(actual, tree);
      let want = "ok";
      try {
        fs.writeFileSync(path.join(expected, write), "new");
      } catch (error) {
        want = code(error);
      }
      const got = await writeFileAtomic(path.join(actual, write), "new").then(() => "ok", code);
      assert.equal(got, want, "the outcome");
      assert.deepEqual(snapshot(actual), snapshot(expected), "the tree");
    });
    await quiescent();
  });
}

test("writeFileAtomic(): a loop rejects with AioError ELOOP naming the path; a dangling link to a directory path with EISDIR", async () => {
  await withDir(async (dir) => {
    build(dir, ["loop.a -> loop.b", "loop.b -> loop.a", "slash -> newdir/"]);
    const loop = await writeFileAtomic(path.join(dir, "loop.a"), "x").catch((error) => error);
    assert.ok(loop instanceof AioError, `${loop}`);
    assert.equal(loop.code, "ELOOP");
    assert.match(loop.message, /loop\.[ab]'$/);
    const slash = await writeFileAtomic(path.join(dir, "slash"), "x").catch((error) => error);
    assert.ok(slash instanceof AioError, `${slash}`);
    assert.equal(slash.code, "EISDIR");
  });
  await quiescent();
});

test("writeFileAtomic(): calls through a link and through its target, made in order, end with the last call's content", async () => {
  await withDir(async (dir) => {
    // The link's path takes longer to resolve than the target's (more hops): still, calls join
    // the file's queue in the order they were made.
    build(dir, ["a/b/c/", "a/b/c/file=0", "l1 -> a/l2", "a/l2 -> b/l3", "a/b/l3 -> c/file"]);
    const target = path.join(dir, "a", "b", "c", "file");
    const link = path.join(dir, "l1");
    for (let round = 0; round < 10; round++) {
      const calls = [
        writeFileAtomic(link, `${round} through the link`),
        writeFileAtomic(target, `${round} through the target`),
      ];
      await within(Promise.all(calls), 30_000, "both calls");
      assert.equal(fs.readFileSync(target, "utf8"), `${round} through the target`, `round ${round}`);
      const reversed = [
        writeFileAtomic(target, `${round} through the target`),
        writeFileAtomic(link, `${round} through the link`),
      ];
      await within(Promise.all(reversed), 30_000, "both calls");
      assert.equal(fs.readFileSync(target, "utf8"), `${round} through the link`, `round ${round}, reversed`);
    }
    assert.deepEqual(fs.readdirSync(path.join(dir, "a", "b", "c")), ["file"], "no temporary file left");
  });
  await quiescent();
});
