/**
 * Finding the C library: the resolver against every platform's naming, the override, the
 * errors for unsupported platforms and missing permissions, and that importing loads nothing.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import type { NativeLibrary } from "../ffi/mod.ts";
import { FfiPermissionError } from "../ffi/mod.ts";
import { target } from "../mod.ts";
import { ABI, type TargetName } from "../src/abi.ts";
import { openLibrary, targetCandidates } from "../src/target.ts";
import { test } from "./harness.ts";
import {
  CHILD_TIMEOUT,
  type ChildResult,
  DEADLINE,
  hasProgram,
  lastJson,
  processLibc,
  root,
  run,
  runtime,
  runtimeCommand,
  runtimeLauncher,
  testTarget,
  within,
} from "./helpers.ts";

/** A fake dlopen: `files` maps each name that opens to the C library behind it. */
function opener(files: Record<string, "glibc" | "musl" | "darwin">) {
  const opened: string[] = [];
  const closed: string[] = [];
  const open = (path: string, errnoSymbol: string): NativeLibrary => {
    opened.push(`${path}:${errnoSymbol}`);
    const libc = files[path];
    if (libc === undefined) throw new Error(`${path}: cannot open shared object file`);
    return {
      path,
      symbols: undefined as unknown as NativeLibrary["symbols"],
      has: (name) => name === "gnu_get_libc_version" && libc === "glibc",
      errno: () => 0,
      close: () => closed.push(path),
    };
  };
  return { open, opened, closed };
}

test("glibc 2.34 and later: libc.so.6", () => {
  const fake = opener({ "libc.so.6": "glibc", "librt.so.1": "glibc" });
  const { library, target } = openLibrary("linux", "x86_64", undefined, fake.open);
  assert.equal(library.path, "libc.so.6");
  assert.equal(target, "linux-x86_64-glibc");
  assert.deepEqual(fake.opened, ["libc.so.6:__errno_location"]);
});

test("glibc before 2.34: libc.so.6 lacks the AIO functions, librt.so.1 has them", () => {
  const fake = opener({ "librt.so.1": "glibc" });
  const { library, target } = openLibrary("linux", "aarch64", undefined, fake.open);
  assert.equal(library.path, "librt.so.1");
  assert.equal(target, "linux-aarch64-glibc");
});

test("musl answers glibc's names with itself: those are closed, its Alpine name is kept", () => {
  const musl = { "libc.so.6": "musl", "librt.so.1": "musl", "libc.musl-x86_64.so.1": "musl" } as const;
  const fake = opener(musl);
  const { library, target } = openLibrary("linux", "x86_64", undefined, fake.open);
  assert.equal(library.path, "libc.musl-x86_64.so.1");
  assert.equal(target, "linux-x86_64-musl");
  assert.deepEqual(fake.closed, ["libc.so.6", "librt.so.1"]);
  const arm = opener({ "libc.musl-aarch64.so.1": "musl" });
  assert.equal(openLibrary("linux", "aarch64", undefined, arm.open).target, "linux-aarch64-musl");
});

test("macOS: libSystem, with __error for errno", () => {
  const fake = opener({ "/usr/lib/libSystem.B.dylib": "darwin" });
  for (const arch of ["x86_64", "aarch64"]) {
    const { library, target } = openLibrary("darwin", arch, undefined, fake.open);
    assert.equal(library.path, "/usr/lib/libSystem.B.dylib");
    assert.equal(target, `darwin-${arch}`);
  }
  assert.deepEqual(fake.opened, ["/usr/lib/libSystem.B.dylib:__error", "/usr/lib/libSystem.B.dylib:__error"]);
});

test("POSIX_AIO_LIBRARY is the only library tried, and its C library is identified", () => {
  const fake = opener({ "/opt/musl/lib/libc.so": "musl", "libc.so.6": "glibc" });
  const { library, target } = openLibrary("linux", "x86_64", "/opt/musl/lib/libc.so", fake.open);
  assert.equal(library.path, "/opt/musl/lib/libc.so");
  assert.equal(target, "linux-x86_64-musl");
  assert.deepEqual(fake.opened, ["/opt/musl/lib/libc.so:__errno_location"]);
  assert.throws(
    () => openLibrary("linux", "x86_64", "/missing.so", fake.open),
    /cannot use POSIX_AIO_LIBRARY=\/missing\.so: \/missing\.so: cannot open/,
  );
});

test("no usable library: the error lists what was tried and names POSIX_AIO_LIBRARY", () => {
  const fake = opener({});
  assert.throws(
    () => openLibrary("linux", "x86_64", undefined, fake.open),
    (error: Error) => {
      for (const name of ["libc.so.6", "librt.so.1", "libc.musl-x86_64.so.1", "libc.so", "POSIX_AIO_LIBRARY"]) {
        assert.ok(error.message.includes(name), `${name} in: ${error.message}`);
      }
      return true;
    },
  );
});

test("a missing FFI permission is not mistaken for a missing library", () => {
  const open = (): NativeLibrary => {
    throw new FfiPermissionError("run Deno with --allow-ffi");
  };
  assert.throws(() => openLibrary("linux", "x86_64", undefined, open), FfiPermissionError);
});

test("unsupported platforms fail with an error naming the platform", () => {
  assert.throws(
    () => targetCandidates("windows", "x86_64"),
    /does not support windows \(x86_64\): Windows has no POSIX AIO/,
  );
  assert.throws(() => targetCandidates("freebsd", "x86_64"), /does not support freebsd \(x86_64\): FreeBSD/);
  assert.throws(() => targetCandidates("linux", "x86"), /does not support linux on x86: .*32-bit/);
  assert.throws(() => targetCandidates("linux", "arm"), /does not support linux on arm: .*32-bit/);
  assert.throws(() => targetCandidates("linux", "riscv64"), /does not support linux on riscv64/);
  assert.deepEqual(targetCandidates("linux", "aarch64"), ["linux-aarch64-glibc", "linux-aarch64-musl"]);
});

test("importing opens nothing; Deno without --allow-ffi fails at first use naming the flag", async () => {
  const script = `${root}/tests/fixtures/loading.ts`;
  const result = await run([...runtimeLauncher, "run", "--allow-read", "--allow-env", script], {
    timeout: CHILD_TIMEOUT,
  });
  const report = lastJson<{ imported: boolean; before: unknown; error?: string }>(result);
  assert.equal(report.imported, true);
  assert.deepEqual(report.before, { pending: 0, allocated: 0 });
  assert.match(report.error ?? "", /--allow-ffi/);
}, { skip: runtime === "deno" ? false : "Deno permissions" });

test("Deno with --allow-ffi=<path of libc> fails at first use too, asking for --allow-ffi without a path", async () => {
  // Deno's pointer functions need unrestricted FFI, and with a path-limited grant Deno resolves
  // a bare library name against the working directory: the module asks for --allow-ffi itself.
  const libc = fs.readFileSync("/proc/self/maps", "utf8").split("\n").map((line) => line.split(/\s+/)[5] ?? "")
    .find((file) => /\/libc[.-]/.test(file))!;
  const script = `${root}/tests/fixtures/loading.ts`;
  for (const env of [{}, { POSIX_AIO_LIBRARY: libc }] as Record<string, string>[]) {
    const result = await run(
      [...runtimeLauncher, "run", `--allow-ffi=${libc}`, "--allow-read", "--allow-env", script],
      {
        env,
        timeout: DEADLINE,
      },
    );
    assert.equal(result.status, 0, result.stderr);
    const report = lastJson<{ before: unknown; error?: string }>(result);
    assert.deepEqual(report.before, { pending: 0, allocated: 0 });
    assert.match(report.error ?? "", /run Deno with --allow-ffi \(without a path/, JSON.stringify(env));
  }
}, { skip: runtime !== "deno" ? "Deno permissions" : processLibc() === undefined ? "needs /proc/self/maps" : false });

/** Runs the loading fixture under Node with `flags`; resolves with its report. */
async function nodeLoading(
  flags: string[],
): Promise<{ imported: boolean; before: unknown; error?: string; libc?: string }> {
  const script = `${root}/tests/fixtures/loading.ts`;
  const result = await run([...runtimeLauncher, "--disable-warning=ExperimentalWarning", ...flags, script], {
    timeout: CHILD_TIMEOUT,
  });
  assert.equal(result.status, 0, result.stderr);
  return lastJson(result);
}

test("importing opens nothing; Node with node:ffi disabled fails at first use naming the flag", async () => {
  const report = await nodeLoading(["--no-experimental-ffi"]);
  assert.equal(report.imported, true);
  assert.deepEqual(report.before, { pending: 0, allocated: 0 });
  assert.match(report.error ?? "", /node:ffi, disabled in this Node\.js 26\.\d+\.\d+ by --no-experimental-ffi/);
}, { skip: runtime === "node" ? false : "Node's flags" });

test("Node's permission model: --allow-ffi and --allow-worker are named until both are given", async () => {
  const model = ["--permission", "--allow-fs-read=*"];
  const none = await nodeLoading(model);
  assert.deepEqual(none.before, { pending: 0, allocated: 0 });
  assert.match(none.error ?? "", /permission model is on, run Node with --allow-ffi and --allow-worker$/);
  const ffiOnly = await nodeLoading([...model, "--allow-ffi"]);
  assert.match(ffiOnly.error ?? "", /run Node with --allow-worker$/);
  const both = await nodeLoading([...model, "--allow-ffi", "--allow-worker"]);
  assert.equal(both.error, undefined);
  assert.equal(both.libc, processLibc());
}, { skip: runtime !== "node" ? "Node's flags" : processLibc() === undefined ? "needs /proc/self/maps" : false });

/**
 * Runs Deno on a pseudo-terminal (`script`) without --allow-ffi and answers its permission
 * prompts with `answer`; resolves with everything the terminal showed, without carriage returns.
 */
async function onTerminal(answer: string): Promise<string> {
  const script = `${root}/tests/fixtures/loading.ts`;
  const quote = (word: string): string => `'${word.replaceAll("'", "'\\''")}'`;
  const command = [...runtimeLauncher, "run", "--allow-read", "--allow-env", script].map(quote).join(" ");
  const child = spawn("script", ["-qec", command, "/dev/null"], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => output += chunk);
  child.stderr.on("data", (chunk) => output += chunk);
  // Deno discards what was typed before it reads the answer: while a prompt shows unanswered
  // (more "Allow?" than answers seen), type the answer again every 100 ms.
  const count = (text: string): number => output.split(text).length - 1;
  const typing = setInterval(() => {
    if (count("Allow?") > count("Granted ") + count("Denied ")) child.stdin.write(`${answer}\n`);
  }, 100);
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  try {
    await within(closed, DEADLINE, "the prompted script's end");
  } finally {
    clearInterval(typing);
    child.kill("SIGKILL");
  }
  return output.replaceAll("\r", "");
}

test(
  "Deno on a terminal without --allow-ffi: one prompt for ffi access; yes works, no rejects naming the flag",
  async () => {
    const granted = await onTerminal("y");
    assert.equal(granted.split("Deno requests ffi access").length - 1, 1, granted);
    assert.match(granted, /Granted ffi access\./);
    assert.equal(lastJson<{ libc?: string }>({ stdout: granted } as ChildResult).libc, processLibc(), granted);
    const denied = await onTerminal("n");
    assert.equal(denied.split("Deno requests ffi access").length - 1, 1, denied);
    assert.match(lastJson<{ error?: string }>({ stdout: denied } as ChildResult).error ?? "", /--allow-ffi/, denied);
  },
  {
    skip: runtime !== "deno"
      ? "Deno permissions"
      : !hasProgram("script")
      ? "needs script(1) for a pseudo-terminal"
      : processLibc() === undefined
      ? "needs /proc/self/maps"
      : false,
  },
);

test("POSIX_AIO_LIBRARY selects the library in a real process; a bad one is named in the error", async () => {
  const script = `${root}/tests/fixtures/loading.ts`;
  const good = await run(runtimeCommand(script), { env: { POSIX_AIO_LIBRARY: "librt.so.1" }, timeout: CHILD_TIMEOUT });
  // musl answers librt.so.1 with itself, and the module must then say musl.
  assert.deepEqual(lastJson(good), {
    imported: true,
    before: { pending: 0, allocated: 0 },
    library: "librt.so.1",
    libc: processLibc(),
  });
  const bad = await run(runtimeCommand(script), {
    env: { POSIX_AIO_LIBRARY: "/nonexistent/libc.so" },
    timeout: CHILD_TIMEOUT,
  });
  assert.match(lastJson<{ error: string }>(bad).error, /POSIX_AIO_LIBRARY=\/nonexistent\/libc\.so/);
});

test("target names the C library this process runs on: libc.so.6 for glibc, the Alpine name for musl", () => {
  const libc = processLibc()!;
  const expected = `${target.os}-${target.arch}-${libc}` as TargetName;
  if (testTarget !== undefined) assert.equal(expected, testTarget, "tests/matrix.ts runs this process as that target");
  assert.equal(target.libc, libc, "the C library /proc/self/maps shows");
  // libc.so.6 on glibc, libc.musl-<arch>.so.1 on musl: the first name of the table, not a fallback.
  assert.equal(target.library, ABI[expected].library[0]);
}, { skip: processLibc() === undefined ? "needs Linux's /proc/self/maps" : false });
