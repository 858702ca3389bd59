/**
 * Device faults: strace injects EIO or ENOSPC into every fsync, fdatasync and pwrite64 on one
 * file while another file works (`-P` limits injection to that file's path).
 */

import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "./harness.ts";
import { CHILD_TIMEOUT, hasProgram, lastJson, root, run, runtimeCommand, tempDir } from "./helpers.ts";

const skip = hasProgram("strace") ? false : "strace is not installed";

for (const errno of ["EIO", "ENOSPC"]) {
  test(`${errno} on one file's syncs and writes: those reject with ${errno}, the other file works`, async () => {
    const { dir, remove } = tempDir();
    try {
      const bad = path.join(dir, "failing.bin");
      const good = path.join(dir, "healthy.bin");
      const calls = "fsync,fdatasync,pwrite64";
      const result = await run([
        ...["strace", "-f", "-qq", "-o", "/dev/null", "-P", bad],
        ...["-e", `trace=${calls}`, "-e", `inject=${calls}:error=${errno}`],
        ...runtimeCommand(path.join(root, "tests", "fixtures", "faults.ts")),
        bad,
        good,
      ], { timeout: CHILD_TIMEOUT });
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(lastJson(result), {
        // The fsync of the failing file was queued behind its failing fdatasync: that failure
        // covered its data, so it is reported to it too.
        during: [`${errno}:write`, "ok", `${errno}:fdatasync`, "ok", `${errno}:fdatasync`, "ok"],
        after: ["ok", "ok", `${errno}:fsync`, `${errno}:fdatasync`],
        readBack: "payloadpayload",
        pending: 0,
        allocated: 0,
      });
    } finally {
      remove();
    }
  }, { skip });
}
