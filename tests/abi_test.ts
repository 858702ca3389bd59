/**
 * The ABI tables of src/abi.ts against the reference data (every target) and against the C
 * compiler of this machine (item 34 of the conformance checklist).
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { target } from "../mod.ts";
import { ABI, type TargetName } from "../src/abi.ts";
import { differences, runProbe } from "./abi_probe.ts";
import { test } from "./harness.ts";
import { root, tempDir } from "./helpers.ts";

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

const host = `${target.os}-${target.arch}-glibc`;

test("34. gcc (glibc x86_64): every offset, size, alignment and constant matches the table", () => {
  const { dir, remove } = tempDir();
  try {
    const probe = runProbe(ABI["linux-x86_64-glibc"], "gcc", dir);
    assert.ok(probe, "gcc is installed");
    assert.deepEqual(differences(ABI["linux-x86_64-glibc"], probe), []);
  } finally {
    remove();
  }
}, { skip: host !== "linux-x86_64-glibc" ? `this machine is ${host}` : false });
