/**
 * The ABI tables of src/abi.ts against the reference data (every target) and against the C
 * compilers of this machine (item 34 of the conformance checklist): gcc for the host, musl-gcc
 * for x86_64 musl, aarch64-linux-gnu-gcc for aarch64 glibc (its probe run by qemu-aarch64). A
 * compiler that is missing shows as a skipped test that says which package gives it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ABI, type TargetName } from "../src/abi.ts";
import { differences, runProbe } from "./abi_probe.ts";
import { test } from "./harness.ts";
import { hasProgram, root, tempDir } from "./helpers.ts";

const referencePath = path.join(root, "..", "shared", "reference", "abi.json");
const reference = fs.existsSync(referencePath)
  ? JSON.parse(fs.readFileSync(referencePath, "utf8")) as { targets: Record<string, Record<string, unknown>> }
  : undefined;

/** A reference entry with `same_as` resolved and its own keys laid over the base. */
function resolved(name: string): Record<string, unknown> {
  const { same_as, ...own } = reference!.targets[name] as { same_as?: string };
  return same_as === undefined ? own : { ...resolved(same_as), ...own };
}

test("every target of the reference data has a table, and every table a reference", () => {
  assert.deepEqual(Object.keys(ABI).sort(), Object.keys(reference!.targets).sort());
}, { skip: reference === undefined ? "../shared/reference/abi.json is not beside the project" : false });

for (const name of Object.keys(ABI) as TargetName[]) {
  test(`34. ${name}: layouts, constants, limits and library names agree with the reference data`, () => {
    const expected = resolved(name);
    const ours = ABI[name] as unknown as Record<string, Record<string, unknown>>;
    assert.deepEqual(ours.library, expected.library, "library");
    assert.equal(ours.errno_symbol, expected.errno_symbol, "errno_symbol");
    for (const struct of ["aiocb", "sigevent", "timespec"]) {
      assert.deepEqual(ours[struct], expected[struct], struct);
    }
    for (const [key, value] of Object.entries(expected.constants as Record<string, number>)) {
      assert.equal(ours.constants[key], value, `constants.${key}`);
    }
    assert.deepEqual(ours.limits, expected.limits, "limits");
  }, { skip: reference === undefined ? "../shared/reference/abi.json is not beside the project" : false });
}

test("every table defines the same constants", () => {
  const keys = Object.keys(ABI["linux-x86_64-glibc"].constants).sort();
  for (const [name, abi] of Object.entries(ABI)) assert.deepEqual(Object.keys(abi.constants).sort(), keys, name);
});

/** A C compiler of the layout probe, the table its output must match, and how its binary runs. */
interface Compiler {
  /** The compiler's command. */
  readonly command: string;
  /** The table the probe is compared with. */
  readonly table: TargetName;
  /** The command that runs the probe (an emulator), empty to run it directly. */
  readonly runner: readonly string[];
  /** Why the probe cannot run here, or `false`. */
  readonly skip: string | false;
}

/**
 * The machine this process really runs on. Under qemu-user the runtime sees the emulated CPU,
 * but a program it starts from the host runs natively, so `uname -m` names the real machine.
 */
function machine(): string {
  return execFileSync("uname", ["-m"], { encoding: "utf8" }).trim();
}

/**
 * How to run `command` for the target its `-dumpmachine` names (`libc` overrides the C library,
 * for musl-gcc, which wraps the host's gcc). `install` names the Debian packages that give it.
 */
function compiler(command: string, install: string, libc?: "musl"): Compiler {
  const skipped = (skip: string): Compiler => ({ command, table: "linux-x86_64-glibc", runner: [], skip });
  if (!hasProgram(command)) return skipped(`${command} is not installed (Debian: ${install})`);
  const triple = execFileSync(command, ["-dumpmachine"], { encoding: "utf8" }).trim();
  const arch = triple.split("-")[0];
  const table = `linux-${arch}-${libc ?? (triple.endsWith("musl") ? "musl" : "glibc")}`;
  if (!(table in ABI)) return skipped(`${command} compiles for ${triple}, which no table describes`);
  if (arch === machine()) return { command, table: table as TargetName, runner: [], skip: false };
  const emulator = `qemu-${arch}`;
  if (!hasProgram(emulator)) {
    return skipped(`${emulator} is not installed (Debian: qemu-user): the ${arch} probe cannot run here`);
  }
  // The foreign C library and its dynamic loader live under /usr/<triple> (Debian's *-cross packages).
  return { command, table: table as TargetName, runner: [emulator, "-L", `/usr/${triple}`], skip: false };
}

const compilers: Compiler[] = [
  compiler("gcc", "gcc"),
  compiler("musl-gcc", "musl, musl-tools", "musl"),
  compiler("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu, libc6-arm64-cross"),
];

for (const { command, table, runner, skip } of compilers) {
  const name = skip === false ? ` (${table}${runner.length > 0 ? `, run by ${runner[0]}` : ""})` : "";
  test(`34. ${command}${name}: every offset, size, alignment and constant matches the table`, () => {
    const { dir, remove } = tempDir();
    try {
      const probe = runProbe(ABI[table], command, dir, [...runner]);
      assert.ok(probe, `${command} is installed`);
      assert.deepEqual(differences(ABI[table], probe), []);
    } finally {
      remove();
    }
  }, { skip });
}
