/**
 * The npm package's JavaScript: `npm pack` (and `npm publish`) run this as `prepack`, and with
 * `--clean` as `postpack`. Node and Deno refuse to strip TypeScript types under `node_modules`,
 * so the npm package ships JavaScript with `.d.ts` files, made by `deno pack` from the same
 * sources JSR publishes. They are written beside their sources (`mod.js` and `mod.d.ts` beside
 * `mod.ts`, `src/*.js` beside `src/*.ts`, ...), git-ignored, so that the package has the same
 * layout as the JSR one, and removed again once packed. A build first removes what an earlier
 * one left.
 *
 * ```sh
 * deno run --allow-all .ci/npm_build.ts           # write the JavaScript and .d.ts files
 * deno run --allow-all .ci/npm_build.ts --clean   # remove them
 * ```
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Folders (from the root) whose modules the package holds; `.` is the root's `mod.ts`. */
const FOLDERS = [".", "src", "ffi"];

/** The built files beside the sources: `X.js` and `X.d.ts` for every `X.ts` of `FOLDERS`. */
function builtFiles(): string[] {
  const files: string[] = [];
  for (const folder of FOLDERS) {
    for (const name of fs.readdirSync(path.join(root, folder))) {
      if (!name.endsWith(".ts") || name.endsWith(".d.ts")) continue;
      if (folder === "." && name !== "mod.ts") continue;
      const base = path.join(root, folder, name.slice(0, -".ts".length));
      files.push(`${base}.js`, `${base}.d.ts`);
    }
  }
  return files;
}

function clean(): void {
  for (const file of builtFiles()) fs.rmSync(file, { force: true });
}

function run(command: string, args: string[], cwd: string): void {
  const result = spawnSync(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.error ?? result.status}):\n${result.stdout}${result.stderr}`,
    );
  }
}

function build(): void {
  clean();
  const temp = fs.mkdtempSync(path.join(os.tmpdir(), "posix-aio-npm-"));
  try {
    const tarball = path.join(temp, "package.tgz");
    const deno = path.join(root, "node_modules", ".bin", "deno");
    run(deno, ["pack", "--quiet", "--allow-dirty", "--no-source-maps", "--output", tarball], root);
    run("tar", ["-xzf", tarball, "-C", temp], root);
    const packed = path.join(temp, "package");
    let written = 0;
    for (const file of builtFiles()) {
      const from = path.join(packed, path.relative(root, file));
      // deno pack writes no .d.ts for modules no public type depends on.
      if (!fs.existsSync(from)) continue;
      fs.copyFileSync(from, file);
      written++;
    }
    for (const entry of ["mod.js", "mod.d.ts", "src/posix.js", "src/posix.d.ts"]) {
      if (!fs.existsSync(path.join(root, entry))) throw new Error(`deno pack made no ${entry}`);
    }
    console.log(`npm_build: ${written} JavaScript and .d.ts files written beside their sources`);
  } catch (error) {
    clean();
    throw error;
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

if (Deno.args.includes("--clean")) clean();
else build();
