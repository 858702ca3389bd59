/**
 * The npm package as a user installs it: `npm pack` in the project, `npm install` of the tarball
 * into a fresh project outside it, then a plain JavaScript program importing the package by name
 * makes a record durable in Node 26, Bun and Deno, and its types check. Node and Deno refuse
 * TypeScript under `node_modules`: a package of `.ts` files fails here.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "./harness.ts";
import { CHILD_TIMEOUT, root, run, runtime, tempDir, testTarget } from "./helpers.ts";

const bin = (name: string): string => path.join(root, "node_modules", ".bin", name);

/** A program a user would write, in plain JavaScript: append a record, read the log back. */
const PROGRAM = `import { openLog, readLog, target } from "posix-aio";
import * as path from "node:path";

const file = path.join(process.argv.at(-1), \`\${target.runtime}.log\`);
const log = await openLog(file);
await log.append(\`durable from \${target.runtime}\\n\`);
await log.close();
const records = [];
for await (const record of readLog(file)) records.push(new TextDecoder().decode(record));
console.log(JSON.stringify({ runtime: target.runtime, records }));
`;

/** TypeScript that uses the package's types right, and one use they must refuse. */
const TYPED_OK = `import { type AioLog, openLog, target } from "posix-aio";
import { aio_fsync, constants } from "posix-aio/posix";
export const log: Promise<AioLog> = openLog("records.log");
export const runtime: "deno" | "bun" | "node" = target.runtime;
export const sync: (op: number, cb: never) => number = aio_fsync;
export const dsync: number = constants.O_DSYNC;
`;
const TYPED_WRONG = `import { openLog } from "posix-aio";
export const wrong: number = await openLog("records.log");
`;

/** A Node.js on PATH outside node_modules older than 26 (CI's Node 20), if there is one. */
function olderNode(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const node = path.join(dir, "node");
    if (dir.includes("node_modules") || !fs.existsSync(node)) continue;
    const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "";
    const major = Number(/^v(\d+)\./.exec(version)?.[1]);
    if (major > 0 && major < 26) return node;
  }
  return undefined;
}

test("npm pack makes JavaScript and .d.ts that Node 26, Bun and Deno import by name from node_modules", async () => {
  const { dir, remove } = tempDir();
  try {
    const packed = await run(["npm", "pack", "--silent", "--pack-destination", dir], { timeout: CHILD_TIMEOUT });
    assert.equal(packed.status, 0, packed.stdout + packed.stderr);
    const tarball = path.join(dir, packed.stdout.trim().split("\n").at(-1)!);
    const listed = spawnSync("tar", ["-tzf", tarball], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    for (const file of ["mod.js", "mod.d.ts", "src/posix.js", "src/posix.d.ts", "ffi/node.js", "LICENSE"]) {
      assert.ok(listed.includes(`package/${file}`), `${file} in the tarball: ${listed.join(" ")}`);
    }
    const typescript = listed.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"));
    assert.deepEqual(typescript, [], "no TypeScript source in the tarball");
    for (const built of ["mod.js", "src/posix.js", "src/posix.d.ts"]) {
      assert.ok(!fs.existsSync(path.join(root, built)), `postpack removed ${built} from the project`);
    }

    // A fresh project outside the repository; the package has no dependency: no registry needed.
    const project = path.join(dir, "consumer");
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, "package.json"), '{ "name": "consumer", "private": true, "type": "module" }');
    const installed = await run(["npm", "install", "--offline", "--no-audit", "--no-fund", tarball], {
      timeout: CHILD_TIMEOUT,
      cwd: project,
    });
    assert.equal(installed.status, 0, installed.stdout + installed.stderr);
    const program = path.join(project, "main.js");
    fs.writeFileSync(program, PROGRAM);
    const data = path.join(dir, "data");
    fs.mkdirSync(data);

    const commands: Record<string, string[]> = {
      node: [bin("node"), "--disable-warning=ExperimentalWarning", program, data],
      bun: [bin("bun"), program, data],
      deno: [bin("deno"), "run", "--allow-ffi", "--allow-read", "--allow-write", "--allow-env", program, data],
    };
    for (const [name, command] of Object.entries(commands)) {
      const result = await run(command, { timeout: CHILD_TIMEOUT, cwd: project, env: { NO_COLOR: "1" } });
      assert.equal(result.status, 0, `${name}: ${result.stdout}${result.stderr}`);
      const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { runtime: string; records: string[] };
      assert.equal(report.runtime, name);
      assert.ok(report.records.join("").includes(`durable from ${name}`), `${name}: ${JSON.stringify(report)}`);
    }

    fs.writeFileSync(path.join(project, "typed_ok.ts"), TYPED_OK);
    fs.writeFileSync(path.join(project, "typed_wrong.ts"), TYPED_WRONG);
    const checked = await run([bin("deno"), "check", "typed_ok.ts"], { timeout: CHILD_TIMEOUT, cwd: project });
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
    const refused = await run([bin("deno"), "check", "typed_wrong.ts"], {
      timeout: CHILD_TIMEOUT,
      cwd: project,
      env: { NO_COLOR: "1" },
    });
    assert.notEqual(refused.status, 0, "the .d.ts files type the exports");
    assert.match(refused.stderr, /Type 'AioLog' is not assignable to type 'number'/);

    const older = olderNode();
    if (older !== undefined) {
      const result = await run([older, program, data], { timeout: CHILD_TIMEOUT, cwd: project });
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, /node:ffi, which Node\.js \d+\.\d+\.\d+ does not have: use Node\.js 26 or later/);
    }
  } finally {
    remove();
  }
}, {
  skip: runtime !== "deno"
    ? "runs once, from Deno: it starts Node, Bun and Deno itself"
    : testTarget !== undefined
    ? "runs on the host only"
    : false,
});
