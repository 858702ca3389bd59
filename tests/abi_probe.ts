/**
 * A C probe that prints, as JSON, what a C compiler says about every layout, constant and limit
 * in a `TargetAbi`: the same keys as the table, so the two can be compared one to one.
 *
 * @module
 */

import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { TargetAbi } from "../src/abi.ts";

type Layouts = Pick<TargetAbi, "aiocb" | "sigevent" | "timespec">;

const STRUCTS: Record<keyof Layouts | "aioinit", string> = {
  aiocb: "struct aiocb",
  sigevent: "struct sigevent",
  timespec: "struct timespec",
  aioinit: "struct aioinit",
};

/** C source printing the compiler's view of every key of `abi` (glibc's aioinit when present). */
export function probeSource(abi: TargetAbi): string {
  const parts: string[] = [];
  for (const [key, struct] of Object.entries(STRUCTS)) {
    const layout = abi[key as keyof Layouts | "aioinit"];
    if (layout === null) continue;
    const fields = Object.keys(layout).filter((name) => name !== "size" && name !== "align");
    const lines = fields.map((name) =>
      `  printf("\\"${name}\\":[%zu,%zu],", offsetof(${struct}, ${name}), sizeof(((${struct} *)0)->${name}));`
    );
    const align = "align" in layout ? `  printf("\\"align\\":%zu,", _Alignof(${struct}));` : "";
    parts.push(
      `  printf("\\"${key}\\":{");`,
      ...lines,
      align,
      `  printf("\\"size\\":%zu},", sizeof(${struct}));`,
    );
  }
  const constants = Object.keys(abi.constants).map((name, index) =>
    `  printf("${index === 0 ? "" : ","}\\"${name}\\":%ld", (long)(${name}));`
  );
  return `#define _GNU_SOURCE
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  printf("{");
${parts.filter(Boolean).join("\n")}
  printf("\\"constants\\":{");
${constants.join("\n")}
  printf("},\\"limits\\":{\\"AIO_PRIO_DELTA_MAX\\":%ld}}\\n", sysconf(_SC_AIO_PRIO_DELTA_MAX));
  return 0;
}
`;
}

/** What the probe printed. */
export type ProbeResult = Record<string, Record<string, unknown>>;

/**
 * Compiles the probe with `compiler` in `dir` and runs it (through `runner`, e.g. an emulator,
 * if given). Returns `undefined` when the compiler is not installed.
 */
export function runProbe(
  abi: TargetAbi,
  compiler: string,
  dir: string,
  runner: string[] = [],
): ProbeResult | undefined {
  if (spawnSync("sh", ["-c", `command -v ${compiler}`]).status !== 0) return undefined;
  const source = path.join(dir, `probe-${path.basename(compiler)}.c`);
  const binary = source.replace(/\.c$/, "");
  fs.writeFileSync(source, probeSource(abi));
  execFileSync(compiler, ["-std=c11", "-O0", "-o", binary, source], { stdio: "pipe" });
  const command = [...runner, binary];
  const output = execFileSync(command[0], command.slice(1), { encoding: "utf8" });
  return JSON.parse(output) as ProbeResult;
}

/** Every difference between the table and the probe, as readable lines (empty when they agree). */
export function differences(abi: TargetAbi, probe: ProbeResult): string[] {
  const found: string[] = [];
  for (const key of ["aiocb", "sigevent", "timespec", "aioinit", "constants"] as const) {
    const ours = abi[key] as Record<string, unknown> | null;
    if (ours === null) continue;
    for (const [name, value] of Object.entries(ours)) {
      const theirs = probe[key]?.[name];
      if (JSON.stringify(theirs) !== JSON.stringify(value)) {
        found.push(`${key}.${name}: table ${JSON.stringify(value)}, compiler ${JSON.stringify(theirs)}`);
      }
    }
  }
  const priority = abi.limits.AIO_PRIO_DELTA_MAX;
  if (priority !== undefined && probe.limits.AIO_PRIO_DELTA_MAX !== priority) {
    found.push(`limits.AIO_PRIO_DELTA_MAX: table ${priority}, sysconf ${probe.limits.AIO_PRIO_DELTA_MAX}`);
  }
  return found;
}
