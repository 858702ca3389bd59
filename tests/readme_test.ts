/**
 * Every TypeScript example of README.md runs, in this runtime, as a user would copy it: each
 * ```ts block (unless its fence says `ts ignore`) is written to a file of its own in a fresh
 * folder, its imports of `@posix/aio` and `@posix/aio/posix` pointed at this checkout, and run
 * there, as its working directory, as a child of this runtime: Deno with `--allow-ffi
 * --allow-read --allow-write --allow-env` (what the README tells users), Bun as is, Node with the
 * options of the suite's Node children (`NODE_OPTIONS`). It must exit 0, so the README cannot go
 * stale.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "./harness.ts";
import { CHILD_TIMEOUT, NODE_OPTIONS, root, run, runtime, runtimeLauncher, withDir } from "./helpers.ts";

/** A ```ts block of a markdown text. */
export interface CodeBlock {
  /** The line its code starts on (1-based). */
  readonly line: number;
  /** The heading it is under, without its `#`s (`""` before the first). */
  readonly heading: string;
  /** Its code. */
  readonly code: string;
}

/**
 * The ```ts blocks of a markdown text (not ```ts ignore, nor any other language), in order. A
 * fence of three or more backticks is closed by a line of at least as many.
 */
export function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split(/\r?\n/);
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})\s*(.*)$/.exec(lines[i].trim());
    if (open === null) {
      const title = /^#{1,6}\s+(.*)$/.exec(lines[i]);
      if (title !== null) heading = title[1].trim();
      continue;
    }
    const fence = open[1];
    let end = i + 1;
    while (end < lines.length && !(lines[end].trim().startsWith(fence) && /^`+$/.test(lines[end].trim()))) end++;
    if (open[2].trim() === "ts") blocks.push({ line: i + 2, heading, code: lines.slice(i + 1, end).join("\n") });
    i = end;
  }
  return blocks;
}

/** The example with its imports of the module pointed at this checkout. */
function localized(code: string): string {
  const url = (file: string): string => pathToFileURL(path.join(root, file)).href;
  return code
    .replaceAll('from "@posix/aio/posix"', `from ${JSON.stringify(url("src/posix.ts"))}`)
    .replaceAll('from "@posix/aio"', `from ${JSON.stringify(url("mod.ts"))}`);
}

/** The command that runs an example as the README tells users to run it in this runtime. */
function command(file: string): string[] {
  if (runtime === "deno") {
    return [...runtimeLauncher, "run", "--allow-ffi", "--allow-read", "--allow-write", "--allow-env", file];
  }
  if (runtime === "node") return [...runtimeLauncher, ...NODE_OPTIONS, file];
  return [...runtimeLauncher, file];
}

const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
const examples = codeBlocks(readme);

test("README.md has TypeScript examples, and each imports the module", () => {
  assert.ok(examples.length >= 5, `${examples.length} examples found`);
  for (const { line, code } of examples) {
    assert.match(code, /from "@posix\/aio(\/posix)?"/, `the example at line ${line} imports @posix/aio`);
  }
});

test(
  "README.md: every TypeScript example type-checks against the module (deno check --doc-only)",
  async () => {
    const result = await run([...runtimeLauncher, "check", "--doc-only", "README.md"], {
      cwd: root,
      timeout: CHILD_TIMEOUT,
    });
    assert.equal(result.status, 0, `exit ${result.status}:\n${result.stdout}\n${result.stderr}`);
  },
  { skip: runtime === "deno" ? false : "Deno's type checker runs it: under deno test only" },
);

for (const { line, heading, code } of examples) {
  test(`README.md line ${line} (${heading}): the example runs`, async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, "example.ts");
      fs.writeFileSync(file, localized(code));
      const result = await run(command(file), { cwd: dir, timeout: CHILD_TIMEOUT });
      assert.equal(result.status, 0, `exit ${result.status}:\n${result.stdout}\n${result.stderr}`);
    });
  });
}
