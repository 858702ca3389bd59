/**
 * examples/http_log.ts, started in this runtime on a free port: concurrent POSTs are each
 * acknowledged, and GET /records and the file hold each acknowledged record once. Under strace,
 * on a slow device (each fdatasync(2) held 20 ms), each `201 Created` left the server only after
 * its record was written and an fdatasync of the file, started after that write returned, had
 * returned: acknowledged once durable.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { test } from "./harness.ts";
import { CHILD_TIMEOUT, hasProgram, root, runtimeCommand, tempDir, within } from "./helpers.ts";
import { type Call, fdOf, filesOf, parseTrace } from "./trace.ts";

const example = path.join(root, "examples", "http_log.ts");
const RECORDS = 200;

interface Server {
  readonly url: string;
  readonly pid: number;
  /** Sends SIGTERM and waits for the exit; resolves to what the server printed. */
  stop(): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts the example on a free port of the loopback interface (under `tracer`, a command prefix). */
async function start(file: string, variant: string, tracer: readonly string[] = []): Promise<Server> {
  const [command, ...args] = [...tracer, ...runtimeCommand(example)];
  const child: ChildProcess = spawn(command, [...args, "--port=0", `--file=${file}`, `--variant=${variant}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk);
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk);
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const ready = new Promise<{ pid: number; listening: { port: number } }>((resolve, reject) => {
    child.stdout!.on("data", () => {
      const line = stdout.split("\n").find((each) => each.startsWith('{"listening"'));
      if (line !== undefined) resolve(JSON.parse(line));
    });
    exited.then((code) => reject(new Error(`The server exited with ${code} before listening:\n${stderr}`)));
  });
  try {
    const { pid, listening } = await within(ready, CHILD_TIMEOUT, "the server listening");
    return {
      url: `http://127.0.0.1:${listening.port}/records`,
      pid,
      stop: async () => {
        // Not child.kill(): Deno's node:child_process then reports the exit as by SIGTERM even
        // when the server handles the signal and exits with 0.
        process.kill(pid, "SIGTERM");
        const code = await within(exited, CHILD_TIMEOUT, "the server's exit");
        return { code, stdout, stderr };
      },
    };
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    throw error;
  }
}

/** POSTs `body`; resolves to the status (the body is read, so no resource leaks). */
async function post(url: string, body: string): Promise<number> {
  const response = await fetch(url, { method: "POST", body });
  await response.arrayBuffer();
  return response.status;
}

for (
  const [variant, fresh] of ["log", "fdatasync", "native"].flatMap((each) => [[each, false], [each, true]] as const)
) {
  const setup = fresh ? "a new file" : "a file with a record and a torn one";
  test(`http_log (${variant}, ${setup}): ${RECORDS} concurrent POSTs are acknowledged, served back and in the file once each`, async () => {
    const { dir, remove } = tempDir();
    try {
      const file = path.join(dir, "records.log");
      // A record from an earlier run, then a torn one (a crash during a write): cut at start.
      if (!fresh) fs.writeFileSync(file, '{"id":"earlier"}\n{"id":"to');
      const server = await start(file, variant);
      let stopped: { code: number | null; stdout: string; stderr: string } | undefined;
      try {
        const sent = Array.from(
          { length: RECORDS },
          (_, id) => JSON.stringify({ id, text: `record ${id} `.repeat(id % 7) }),
        );
        // Half with a trailing line feed, which the server drops before adding its own.
        const statuses = await Promise.all(sent.map((body, id) => post(server.url, id % 2 ? body + "\n" : body)));
        assert.deepEqual(statuses, sent.map(() => 201));
        assert.equal(await post(server.url, '{"a":1}\n{"b":2}'), 400, "a body with a line feed inside is refused");
        assert.equal(await post(server.url, ""), 400, "an empty body is refused");

        const response = await fetch(server.url);
        assert.equal(response.status, 200);
        const served = await response.text();
        const expected = fresh ? sent : ['{"id":"earlier"}', ...sent];
        const lines = served.split("\n");
        assert.equal(lines.pop(), "", "the last record ends with a line feed");
        if (!fresh) assert.equal(lines[0], expected[0], "the earlier record comes first");
        assert.deepEqual(lines.toSorted(), expected.toSorted(), "every record once, nothing else");
        assert.equal(fs.readFileSync(file, "utf8"), served, "the file holds exactly what GET returns");
      } finally {
        stopped = await server.stop();
      }
      assert.equal(stopped.code, 0, `${stopped.stdout}\n${stopped.stderr}`);
      const closed = JSON.parse(stopped.stdout.trim().split("\n").at(-1)!);
      assert.equal(closed.closed.acknowledged, RECORDS);
      assert.equal(closed.closed.bytes, fs.statSync(file).size);
    } finally {
      remove();
    }
  });
}

/** What the trace of a server shows of one acknowledged record. */
interface Acknowledged {
  readonly id: number;
  /** The `201 Created` sent on the record's connection. */
  readonly ack: Call;
}

/**
 * The acknowledgements in a trace of the server: on each accepted connection, in order, the ids
 * of the records received (`{"id":N`) and the `201 Created` responses sent, matched in turn (a
 * client sends its next request on a connection only after the answer).
 */
function acknowledgements(calls: readonly Call[]): Acknowledged[] {
  const connections = new Map<number, { received: number[] }>();
  const acked: Acknowledged[] = [];
  // In the order the calls took effect, the fd numbers they name being reused by other threads
  // (Node's read files of their own): a close frees its number when it starts, anything else (an
  // accept, a read) counts once it returned.
  const effect = (call: Call): number => call.name === "close" ? call.entry : call.exit;
  for (const call of calls.toSorted((a, b) => effect(a) - effect(b))) {
    if ((call.name === "accept4" || call.name === "accept") && /^\d+$/.test(call.ret)) {
      connections.set(Number(call.ret), { received: [] });
      continue;
    }
    const connection = connections.get(fdOf(call));
    if (connection === undefined) continue;
    if (call.name === "close") {
      connections.delete(fdOf(call));
    } else if (["recvfrom", "recvmsg", "read", "readv"].includes(call.name)) {
      for (const match of call.args.matchAll(/\\"id\\":(\d+)/g)) connection.received.push(Number(match[1]));
    } else if (["sendto", "sendmsg", "write", "writev"].includes(call.name) && call.args.includes("HTTP/1.1 201")) {
      const id = connection.received.shift();
      assert.ok(id !== undefined, `a 201 with no record received before it on fd ${fdOf(call)}: ${call.args}`);
      acked.push({ id, ack: call });
    }
  }
  return acked;
}

const traceSkip = hasProgram("strace") ? false : "strace is not installed";

for (const variant of ["log", "fdatasync", "native"]) {
  test(
    `http_log (${variant}) under strace, each fdatasync held 20 ms: each 201 was sent after its record's write, then an fdatasync of the file started after that write, returned`,
    async () => {
      const { dir, remove } = tempDir();
      try {
        const file = path.join(dir, "records.log");
        const log = path.join(dir, "strace.log");
        const socketCalls = "accept,accept4,close,recvfrom,recvmsg,read,readv,sendto,sendmsg,write,writev";
        const tracer = [
          "strace",
          "-f",
          "--seccomp-bpf",
          "-qq",
          "-s",
          "65536",
          "-o",
          log,
          "-e",
          `trace=${socketCalls},open,openat,dup,dup2,dup3,fcntl,pwrite64,pwritev,fdatasync,fsync`,
          "-e",
          "inject=fdatasync:delay_exit=20000",
        ];
        const server = await start(file, variant, tracer);
        let stopped: { code: number | null; stdout: string; stderr: string } | undefined;
        const sent = Array.from({ length: 100 }, (_, id) => JSON.stringify({ id, text: `record ${id}` }));
        try {
          const statuses = await Promise.all(sent.map((body) => post(server.url, body)));
          assert.deepEqual(statuses, sent.map(() => 201));
        } finally {
          stopped = await server.stop();
        }
        assert.equal(stopped.code, 0, `${stopped.stdout}\n${stopped.stderr}`);
        assert.deepEqual(fs.readFileSync(file, "utf8").split("\n").toSorted(), ["", ...sent].toSorted());
        const calls = parseTrace(fs.readFileSync(log, "utf8"));
        const acked = acknowledgements(calls);
        assert.deepEqual(acked.map((each) => each.id).toSorted((a, b) => a - b), sent.map((_, id) => id));
        // The file's writes and syncs, on whatever descriptor refers to it (Deno syncs a copy).
        const files = filesOf(calls);
        const onFile = (call: Call): boolean => files.get(call) === file;
        const writes = calls.filter((call) =>
          ["write", "pwrite64", "writev", "pwritev"].includes(call.name) && onFile(call)
        );
        const syncs = calls.filter((call) => call.name === "fdatasync" && onFile(call));
        for (const { id, ack } of acked) {
          const holding = writes.filter((write) => write.args.includes(`{\\"id\\":${id},`));
          assert.equal(holding.length, 1, `record ${id} is in exactly one write of the file`);
          const [write] = holding;
          assert.ok(
            /^\d+$/.test(write.ret) && write.exit < ack.entry,
            `record ${id}: its write returned before the 201`,
          );
          const sync = syncs.find((call) =>
            call.entry > write.exit && call.exit < ack.entry && call.ret.startsWith("0")
          );
          assert.ok(
            sync !== undefined,
            `record ${id}: an fdatasync of the file started after its write and returned 0 before the 201`,
          );
        }
      } finally {
        remove();
      }
    },
    { skip: traceSkip },
  );
}
