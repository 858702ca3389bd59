/**
 * `writeFileAtomic()`'s coalescing over schedules (fast-check): several callers replace two files
 * through their own paths, through links (one link, a chain across directories, a linked
 * directory) and through paths that fail (a loop of links, a missing directory), with no gap,
 * microtask gaps, macrotask gaps or waiting for their previous call between calls; fast-check's
 * scheduler decides which caller goes next. The model, against the real file system:
 *
 * - every call settles; those through a loop or a missing directory reject (`ELOOP`, `ENOENT`),
 *   the others resolve;
 * - when a call resolves, its file holds the content of that call or of a later call for the same
 *   file (calls count in the order they were made, whatever path named the file);
 * - once all settled, each file holds the content of the last call made for it; the links are
 *   intact, no temporary file is left, nothing is in flight.
 *
 * That the directory sync comes after the rename and before the call resolves is shown by strace
 * in tests/durable_test.ts; here a call resolving before its content (or a later one) is in place
 * fails the model.
 *
 * @module
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../mod.ts";
import { test } from "./harness.ts";
import { emulator, quiescent, tempDir, within } from "./helpers.ts";

/** The paths a caller may use, and the file each one replaces (`undefined`: the call must fail). */
const VIAS = {
  "f": { path: "data/f", file: "f" },
  "f through a link": { path: "link", file: "f" },
  "f through a chain": { path: "chain", file: "f" },
  "f through a linked directory": { path: "dlink/f", file: "f" },
  "g": { path: "data/g", file: "g" },
  "g through a link": { path: "sub/g-link", file: "g" },
  "a loop": { path: "loop.a", file: undefined, code: "ELOOP" },
  "a missing directory": { path: "missing/f", file: undefined, code: "ENOENT" },
} as const satisfies Record<string, { path: string; file: "f" | "g" | undefined; code?: string }>;

type Via = keyof typeof VIAS;
type Gap = "none" | "microtasks" | "macrotask" | "previous settled";

interface Step {
  readonly via: Via;
  readonly gap: Gap;
}

const TREE: [string, string][] = [
  ["link", "data/f"],
  ["chain", "sub/hop"],
  ["sub/hop", "../data/f"],
  ["dlink", "data"],
  ["sub/g-link", "../data/g"],
  ["loop.a", "loop.b"],
  ["loop.b", "loop.a"],
];

const step: fc.Arbitrary<Step> = fc.record({
  via: fc.constantFrom(...Object.keys(VIAS) as Via[]),
  gap: fc.constantFrom<Gap>("none", "microtasks", "macrotask", "previous settled"),
});

/** Fewer runs under an emulator: a run there takes ten to fifty times longer. */
const RUNS = emulator === undefined ? 150 : 15;
/** How long a call may take to settle before the model says it never will. */
const SETTLE_MS = emulator === undefined ? 10_000 : 60_000;

interface Made {
  readonly index: number;
  readonly via: Via;
  readonly content: string;
  readonly promise: Promise<void>;
  /** What the call's file held when the call resolved, or the rejection's code. */
  outcome?: { resolved: string | undefined } | { rejected: string };
}

test("writeFileAtomic() over schedules: every call settles, in order per file replaced, the last content kept", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.array(step, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }),
      async (s, callers) => {
        const { dir, remove } = tempDir();
        try {
          for (const sub of ["data", "sub"]) fs.mkdirSync(path.join(dir, sub));
          for (const [link, target] of TREE) fs.symlinkSync(target, path.join(dir, link));
          const fileOf = (name: "f" | "g"): string => path.join(dir, "data", name);
          const made: Made[] = [];
          const make = (via: Via, caller: number): Made => {
            const index = made.length;
            const content = `call ${index} by caller ${caller} through ${via}`;
            const call: Made = {
              index,
              via,
              content,
              promise: writeFileAtomic(path.join(dir, VIAS[via].path), content),
            };
            const file = VIAS[via].file;
            // Read at once when the call resolves: no rename can come between (it needs I/O).
            call.promise.then(
              () => call.outcome = { resolved: file === undefined ? undefined : fs.readFileSync(fileOf(file), "utf8") },
              (error) => call.outcome = { rejected: (error as { code?: string }).code ?? `${error}` },
            );
            made.push(call);
            return call;
          };
          const run = async (steps: readonly Step[], caller: number): Promise<void> => {
            let previous: Made | undefined;
            for (const [number, { via, gap }] of steps.entries()) {
              await s.schedule(Promise.resolve(), `caller ${caller}, call ${number} (${via}, ${gap})`);
              if (gap === "microtasks") { for (let i = 0; i < 3; i++) await Promise.resolve(); }
              else if (gap === "macrotask") await new Promise((resolve) => setTimeout(resolve, 0));
              else if (gap === "previous settled" && previous !== undefined) await previous.promise.catch(() => {});
              previous = make(via, caller);
            }
          };
          await within(s.waitFor(Promise.all(callers.map(run))), SETTLE_MS, "every caller made its calls");
          const all = Promise.allSettled(made.map((call) => call.promise));
          await within(all, SETTLE_MS, `every call settled (${made.length} calls)`);
          await Promise.resolve(); // the outcome handlers ran
          for (const call of made) {
            const { file, code } = VIAS[call.via] as { file?: "f" | "g"; code?: string };
            const name = `call ${call.index} (${call.via})`;
            assert.ok(call.outcome !== undefined, `${name} settled`);
            if (file === undefined) {
              assert.deepEqual(call.outcome, { rejected: code }, name);
              continue;
            }
            assert.ok("resolved" in call.outcome, `${name} resolved, not ${JSON.stringify(call.outcome)}`);
            const sameFile = made.filter((other) => VIAS[other.via].file === file);
            const allowed = sameFile.filter((other) => other.index >= call.index).map((other) => other.content);
            assert.ok(
              allowed.includes(call.outcome.resolved!),
              `${name} resolved with ${
                JSON.stringify(call.outcome.resolved)
              } in the file, not its content or a later one's`,
            );
          }
          for (const file of ["f", "g"] as const) {
            const last = made.filter((call) => VIAS[call.via].file === file).at(-1);
            if (last === undefined) assert.ok(!fs.existsSync(fileOf(file)), `${file} never written`);
            else assert.equal(fs.readFileSync(fileOf(file), "utf8"), last.content, `${file}: the last call's content`);
          }
          for (const [link, target] of TREE) {
            assert.equal(fs.readlinkSync(path.join(dir, link)), target, `${link} intact`);
          }
          const left = [...fs.readdirSync(path.join(dir, "data")), ...fs.readdirSync(path.join(dir, "sub"))]
            .filter((name) => name.endsWith(".tmp"));
          assert.deepEqual(left, [], "no temporary file left");
        } finally {
          remove();
        }
      },
    ),
    { numRuns: RUNS, endOnFailure: true },
  );
  await quiescent();
});
