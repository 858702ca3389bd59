/**
 * Reading `strace -f` logs: each system call with its thread, arguments, return value, and the
 * log lines of its entry and exit (the order in which they happened).
 *
 * @module
 */

/** One system call seen by strace: entry and exit are line numbers of the log (same for a whole line). */
export interface Call {
  readonly pid: string;
  readonly name: string;
  args: string;
  ret: string;
  readonly entry: number;
  exit: number;
}

/** The calls of a `strace -f` log, `<unfinished ...>` and `<... resumed>` halves joined. */
export function parseTrace(log: string): Call[] {
  const calls: Call[] = [];
  const unfinished = new Map<string, Call>();
  log.split("\n").forEach((line, index) => {
    let match = /^(\d+)\s+<\.\.\. (\w+) resumed>(.*?)\)\s+= (.*)$/.exec(line);
    if (match) {
      const call = unfinished.get(match[1]);
      if (call !== undefined) {
        call.args += match[3];
        call.ret = match[4];
        call.exit = index;
        unfinished.delete(match[1]);
      }
      return;
    }
    match = /^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (match) {
      const call = { pid: match[1], name: match[2], args: match[3], ret: "", entry: index, exit: -1 };
      calls.push(call);
      unfinished.set(match[1], call);
      return;
    }
    match = /^(\d+)\s+(\w+)\((.*)\)\s+= (.*)$/.exec(line);
    if (match) calls.push({ pid: match[1], name: match[2], args: match[3], ret: match[4], entry: index, exit: index });
  });
  return calls;
}

/** The first argument of a call (a file descriptor for most), as a number. */
export const fdOf = (call: Call): number => Number(/^(-?\d+)/.exec(call.args)?.[1] ?? NaN);

/**
 * The file each call's descriptor (its first argument) referred to when the call was made, as
 * the trace shows it: opened by `open`/`openat` (the path given), copied by `dup`, `dup2`,
 * `dup3` or `fcntl(F_DUPFD...)` (Deno's file operations run on a copy of the descriptor),
 * forgotten at `close`. Needs those calls traced.
 */
export function filesOf(calls: readonly Call[]): Map<Call, string> {
  const events: { line: number; apply: () => void }[] = [];
  const open = new Map<number, string>();
  const files = new Map<Call, string>();
  for (const call of calls) {
    events.push({
      line: call.entry,
      apply: () => {
        const file = open.get(fdOf(call));
        if (file !== undefined) files.set(call, file);
      },
    });
    if (call.exit < 0) continue;
    const returned = /^\d+/.test(call.ret) ? Number(/^\d+/.exec(call.ret)![0]) : undefined;
    if ((call.name === "open" || call.name === "openat") && returned !== undefined) {
      const path = /"((?:[^"\\]|\\.)*)"/.exec(call.args)?.[1];
      if (path !== undefined) events.push({ line: call.exit, apply: () => open.set(returned, path) });
    } else if (
      returned !== undefined
      && (["dup", "dup2", "dup3"].includes(call.name) || (call.name === "fcntl" && /F_DUPFD/.test(call.args)))
    ) {
      events.push({
        line: call.exit,
        apply: () => {
          const file = open.get(fdOf(call));
          if (file === undefined) open.delete(returned);
          else open.set(returned, file);
        },
      });
    } else if (call.name === "close") {
      events.push({ line: call.exit, apply: () => open.delete(fdOf(call)) });
    }
  }
  // Stable: at one line, a call's own entry comes before what its exit changes.
  events.sort((a, b) => a.line - b.line);
  for (const event of events) event.apply();
  return files;
}
