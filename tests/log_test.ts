/**
 * The log's promises against schedules: every append settles whatever the gaps between the
 * callers, `close()` waits for every append made before it, a batch that cannot be built fails
 * the log instead of hanging it, and property tests (fast-check) over many writers, gaps, closes
 * and injected failures, against a model of what the file and the callers must see.
 *
 * @module
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { AioError, type LogFormat, openLog, readLog } from "../mod.ts";
import { logHooks } from "../src/log.ts";
import { followPlatform } from "../src/sync.ts";
import { type Loaded, native } from "../src/target.ts";
import { test } from "./harness.ts";
import { emulator, quiescent, withDir, within } from "./helpers.ts";

/** A gap a caller leaves between two calls. */
type Gap = { kind: "micro"; count: number } | { kind: "immediate" } | { kind: "timeout" };

async function pause(gap: Gap): Promise<void> {
  if (gap.kind === "micro") {
    for (let i = 0; i < gap.count; i++) await null;
  } else if (gap.kind === "immediate") {
    await new Promise((resolve) => setImmediate(resolve));
  } else {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

const GAPS: Gap[] = [
  ...Array.from({ length: 13 }, (_, count): Gap => ({ kind: "micro", count })),
  { kind: "immediate" },
  { kind: "timeout" },
];

const decoder = new TextDecoder();

/**
 * How long a test waits for appends and close() to settle before it reports a hang: longer
 * under an emulator, where a round of real requests takes ten to fifty times longer (and far more
 * on a machine shared with other emulated runs).
 */
const SETTLE_MS = emulator === undefined ? 10_000 : 60_000;

/**
 * The records of a log written by the tests below, `<id>` each: as `readLog()` yields them from
 * a framed log, as the text of a plain one shows them.
 */
async function recordsOf(file: string, format: LogFormat): Promise<string[]> {
  if (format === "plain") return fs.readFileSync(file, "utf8").match(/<[^<>]*>/g) ?? [];
  const records: string[] = [];
  for await (const record of readLog(file)) records.push(decoder.decode(record));
  return records;
}

const FORMATS: readonly LogFormat[] = ["framed", "plain"];

for (const format of FORMATS) {
  test(`openLog() (${format}): an append made any number of microtasks or macrotasks after a batch settled settles too`, async () => {
    await withDir(async (dir) => {
      // A lone writer that awaits its append, does a little other async work, then appends again:
      // the second append once came in the window after the flush's last look at its queue and
      // before it marked itself done, and waited for ever for a flush that never came.
      for (const gap of GAPS) {
        const file = path.join(dir, `gap-${gap.kind}-${gap.kind === "micro" ? gap.count : 0}.log`);
        const log = await openLog(file, { format });
        await within(log.append("<a>"), SETTLE_MS, `the first append (${JSON.stringify(gap)})`);
        await pause(gap);
        await within(log.append("<b>"), SETTLE_MS, `an append after a gap of ${JSON.stringify(gap)}`);
        await pause(gap);
        const third = log.append("<c>");
        // close() right behind it waits for it.
        await within(log.close(), SETTLE_MS, `close() after a gap of ${JSON.stringify(gap)}`);
        await third;
        assert.deepEqual(await recordsOf(file, format), ["<a>", "<b>", "<c>"], JSON.stringify(gap));
      }
    });
    await quiescent();
  });
}

for (const format of FORMATS) {
  test(`openLog() (${format}): close() resolves only after every append made before it settled, whatever the gap`, async () => {
    await withDir(async (dir) => {
      for (const gap of GAPS) {
        const file = path.join(dir, "close.log");
        fs.rmSync(file, { force: true });
        const log = await openLog(file, { format });
        await log.append("<a>");
        await pause(gap);
        const order: string[] = [];
        const appended = log.append("<b>").then(() => order.push("append"), () => order.push("append rejected"));
        await within(log.close().then(() => order.push("close")), SETTLE_MS, `close() (${JSON.stringify(gap)})`);
        await appended;
        assert.deepEqual(order, ["append", "close"], JSON.stringify(gap));
        assert.deepEqual(
          await recordsOf(file, format),
          ["<a>", "<b>"],
          `the record made before close() is in the file (${gap.kind})`,
        );
      }
    });
    await quiescent();
  });
}

for (const format of FORMATS) {
  test(`openLog() (${format}): a batch whose buffer cannot be allocated rejects its callers and fails the log`, async () => {
    const original = logHooks.allocate;
    const unhandled: unknown[] = [];
    const onUnhandled = (event: unknown): void => void unhandled.push(event);
    process.on("unhandledRejection", onUnhandled);
    try {
      await withDir(async (dir) => {
        const file = path.join(dir, "alloc.log");
        const log = await openLog(file, { format });
        await log.append("<ok>");
        const failure = new RangeError("Array buffer allocation failed");
        logHooks.allocate = () => {
          throw failure;
        };
        // Three appends in one tick: one batch, built by concatenation.
        const batch = ["<1>", "<2>", "<3>"].map((record) =>
          log.append(record).then(() => "resolved", (error) => error)
        );
        const outcomes = await within(Promise.all(batch), SETTLE_MS, "the batch's callers");
        assert.deepEqual(outcomes, [failure, failure, failure], "each caller of the batch rejects with the error");
        logHooks.allocate = original;
        await assert.rejects(log.append("<later>"), (error) => error === failure, "the failure is final for the log");
        await within(log.close(), SETTLE_MS, "close()");
        assert.deepEqual(await recordsOf(file, format), ["<ok>"]);
        // Give any stray rejection the time to be reported (a macrotask is enough in both runtimes).
        await new Promise((resolve) => setTimeout(resolve, 10));
        assert.deepEqual(unhandled, [], "no rejection left unhandled");
      });
    } finally {
      logHooks.allocate = original;
      process.off("unhandledRejection", onUnhandled);
    }
    await quiescent();
  });
}

// ---------------------------------------------------------------------------------------------
// Property tests over schedules.

/** One call of a writer: what it appends, whether it awaits it, and the gap after it. */
interface Step {
  readonly awaited: boolean;
  readonly gap: Gap;
}

interface Scenario {
  /** Each writer's calls. */
  readonly writers: Step[][];
  /** `close()` is called by writer `writer` after its step `after` (or never: -1). */
  readonly close: { writer: number; after: number };
  /** The request outcomes (in the order the log awaits them) replaced by a failure. */
  readonly failAt: readonly number[];
  /** The batch buffers (in the order the log builds them) that cannot be allocated. */
  readonly allocationFailsAt: readonly number[];
}

const gapArbitrary: fc.Arbitrary<Gap> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 8 }).map((count): Gap => ({ kind: "micro", count })) },
  { weight: 2, arbitrary: fc.constant<Gap>({ kind: "immediate" }) },
  { weight: 1, arbitrary: fc.constant<Gap>({ kind: "timeout" }) },
);

const stepArbitrary: fc.Arbitrary<Step> = fc.record({ awaited: fc.boolean(), gap: gapArbitrary });

const scenarioArbitrary: fc.Arbitrary<Scenario> = fc
  .array(fc.array(stepArbitrary, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 })
  .chain((writers) =>
    fc.record({
      writers: fc.constant(writers),
      close: fc.record({
        writer: fc.integer({ min: 0, max: writers.length - 1 }),
        after: fc.integer({ min: -1, max: 6 }),
      }),
      failAt: fc.oneof(
        { weight: 3, arbitrary: fc.constant<number[]>([]) },
        { weight: 2, arbitrary: fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 2 }) },
      ),
      allocationFailsAt: fc.oneof(
        { weight: 4, arbitrary: fc.constant<number[]>([]) },
        { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 1 }) },
      ),
    })
  );

/** Runs per property: fewer under an emulator, where a run takes ten to fifty times longer. */
const RUNS = emulator === undefined ? 120 : 15;

/** What one append saw. */
interface Call {
  readonly id: string;
  /** Its place among all appends, in call order. */
  readonly order: number;
  /** Made after `close()` was called. */
  readonly afterClose: boolean;
  outcome?: "resolved" | unknown;
  /** Its place among every settlement (appends and close), when it settled. */
  settledAt?: number;
}

async function runScenario(
  dir: string,
  format: LogFormat,
  s: fc.Scheduler,
  scenario: Scenario,
  round: number,
): Promise<void> {
  const file = path.join(dir, `p${round}.log`);
  // Framed, with the smallest chunks allocated ahead: records of 200 bytes cross into a new chunk
  // every 10 or so, so allocations (and their zeros) run in the middle of the schedules.
  const log = await openLog(file, format === "framed" ? { format, preallocate: 4096 } : { format });
  const fails = new Set(scenario.failAt);
  const injected = new AioError(native().abi.constants.EIO, "fdatasync", { path: file });
  let ios = 0;
  logHooks.io = <T>(operation: Promise<T>, what: string): Promise<T> => {
    const index = ios++;
    // The real request runs; its outcome reaches the log when the scheduler says, replaced by a
    // failure where the scenario says so (as a device failing after the bytes reached it).
    const outcome = fails.has(index) ? operation.then(() => Promise.reject(injected)) : operation;
    // Handled here while the scheduler holds it; the log sees the rejection once released.
    outcome.catch(() => {});
    return s.schedule(outcome, `${what} #${index}`);
  };
  const noMemory = new RangeError("Array buffer allocation failed");
  let allocations = 0;
  logHooks.allocate = (length) => {
    if (scenario.allocationFailsAt.includes(allocations++)) throw noMemory;
    return new Uint8Array(length);
  };
  const calls: Call[] = [];
  let settlements = 0;
  let closed = false;
  let closeCalledAt = -1;
  let closeSettledAt = -1;
  let closing: Promise<void> | undefined;
  const doClose = (): void => {
    if (closing !== undefined) return;
    closed = true;
    closeCalledAt = calls.length;
    closing = log.close().then(() => void (closeSettledAt = settlements++));
  };
  const writers = scenario.writers.map(async (steps, writer) => {
    // Each writer starts when the scheduler says: writers interleave in every order.
    await s.schedule(Promise.resolve(), `writer ${writer} starts`);
    for (const [index, step] of steps.entries()) {
      const call: Call = {
        id: `<w${writer}.${index}:`.padEnd(199, "-") + ">",
        order: calls.length,
        afterClose: closed,
      };
      calls.push(call);
      const settled = log.append(call.id).then(
        () => void (call.outcome = "resolved"),
        (error) => void (call.outcome = error),
      ).then(() => void (call.settledAt = settlements++));
      if (step.awaited) await settled;
      if (scenario.close.writer === writer && scenario.close.after === index) doClose();
      await pause(step.gap);
      if (step.gap.kind === "micro" && step.gap.count > 4) await s.schedule(Promise.resolve(), `writer ${writer} gap`);
    }
  });
  const everything = (async () => {
    await Promise.all(writers);
    doClose();
    await closing;
    // Every append settles, awaited by its writer or not.
    while (calls.some((call) => call.settledAt === undefined)) await new Promise((r) => setTimeout(r, 1));
  })();
  await within(s.waitFor(everything), SETTLE_MS, `every append and close() of round ${round} settling`);

  // close() waited for every append made before it.
  for (const call of calls) {
    if (call.order < closeCalledAt) {
      assert.ok(call.settledAt! < closeSettledAt, `${call.id}, made before close(), settled before close() resolved`);
    } else {
      assert.ok(call.outcome instanceof AioError && call.outcome.code === "EBADF", `${call.id} after close() rejects`);
    }
  }
  // Acknowledged records are the file's first records, in call order; after them only records
  // whose appends rejected (a failed batch, or one in libc behind it), in call order.
  const inFile = await recordsOf(file, format);
  const acknowledged = calls.filter((call) => call.outcome === "resolved").map((call) => call.id);
  assert.deepEqual(inFile.slice(0, acknowledged.length), acknowledged, "acknowledged records first, in call order");
  const rest = inFile.slice(acknowledged.length);
  const byId = new Map(calls.map((call) => [call.id, call]));
  let last = -1;
  for (const id of rest) {
    const call = byId.get(id);
    assert.ok(
      call !== undefined && call.outcome !== "resolved",
      `${id} after the acknowledged ones was not acknowledged`,
    );
    assert.ok(call.order > last, `the tail is in call order (${id})`);
    last = call.order;
  }
  // The first failure is final: every later append rejects with that same error.
  const firstFailure = calls.find((call) => call.outcome !== "resolved" && !call.afterClose);
  if (firstFailure !== undefined) {
    assert.ok(firstFailure.outcome === injected || firstFailure.outcome === noMemory, "a failure is an injected one");
    for (const call of calls) {
      if (call.order > firstFailure.order && !call.afterClose) {
        assert.equal(call.outcome, firstFailure.outcome, `${call.id}, after the first failure, rejects with it`);
      }
    }
  }
}

/**
 * The ways the log can run on this C library: as its table says, and with each ordering feature
 * it relies on turned off (always safe: the log then waits for what it could have queued), so
 * that glibc also runs the paths of musl (write and sync back to back, one batch at a time) and
 * of macOS (the sync after the write).
 */
function logPaths(): { name: string; platform: () => Loaded }[] {
  const loaded = native();
  const { features } = loaded.abi;
  const variants = [
    { name: "as the table says", features },
    { name: "one batch at a time", features: { ...features, fd_requests_in_order: false } },
    {
      name: "the sync after the write",
      features: { ...features, fd_requests_in_order: false, fsync_after_queued_writes: false },
    },
  ];
  const seen = new Set<string>();
  return variants.filter((variant) => {
    const key = JSON.stringify(variant.features);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).map(({ name, features }) => {
    const platform: Loaded = { ...loaded, abi: { ...loaded.abi, features } };
    return { name, platform: () => platform };
  });
}

for (const format of FORMATS) {
  for (const { name, platform } of logPaths()) {
    test(`openLog() (${format}): property (${name}): every append settles, close() waits, the file holds the acknowledged records`, async () => {
      const previous = followPlatform(platform);
      await withDir(async (dir) => {
        let round = 0;
        try {
          await fc.assert(
            fc.asyncProperty(fc.scheduler(), scenarioArbitrary, async (s, scenario) => {
              await runScenario(dir, format, s, scenario, round++);
            }),
            { numRuns: RUNS, endOnFailure: true },
          );
        } finally {
          logHooks.io = (operation) => operation;
          logHooks.allocate = (length) => new Uint8Array(length);
          followPlatform(previous);
        }
      });
      await quiescent();
    });
  }
}
