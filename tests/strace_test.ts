/**
 * What reaches the kernel, and device faults, seen and injected with strace in a child process
 * of the same runtime (see ../shared/reference/cross-targets.md). strace follows a runtime under
 * qemu-user too: qemu makes the guest's syscalls itself, so they are traced and injected alike.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { target } from "../mod.ts";
import { test } from "./harness.ts";
import {
  CHILD_TIMEOUT,
  DEADLINE,
  emulator,
  hasProgram,
  lastJson,
  root,
  run,
  runtime,
  runtimeCommand,
  tempDir,
  until,
  within,
} from "./helpers.ts";

const skip = hasProgram("strace") ? false : "strace is not installed";

/**
 * The tests that inject a fault into the first sync only (`when=1`): strace counts calls per
 * thread, and they rely on glibc running every request of the fixture on one AIO thread.
 */
const firstSyncOnly = skip || (target.libc === "musl"
  ? "strace counts when=1 per thread, and musl runs each request on a thread of its own: every sync would fail"
  : false);

/**
 * The test that makes the JavaScript thread's clone fail relies on the runtime starting no thread
 * of its own meanwhile. Under qemu-user, Bun's JavaScriptCore starts its JITWorker thread from
 * that thread then, and aborts when it cannot.
 */
const noThreadStart = skip || (emulator !== undefined && runtime === "bun"
  ? `under ${emulator}, Bun starts its JIT worker thread while clone fails, and aborts`
  : false);

const fixture = (name: string): string => path.join(root, "tests", "fixtures", name);

/**
 * Runs a fixture under strace with `options` and `args` (which may name files in `dir`, a fresh
 * folder); returns its result and strace's log.
 */
async function traced(name: string, options: string[], args: (dir: string) => string[] = () => []) {
  const { dir, remove } = tempDir();
  try {
    const log = path.join(dir, "strace.log");
    const command = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", log, ...options, ...runtimeCommand(fixture(name))];
    const result = await run([...command, ...args(dir)], { timeout: CHILD_TIMEOUT });
    return { result, log: fs.readFileSync(log, "utf8"), dir };
  } finally {
    remove();
  }
}

/**
 * The calls of `log` (traced with `-f -y`: lines start with the thread id, and each fd shows its
 * path) made on `file`, without thread ids or spacing: `fdatasync(7) = 0`. A call that strace
 * split around another thread's (`... <unfinished ...>`, then `<... fdatasync resumed>) = 0`) is
 * joined again.
 */
function callsOn(log: string, file: string): string[] {
  const shown = `<${file}>`;
  const unfinished = new Map<string, string>();
  const calls: string[] = [];
  for (const line of log.split("\n")) {
    const [, tid, rest] = /^(\d+)\s+(.*)$/.exec(line) ?? [];
    if (tid === undefined) continue;
    let call = rest;
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    if (resumed !== null) {
      if (!unfinished.has(tid)) continue;
      call = unfinished.get(tid)! + resumed[1];
      unfinished.delete(tid);
    } else if (rest.endsWith(" <unfinished ...>")) {
      unfinished.set(tid, rest.slice(0, -" <unfinished ...>".length));
      continue;
    }
    if (call.includes(shown)) calls.push(call.replaceAll(shown, "").replace(/\s+/g, " "));
  }
  return calls;
}

test("fdatasync() reaches the kernel as fdatasync(2) and fsync() as fsync(2), on that file", async () => {
  let file = "";
  const { result, log } = await traced("sync_calls.ts", ["-y", "-e", "trace=fsync,fdatasync"], (dir) => {
    file = path.join(dir, "data");
    return [file];
  });
  assert.equal(result.status, 0, result.stderr);
  const { fd } = lastJson<{ fd: number }>(result);
  // The runtime syncs files of its own too, maybe on the same fd number earlier: keep the
  // calls on the fixture's file.
  assert.deepEqual(callsOn(log, file), [`fdatasync(${fd}) = 0`, `fsync(${fd}) = 0`]);
}, { skip });

test(
  "one writer on a device of 100 µs per sync, nothing else running: syncs are noticed on the JavaScript thread",
  async () => {
    // The spin naps in aio_suspend while the event loop is idle (docs/design.md, "How completion works"),
    // for up to 300 µs: glibc's thread wakes the JavaScript thread itself. Before, the spin gave up
    // after 100 µs and every such sync was waited for off the thread. A busy machine may make
    // some miss the window; not all of them.
    // On tmpfs, so that the injected delay is the device (the temporary folder may be a disk).
    const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
    const shm = fs.mkdtempSync(path.join(base, "posix-aio-test-"));
    const seen: string[] = [];
    try {
      // Up to three runs: one whose early syncs all miss the window (a busy machine) marks the
      // device slow, and then only one sync in 16 or more tries the spin again.
      for (let attempt = 0; attempt < 3; attempt++) {
        const inject = ["-e", "trace=fdatasync", "-e", "inject=fdatasync:delay_exit=100"];
        const { result } = await traced("lone_writer.ts", inject, () => [path.join(shm, "data")]);
        assert.equal(result.status, 0, result.stderr);
        const { syncs, offThread } = lastJson<{ syncs: number; offThread: number }>(result);
        seen.push(`${offThread} of ${syncs}`);
        if (offThread < syncs) return;
      }
    } finally {
      fs.rmSync(shm, { recursive: true, force: true });
    }
    assert.fail(`every sync was waited for off the JavaScript thread, in each run: ${seen.join(", ")}`);
  },
  {
    skip: skip || (target.completion !== "poll+suspend"
      ? "counts the off-thread waits of poll+suspend"
      : emulator !== undefined && target.libc === "musl"
      ? `under ${emulator}, musl starts a thread per request, which takes longer than the naps' window`
      : false),
  },
);

test("1,000 concurrent fdatasync on one fd cost at most two fdatasync(2) calls, as the README says", async () => {
  let file = "";
  const { result, log } = await traced("merged_syncs.ts", ["-y", "-e", "trace=fdatasync"], (dir) => {
    file = path.join(dir, "data");
    return [file];
  });
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(lastJson(result), { calls: 1000, outcomes: ["fulfilled"], pending: 0, allocated: 0 });
  // README: "1,000 concurrent `fdatasync(fd)` cost two syncs": the first, and one for every
  // caller that came while it was in flight.
  const syncs = callsOn(log, file);
  assert.ok(syncs.length >= 1 && syncs.length <= 2, `${syncs.length} fdatasync(2) calls:\n${syncs.join("\n")}`);
  assert.ok(syncs.every((call) => /^fdatasync\(\d+\) = 0$/.test(call)), syncs.join("\n"));
}, { skip });

for (const syscall of ["fdatasync", "fsync"]) {
  test(
    `8. EIO injected into ${syscall}(2) rejects with AioError EIO, syscall "${syscall}"; the next one works`,
    async () => {
      const inject = `inject=${syscall}:error=EIO:when=1`;
      const { result } = await traced("sync_failure.ts", ["-e", `trace=${syscall}`, "-e", inject], () => [syscall]);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(lastJson(result), {
        joined: [`EIO:${syscall}`],
        after: "ok",
        other: "ok",
        pending: 0,
        allocated: 0,
      });
    },
    { skip: firstSyncOnly },
  );
}

test("a failed sync is reported to every caller merged behind it; 1,000 callers cost one fdatasync(2)", async () => {
  const inject = "inject=fdatasync:error=EIO:delay_enter=200000:when=1";
  let data = "";
  let other = "";
  const options = ["-y", "-e", "trace=fdatasync", "-e", inject];
  const { result, log } = await traced("sync_failure.ts", options, (dir) => {
    data = path.join(dir, "data");
    other = path.join(dir, "other");
    return ["fdatasync", "1000", dir];
  });
  assert.equal(result.status, 0, result.stderr);
  const outcome = lastJson<{ joined: string[]; after: string; other: string; pending: number }>(result);
  assert.equal(outcome.joined.length, 1000);
  assert.deepEqual(new Set(outcome.joined), new Set(["EIO:fdatasync"]), "none of them is told it succeeded");
  assert.equal(outcome.after, "ok", "the library keeps working");
  assert.equal(outcome.other, "ok");
  assert.equal(outcome.pending, 0);
  // The runtime may sync files of its own: only the fixture's two files count.
  const syncs = [...callsOn(log, data), ...callsOn(log, other)];
  assert.equal(syncs.length, 3, `one failing, one after, one on the other fd:\n${syncs.join("\n")}`);
  assert.match(syncs[0], /= -1 EIO/, "the first one failed");
}, { skip: firstSyncOnly });

test(
  "10. a submit libc cannot queue (no AIO thread can start: EAGAIN) is refused and leaves nothing in flight",
  async () => {
    const { dir, remove } = tempDir();
    const go = path.join(dir, "go");
    const command = runtimeCommand(fixture("submit_refused.ts"));
    const child = spawn(command[0], [...command.slice(1), go], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (chunk) => stderr += chunk);
    let exit = "";
    const closed = new Promise<void>((resolve) =>
      child.on("close", (code, signal) => {
        exit = `exit ${code} ${signal}`;
        resolve();
      })
    );
    const ready = new Promise<number>((resolve, reject) => {
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
        const match = /ready (\d+)/.exec(stdout);
        if (match) resolve(Number(match[1]));
      });
      closed.then(() => reject(new Error(`the fixture ended early: ${stdout}${stderr}`)));
    });
    let tracer: ReturnType<typeof spawn> | undefined;
    try {
      const pid = await within(ready, CHILD_TIMEOUT, "the fixture's ready line");
      // Clone fails; the fixture's polls of the file `go` (file syscalls) are traced too, so
      // that the log shows when strace is attached and tracing.
      const inject = ["-e", "trace=clone,clone3,%file", "-e", "inject=clone,clone3:error=EAGAIN"];
      const log = path.join(dir, "strace.log");
      // Only the JavaScript thread (whose id is the pid), which is the one calling aio_fsync: the
      // runtime's other threads may start threads meanwhile, and abort if they cannot.
      tracer = spawn("strace", ["-qq", "-o", log, "-p", `${pid}`, ...inject], { stdio: "ignore" });
      const tracing = (): boolean => fs.existsSync(log) && fs.readFileSync(log, "utf8").includes(go);
      await until(tracing, "strace tracing the fixture's polls");
      fs.writeFileSync(go, "");
      await within(closed, DEADLINE, "the fixture's exit");
    } finally {
      child.kill("SIGKILL");
      tracer?.kill("SIGKILL");
      await closed;
      remove();
    }
    const outcome = JSON.parse(stdout.trim().split("\n").at(-1)!.replace(/^ready.*/, "{}"));
    assert.deepEqual(outcome, { code: "EAGAIN", syscall: "aio_fsync", pending: 0, allocated: 0 }, `${exit}: ${stderr}`);
  },
  { skip: noThreadStart },
);
