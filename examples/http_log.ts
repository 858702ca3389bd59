/**
 * A durable record store over HTTP, the same file under `Deno.serve`, `Bun.serve` and Node's
 * `node:http`.
 *
 * - `POST /records`: the body (UTF-8 text without a line feed; one trailing line feed is
 *   dropped) is appended to the file as one line, and the answer is `201 Created` only once
 *   that line is durable (`fdatasync`). A failed write or sync answers `500` for that request
 *   and every later one: after a failed write-back Linux may drop the dirty pages, so nothing
 *   is acknowledged again until the server is restarted.
 * - `GET /records`: streams back every acknowledged record, one per line
 *   (`application/x-ndjson` when the records are JSON).
 *
 * ```sh
 * deno run --allow-all examples/http_log.ts --port=8080 --file=records.log --variant=log
 * bun examples/http_log.ts --port=8080 --file=records.log --variant=log
 * node examples/http_log.ts --port=8080 --file=records.log --variant=log
 * curl -d '{"hello":"world"}' localhost:8080/records && curl localhost:8080/records
 * ```
 *
 * Options, as `--name=value` or from the environment:
 * - `--port` (`HTTP_LOG_PORT`, default 8080; 0 picks a free port),
 *   `--hostname` (`HTTP_LOG_HOSTNAME`, default `127.0.0.1`),
 * - `--file` (`HTTP_LOG_FILE`, default `records.log`),
 * - `--variant` (`HTTP_LOG_VARIANT`), how a record is made durable (every variant lays the
 *   records down identically, one line each, in the order the requests were read):
 *   - `log` (default): this module's `openLog`, group commit: the records that arrive while a
 *     batch is being synced form the next batch, written at once and made durable with one
 *     `fdatasync`.
 *   - `fdatasync`: a write, then this module's `fdatasync(fd)` per request (concurrent calls
 *     on one fd are merged into one sync in flight and one queued).
 *   - `native`: a write, then the runtime's own sync per request: Deno's `FsFile.syncData()`,
 *     Bun's `node:fs` `fdatasync`, Node's `FileHandle.datasync()` (both on libuv's pool of 4
 *     threads).
 *
 * Once listening, it prints one JSON line on stdout: `{ "listening": { hostname, port }, pid,
 * runtime, variant, file }`. SIGINT or SIGTERM stops it: requests in flight are answered, the
 * file is closed, and it prints `{ "closed": { "acknowledged": n, "bytes": n } }`.
 *
 * At start, a torn last line (left by a crash during a write) is cut off the file; a file the
 * server creates has its directory synced, so its name is as durable as its records.
 *
 * @module
 */

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import process from "node:process";
import { fdatasync, openLog, syncDir } from "../mod.ts";

/** How a record is made durable. */
type Variant = "native" | "fdatasync" | "log";

const VARIANTS: readonly Variant[] = ["native", "fdatasync", "log"];

/** Where records go: `append` resolves once the record is durable. */
interface Store {
  append(record: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The part of `Bun.serve` used here (Deno type-checks this file, and has no Bun types). */
interface BunRuntime {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (request: Request) => Response | Promise<Response>;
    error?: (error: Error) => Response;
  }): { readonly port: number; stop(closeActiveConnections?: boolean): Promise<void> };
}

const bun = (globalThis as { Bun?: BunRuntime }).Bun;
const deno = (globalThis as { Deno?: typeof Deno }).Deno;
const runtime = bun !== undefined ? "bun" : deno !== undefined ? "deno" : "node";

/** The largest body accepted (bytes). */
const MAX_RECORD = 1 << 20;
const LF = 0x0a;

/** A string option from `--name=value`, else the environment variable, else `fallback`. */
function option(name: string, variable: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.findLast((arg) => arg.startsWith(prefix))?.slice(prefix.length)
    ?? (process.env[variable] || fallback);
}

function parseVariant(raw: string): Variant {
  if (!(VARIANTS as readonly string[]).includes(raw)) {
    throw new TypeError(`Invalid variant: expected one of ${VARIANTS.join(", ")}, received ${JSON.stringify(raw)}`);
  }
  return raw as Variant;
}

function parsePort(raw: string): number {
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid port: expected an integer from 0 to 65535, received ${JSON.stringify(raw)}`);
  }
  return port;
}

/** Writes all of `data` at the end of the file with `write` (a short write is continued). */
function writeAll(write: (data: Uint8Array) => number, data: Uint8Array): void {
  for (let done = 0; done < data.length;) done += write(data.subarray(done));
}

/**
 * A store that writes each record at once (synchronously, so no two records interleave and
 * the file order is the call order), then waits for `sync`. The first failure is kept: every
 * later append rejects with it.
 */
function perRequestStore(
  write: (data: Uint8Array) => number,
  sync: () => Promise<void>,
  close: () => void,
): Store {
  let failure: { error: unknown } | undefined;
  return {
    async append(record: Uint8Array): Promise<void> {
      if (failure !== undefined) throw failure.error;
      try {
        writeAll(write, record);
        await sync();
      } catch (error) {
        failure ??= { error };
        throw error;
      }
    },
    close: () => Promise.resolve(close()),
  };
}

/** Opens the store of `variant` on `file`, appending; `length` is the bytes of the records already there. */
async function openStore(variant: Variant, file: string): Promise<{ store: Store; length: number }> {
  if (variant === "log") {
    // JSON lines that other programs read line by line: the plain format. The log cuts a torn
    // last record (bytes after the last separator) before appending, and syncs the directory if
    // it creates the file.
    const log = await openLog(file, { format: "plain", separator: "\n" });
    const store = { append: (record: Uint8Array) => log.append(record), close: () => log.close() };
    return { store, length: (await fsp.stat(file)).size };
  }
  const length = await recover(file);
  let store: Store;
  if (variant === "native" && deno !== undefined) {
    const handle = await deno.open(file, { append: true, create: true });
    store = perRequestStore((data) => handle.writeSync(data), () => handle.syncData(), () => handle.close());
  } else if (variant === "native" && runtime === "node") {
    const handle = await fsp.open(file, "a");
    const write = (data: Uint8Array): number => fs.writeSync(handle.fd, data);
    store = perRequestStore(write, () => handle.datasync(), () => void handle.close());
  } else {
    const fd = fs.openSync(file, "a");
    const write = (data: Uint8Array): number => fs.writeSync(fd, data);
    const close = (): void => fs.closeSync(fd);
    const sync = variant === "fdatasync"
      ? () => fdatasync(fd)
      : () => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (error) => error ? reject(error) : resolve()));
    store = perRequestStore(write, sync, close);
  }
  // A new file's name is durable only once its directory is synced.
  if (length === undefined) await syncDir(path.dirname(path.resolve(file)));
  return { store, length: length ?? 0 };
}

/**
 * Cuts a torn last line (bytes after the last line feed) off `file` and makes that durable.
 * Returns the length of the complete records, or `undefined` if there is no such file.
 */
async function recover(file: string): Promise<number | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, "r+");
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    let end = size;
    const chunk = new Uint8Array(64 * 1024);
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const { bytesRead } = await handle.read(chunk, 0, end - start, start);
      const last = chunk.subarray(0, bytesRead).lastIndexOf(LF);
      if (last >= 0) {
        end = start + last + 1;
        break;
      }
      end = start;
    }
    if (end !== size) {
      await handle.truncate(end);
      await handle.datasync();
    }
    return end;
  } finally {
    await handle.close();
  }
}

/** Streams bytes `[0, end)` of `file`. */
function streamFile(file: string, end: number): ReadableStream<Uint8Array> {
  let handle: fsp.FileHandle | undefined;
  let position = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller): Promise<void> {
      try {
        handle ??= await fsp.open(file, "r");
        if (position >= end) {
          controller.close();
          await handle.close();
          return;
        }
        const chunk = new Uint8Array(Math.min(64 * 1024, end - position));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
        if (bytesRead === 0) throw new Error(`Invalid file: ${file} ends at ${position}, before ${end}`);
        position += bytesRead;
        controller.enqueue(chunk.subarray(0, bytesRead));
      } catch (error) {
        controller.error(error);
        await handle?.close();
      }
    },
    async cancel(): Promise<void> {
      await handle?.close();
    },
  });
}

/** The record for `body`: the body without one trailing line feed, then a line feed. */
function toRecord(body: Uint8Array): Uint8Array | string {
  const length = body.at(-1) === LF ? body.length - 1 : body.length;
  if (length === 0) return "Invalid record: the body is empty";
  if (body.subarray(0, length).includes(LF)) return "Invalid record: the body has a line feed inside";
  const record = new Uint8Array(length + 1);
  record.set(body.subarray(0, length));
  record[length] = LF;
  return record;
}

const text = (status: number, message: string, headers: Record<string, string> = {}): Response =>
  new Response(message + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } });

const file = option("file", "HTTP_LOG_FILE", "records.log");
const variant = parseVariant(option("variant", "HTTP_LOG_VARIANT", "log"));
const hostname = option("hostname", "HTTP_LOG_HOSTNAME", "127.0.0.1");
const port = parsePort(option("port", "HTTP_LOG_PORT", "8080"));

const { store, length } = await openStore(variant, file);
/** Bytes of the records handed to the store so far (the file's length once they are written). */
let appended = length;
/** Bytes of the acknowledged records: everything before this offset is durable. */
let durable = length;
let acknowledged = 0;

async function handle(request: Request): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname !== "/records") return text(404, `Not found: ${pathname}`);
  if (request.method === "GET" || request.method === "HEAD") {
    return new Response(request.method === "GET" ? streamFile(file, durable) : null, {
      headers: { "content-type": "application/x-ndjson", "content-length": String(durable) },
    });
  }
  if (request.method !== "POST") return text(405, `Method not allowed: ${request.method}`, { allow: "GET, POST" });
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > MAX_RECORD) return text(413, TOO_LONG);
  const { status, message } = await post(new Uint8Array(await request.arrayBuffer()));
  return message === undefined ? new Response(null, { status }) : text(status, message);
}

/** A POST's answer: its status, and a message for an error. */
interface Outcome {
  readonly status: number;
  readonly message?: string;
}

const TOO_LONG = `Invalid record: longer than ${MAX_RECORD} bytes`;

/** Appends the record of a POST's body; resolves once it is durable (201), or with the error. */
async function post(body: Uint8Array): Promise<Outcome> {
  if (body.length > MAX_RECORD) return { status: 413, message: TOO_LONG };
  const record = toRecord(body);
  if (typeof record === "string") return { status: 400, message: record };
  // No await between taking the offset and handing the record over: the store lays records
  // down in call order, so this record ends at `end`.
  const end = appended += record.length;
  try {
    await store.append(record);
  } catch (error) {
    console.error(error);
    return { status: 500, message: `Not durable: ${error instanceof Error ? error.message : String(error)}` };
  }
  // A sync covers every record written before it: all bytes before `end` are durable.
  if (end > durable) durable = end;
  acknowledged++;
  return { status: 201 };
}

function onError(error: unknown): Response {
  console.error(error);
  return text(500, "Internal server error");
}

/** The body of a Node request, or `undefined` once it is longer than `MAX_RECORD`. */
async function readBody(incoming: AsyncIterable<unknown>): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of incoming) {
    chunks.push(chunk as Uint8Array);
    length += (chunk as Uint8Array).length;
    if (length > MAX_RECORD) return undefined;
  }
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/**
 * Serves with `node:http`. `POST /records` is answered directly (building a fetch `Request` and
 * `Response` per request costs Node more CPU than the rest of the request); anything else goes
 * through `handle` as a fetch `Request`, its `Response` written back with backpressure.
 */
async function serveNode(): Promise<{ port: number; stop: () => Promise<void> }> {
  const http = await import("node:http");
  type Incoming = InstanceType<typeof http.IncomingMessage>;
  type Outgoing = InstanceType<typeof http.ServerResponse>;
  const answer = (outgoing: Outgoing, { status, message }: Outcome): void => {
    if (message === undefined) outgoing.writeHead(status).end();
    else outgoing.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(message + "\n");
  };
  const postRecord = async (incoming: Incoming, outgoing: Outgoing): Promise<void> => {
    if (Number(incoming.headers["content-length"] ?? 0) > MAX_RECORD) {
      incoming.resume();
      return answer(outgoing, { status: 413, message: TOO_LONG });
    }
    const body = await readBody(incoming);
    answer(outgoing, body === undefined ? { status: 413, message: TOO_LONG } : await post(body));
  };
  const viaFetch = async (incoming: Incoming, outgoing: Outgoing): Promise<void> => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(incoming.headers)) {
      for (const each of [value ?? []].flat()) headers.append(name, each);
    }
    const method = incoming.method ?? "GET";
    const body = method === "GET" || method === "HEAD" ? undefined : await readBody(incoming);
    const request = new Request(`http://${hostname}${incoming.url}`, { method, headers, body });
    const response = await handle(request).catch(onError);
    outgoing.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body !== null) {
      for await (const chunk of response.body) {
        if (!outgoing.write(chunk)) await new Promise((resolve) => outgoing.once("drain", resolve));
      }
    }
    outgoing.end();
  };
  const server = http.createServer((incoming, outgoing) => {
    const served = incoming.method === "POST" && incoming.url === "/records"
      ? postRecord(incoming, outgoing)
      : viaFetch(incoming, outgoing);
    served.catch((error) => {
      console.error(error);
      outgoing.destroy();
    });
  });
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  server.once("error", reject);
  server.listen(port, hostname, () => resolve());
  await promise;
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : port,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
}

let stop: () => Promise<void>;
let listening: number;
if (bun !== undefined) {
  const server = bun.serve({ hostname, port, fetch: handle, error: onError });
  listening = server.port;
  stop = () => server.stop();
} else if (deno !== undefined) {
  const { promise, resolve } = Promise.withResolvers<number>();
  const server = deno.serve({ hostname, port, onListen: (address) => resolve(address.port), onError }, handle);
  listening = await promise;
  stop = () => server.shutdown();
} else {
  ({ port: listening, stop } = await serveNode());
}
console.log(JSON.stringify({ listening: { hostname, port: listening }, pid: process.pid, runtime, variant, file }));

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await stop();
  await store.close();
  console.log(JSON.stringify({ closed: { acknowledged, bytes: durable } }));
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
