import * as fs from "node:fs";
import { openLog } from "../mod.ts";
const isBun = typeof (globalThis as any).Bun !== "undefined";
const dir = "/tmp/exp/run";
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const N = Number(process.env.N ?? 2000);
const rec = "x".repeat(99) + "\n";
function cpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
async function time(name: string, fn: () => Promise<void>) {
  const c0 = cpu();
  const t0 = performance.now();
  await fn();
  const t = performance.now() - t0;
  const c = cpu() - c0;
  console.log(
    `${isBun ? "bun " : "deno"} ${name.padEnd(22)}: ${(t * 1000 / N).toFixed(1)} us/rec, ${
      (N / t * 1000).toFixed(0)
    }/s, cpu ${(100 * c / t).toFixed(0)}%`,
  );
}
const which = (process.env.WHICH ?? "framed,plain,sqlite,own").split(",");
for (let pass = 0; pass < Number(process.env.PASSES ?? 1); pass++) {
  if (which.includes("framed")) {
    await time("log framed", async () => {
      const log = await openLog(dir + `/f${pass}.log`);
      for (let i = 0; i < N; i++) await log.append(rec);
      await log.close();
    });
  }
  if (which.includes("noprealloc")) {
    await time("log framed noprealloc", async () => {
      const log = await openLog(dir + `/n${pass}.log`, { preallocate: false });
      for (let i = 0; i < N; i++) await log.append(rec);
      await log.close();
    });
  }
  if (which.includes("plain")) {
    await time("log plain", async () => {
      const log = await openLog(dir + `/a${pass}.log`, { format: "plain" });
      for (let i = 0; i < N; i++) await log.append(rec);
      await log.close();
    });
  }
  let Database: any;
  if (isBun) Database = (await import("bun:sqlite")).Database;
  else Database = (await import("node:sqlite")).DatabaseSync;
  if (which.includes("sqlite")) {
    await time("sqlite", async () => {
      const db = new Database(dir + `/s${pass}.db`);
      db.exec("PRAGMA journal_mode=WAL");
      db.exec("PRAGMA synchronous=FULL");
      db.exec("CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)");
      const st = db.prepare("INSERT INTO r (v) VALUES (?)");
      for (let i = 0; i < N; i++) {
        st.run(rec);
        await null;
      }
      db.close();
    });
  }
  const fsp = await import("node:fs/promises");
  if (which.includes("own")) {
    await time("own", async () => {
      const h = await fsp.open(dir + `/o${pass}.log`, "a");
      for (let i = 0; i < N; i++) {
        await h.write(rec);
        await h.datasync();
      }
      await h.close();
    });
  }
}
