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
import * as path from "node:path";
import { target } from "../mod.ts";
import { test } from "./harness.ts";
import { emulator, hasProgram, lastJson, root, run, runtime, runtimeCommand, tempDir, within } from "./helpers.ts";

const skip = hasProgram("strace") ? false : "strace is not installed";

/**
 * The tests that inject a fault into the first sync only (`when=1`): strace counts calls per
 * thread, and they rely on glibc running every request of the fixture on one AIO thread.
 */
const firstSyncOnly = skip || (target.libc === "musl"
  ? "strace counts when=1 per thread, and musl runs each request on a thread of its own: every sync would fail"
  : false);

/**
 * The merged-callers test holds the first sync in the kernel for 200 ms and needs the other 999
 * calls made meanwhile. Under emulation the event loop can stall longer than that (it did under
 * qemu-aarch64 with Deno): the late callers then start a new sync, which succeeds.
 */
const heldSyncWindow = firstSyncOnly || (emulator !== undefined
  ? `under ${emulator} the 999 calls may come after the first sync's 200 ms in the kernel, and start a new one`
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

/** Runs a fixture under strace with `options`; returns its result and strace's log. */
async function traced(name: string, options: string[], args: string[] = []) {
  const { dir, remove } = tempDir();
  try {
    const log = path.join(dir, "strace.log");
    const command = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", log, ...options, ...runtimeCommand(fixture(name))];
    const result = await run([...command, ...args], { timeout: 60_000 });
    return { result, log: fs.readFileSync(log, "utf8") };
  } finally {
    remove();
  }
}

test("fdatasync() reaches the kernel as fdatasync(2) and fsync() as fsync(2), on that fd", async () => {
  const { result, log } = await traced("sync_calls.ts", ["-e", "trace=fsync,fdatasync"]);
  assert.equal(result.status, 0, result.stderr);
  const { fd } = lastJson<{ fd: number }>(result);
  // The runtime syncs files of its own too: keep the calls on the fixture's fd.
  const calls = log.split("\n").filter((line) => new RegExp(`\\b(fsync|fdatasync)\\(${fd}\\)`).test(line))
    .map((line) => line.replace(/^\d+\s+/, "").replace(/\s+/g, " "));
  assert.deepEqual(calls, [`fdatasync(${fd}) = 0`, `fsync(${fd}) = 0`]);
}, { skip });

for (const syscall of ["fdatasync", "fsync"]) {
  test(
    `8. EIO injected into ${syscall}(2) rejects with AioError EIO, syscall "${syscall}"; the next one works`,
    async () => {
      const inject = `inject=${syscall}:error=EIO:when=1`;
      const { result } = await traced("sync_failure.ts", ["-e", `trace=${syscall}`, "-e", inject], [syscall]);
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

test("on a slow device (2 ms per fdatasync(2)) the engine lets more files into libc at once", async () => {
  const inject = "inject=fdatasync:delay_exit=2000";
  const { result } = await traced("admission.ts", ["-e", "trace=fdatasync", "-e", inject]);
  assert.equal(result.status, 0, result.stderr);
  const outcome = lastJson<{ admission: boolean; min?: number; peak?: number }>(result);
  // Admission applies to glibc's thread pool only (musl runs a thread per request).
  assert.equal(outcome.admission, target.libc === "glibc");
  if (!outcome.admission) return;
  assert.ok(outcome.peak! > outcome.min!, `peak ${outcome.peak} > min ${outcome.min}`);
}, { skip });

test("a failed sync is reported to every caller merged behind it; 1,000 callers cost one fdatasync(2)", async () => {
  const inject = "inject=fdatasync:error=EIO:delay_enter=200000:when=1";
  const { result, log } = await traced("sync_failure.ts", ["-e", "trace=fdatasync", "-e", inject], [
    "fdatasync",
    "1000",
  ]);
  assert.equal(result.status, 0, result.stderr);
  const outcome = lastJson<{ joined: string[]; after: string; other: string; pending: number }>(result);
  assert.equal(outcome.joined.length, 1000);
  assert.deepEqual(new Set(outcome.joined), new Set(["EIO:fdatasync"]), "none of them is told it succeeded");
  assert.equal(outcome.after, "ok", "the library keeps working");
  assert.equal(outcome.other, "ok");
  assert.equal(outcome.pending, 0);
  const syncs = log.split("\n").filter((line) => line.includes("fdatasync(") && !line.includes("resumed>"));
  assert.equal(syncs.length, 3, `one failing, one after, one on the other fd:\n${syncs.join("\n")}`);
}, { skip: heldSyncWindow });

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
      const pid = await ready;
      const inject = ["-e", "trace=clone,clone3", "-e", "inject=clone,clone3:error=EAGAIN"];
      // Only the JavaScript thread (whose id is the pid), which is the one calling aio_fsync: the
      // runtime's other threads may start threads meanwhile, and abort if they cannot.
      tracer = spawn("strace", ["-qq", "-o", "/dev/null", "-p", `${pid}`, ...inject], { stdio: "ignore" });
      // strace needs a moment to attach.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      fs.writeFileSync(go, "");
      await within(closed, 20_000, "the fixture's exit");
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
