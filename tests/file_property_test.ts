/**
 * `AioFile.close()` over schedules (fast-check). The file is a FIFO opened read-write, so that
 * the test decides when operations end: a read waits until the test feeds the FIFO (through a
 * descriptor of its own), and holds the requests queued behind it; a sync fails (`EINVAL`, a
 * pipe cannot be synced). Several callers write, read, sync, make a call with a bad argument,
 * close (maybe more than once) and feed the FIFO, with no gap, microtask gaps, macrotask gaps or
 * waiting for their previous operation between steps; fast-check's scheduler decides which goes
 * next. At the end the test feeds enough for every read. The model:
 *
 * - every operation settles: a write with its length, a read with 1 to its buffer's length bytes,
 *   a sync with `EINVAL`, a bad argument with RangeError, whatever came after `close()` (bad
 *   arguments aside) with `EBADF`;
 * - every `close()` returns the same promise, which resolves only once every operation started
 *   before the first `close()` has settled; then the descriptor no longer names the FIFO;
 * - nothing stays in flight or allocated.
 *
 * @module
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { type AioFile, open } from "../mod.ts";
import { test } from "./harness.ts";
import { emulator, quiescent, tempDir, within } from "./helpers.ts";

type Operation =
  | { readonly kind: "write"; readonly length: number }
  | { readonly kind: "read"; readonly length: number }
  | { readonly kind: "sync" | "datasync" | "bad argument" | "close" }
  | { readonly kind: "feed"; readonly length: number };

type Gap = "none" | "microtasks" | "macrotask" | "previous settled";

interface Step {
  readonly operation: Operation;
  readonly gap: Gap;
}

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant("read" as const), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant("feed" as const), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constantFrom("sync" as const, "datasync" as const, "bad argument" as const, "close" as const) }),
);

const step: fc.Arbitrary<Step> = fc.record({
  operation,
  gap: fc.constantFrom<Gap>("none", "microtasks", "macrotask", "previous settled"),
});

/** Fewer runs under an emulator: a run there takes ten to fifty times longer. */
const RUNS = emulator === undefined ? 200 : 20;
/** How long the operations may take to settle, once fed, before the model says they never will. */
const SETTLE_MS = emulator === undefined ? 10_000 : 60_000;

interface Started {
  readonly operation: Operation;
  readonly afterClose: boolean;
  readonly promise: Promise<unknown>;
  outcome?: { value: unknown } | { error: unknown };
}

const code = (error: unknown): string | undefined => (error as { code?: string }).code;

test("AioFile.close() over schedules: it resolves after every operation started before it, later ones reject with EBADF, nothing stays pending", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.array(step, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
      async (s, callers) => {
        const { dir, remove } = tempDir();
        const fifo = path.join(dir, "fifo");
        execFileSync("mkfifo", [fifo]);
        const feeder = fs.openSync(fifo, "r+");
        let handle: AioFile | undefined;
        const started: Started[] = [];
        try {
          handle = await open(fifo, { read: true, write: true });
          const file = handle;
          const { ino } = fs.fstatSync(file.fd);
          let closing: Promise<void> | undefined;
          /** Whether every operation started before the first close() had settled when it resolved. */
          let settledAtClose: string[] | undefined;
          const start = (op: Operation): Started | undefined => {
            if (op.kind === "feed") {
              fs.writeSync(feeder, "f".repeat(op.length));
              return undefined;
            }
            if (op.kind === "close") {
              const promise = file.close();
              if (closing === undefined) {
                closing = promise;
                const before = started.slice();
                promise.then(() => {
                  settledAtClose = before.filter((each) => each.outcome === undefined).map((each) =>
                    each.operation.kind
                  );
                }, () => {});
              } else {
                assert.equal(promise, closing, "every close() returns the same promise");
              }
              return undefined;
            }
            const afterClose = closing !== undefined;
            const promise = op.kind === "write"
              ? file.write("w".repeat(op.length), 0)
              : op.kind === "read"
              ? file.read(new Uint8Array(op.length), 0)
              : op.kind === "sync"
              ? file.sync()
              : op.kind === "datasync"
              ? file.datasync()
              : file.write("x", -1);
            const each: Started = { operation: op, afterClose, promise };
            promise.then((value) => each.outcome = { value }, (error) => each.outcome = { error });
            started.push(each);
            return each;
          };
          /** Feeds the FIFO enough for every read in flight (each takes 1 to its length bytes). */
          const feedReads = (byte: string): void => {
            const reads = started.filter((each) => each.operation.kind === "read" && each.outcome === undefined);
            const wanted = reads.reduce((sum, each) => sum + (each.operation as { length: number }).length, 0);
            if (wanted > 0) fs.writeSync(feeder, byte.repeat(wanted));
          };
          const run = async (steps: readonly Step[], caller: number): Promise<void> => {
            let previous: Started | undefined;
            for (const [number, { operation: op, gap }] of steps.entries()) {
              await s.schedule(Promise.resolve(), `caller ${caller}, step ${number} (${op.kind}, ${gap})`);
              if (gap === "microtasks") { for (let i = 0; i < 3; i++) await Promise.resolve(); }
              else if (gap === "macrotask") await new Promise((resolve) => setTimeout(resolve, 0));
              else if (gap === "previous settled" && previous !== undefined) {
                // The reads in flight (and whatever waits behind them) end only once fed: a caller
                // that waits feeds them first.
                feedReads("p");
                await previous.promise.catch(() => {});
              }
              previous = start(op) ?? previous;
            }
          };
          await within(s.waitFor(Promise.all(callers.map(run))), SETTLE_MS, "every caller made its calls");
          feedReads("e");
          await within(Promise.allSettled(started.map((each) => each.promise)), SETTLE_MS, "every operation settled");
          const closed = closing ?? file.close();
          await within(closed, SETTLE_MS, "close()");
          await Promise.resolve();
          if (closing !== undefined) {
            assert.deepEqual(settledAtClose, [], "close() resolved once the operations started before it had settled");
          }
          let stillFifo = false;
          try {
            stillFifo = fs.fstatSync(file.fd).ino === ino;
          } catch (error) {
            assert.equal(code(error), "EBADF");
          }
          assert.equal(stillFifo, false, "the descriptor is closed");
          for (const [index, each] of started.entries()) {
            const { operation: op, afterClose, outcome } = each;
            const name = `operation ${index} (${op.kind}${afterClose ? ", after close()" : ""})`;
            assert.ok(outcome !== undefined, `${name} settled`);
            if (op.kind === "bad argument") {
              assert.ok(
                "error" in outcome && outcome.error instanceof RangeError,
                `${name}: ${JSON.stringify(outcome)}`,
              );
            } else if (afterClose) {
              assert.ok(
                "error" in outcome && code(outcome.error) === "EBADF",
                `${name}: ${String(Object.values(outcome)[0])}`,
              );
            } else if (op.kind === "write") {
              assert.deepEqual(outcome, { value: op.length }, name);
            } else if (op.kind === "read") {
              const value = "value" in outcome ? outcome.value as number : -1;
              assert.ok(value >= 1 && value <= op.length, `${name}: ${String(Object.values(outcome)[0])}`);
            } else {
              assert.ok(
                "error" in outcome && code(outcome.error) === "EINVAL",
                `${name}: ${String(Object.values(outcome)[0])}`,
              );
            }
          }
          await quiescent(SETTLE_MS);
        } finally {
          // Whatever failed: no read may stay queued on the FIFO's descriptor (glibc would hold
          // later requests on that number behind it).
          const reads = started.filter((each) => each.operation.kind === "read" && each.outcome === undefined);
          if (reads.length > 0) {
            fs.writeSync(feeder, "c".repeat(8 * reads.length));
            await within(Promise.allSettled(reads.map((each) => each.promise)), SETTLE_MS, "the reads, fed at cleanup")
              .catch(() => {});
          }
          await handle?.close();
          fs.closeSync(feeder);
          remove();
        }
      },
    ),
    { numRuns: RUNS, endOnFailure: true },
  );
});
