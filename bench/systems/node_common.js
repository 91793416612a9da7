// Shared helpers of the Node drivers (pg-boss, graphile-worker): argument parsing, the
// payloads, the latency and failure hooks, one JSON answer on the last stdout line.
"use strict";
const fs = require("fs");
const { performance } = require("perf_hooks");

function parseArgs(argv) {
  const args = { command: argv[0], queue: "bench", n: 1000, producers: 1, batch: 1000, runs: 1,
    concurrency: 0, kind: "noop", gapMs: 10, maxSeconds: 120, out: null, dsn: null };
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const val = argv[i + 1];
    args[key] = ["n", "producers", "batch", "runs", "concurrency", "gapMs", "maxSeconds"].includes(key)
      ? Number(val) : val;
  }
  return args;
}

const now = () => (performance.timeOrigin + performance.now()) / 1000;

function payload(kind, seq) {
  if (kind === "fail_once") return { n: seq, fail_once: true };
  if (kind === "lat") return { n: seq, lat: seq };
  return { n: seq };
}

function recordStart(data) {
  if (data == null || data.lat === undefined) return;
  const t = now();
  const path = process.env.BENCH_LAT_FILE;
  if (path) fs.appendFileSync(path, `${data.lat} ${t.toFixed(6)}\n`);
}

const shouldFail = (data, attempt) => Boolean(data && data.fail_once) && attempt <= 1;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function producers(n, count, sendOne) {
  const share = Array.from({ length: count }, (_, i) => Math.floor(n / count) + (i < n % count ? 1 : 0));
  const t0 = performance.now();
  await Promise.all(share.map(async (k, i) => {
    const base = share.slice(0, i).reduce((a, b) => a + b, 0);
    for (let j = 0; j < k; j++) await sendOne(i, base + j);
  }));
  return (performance.now() - t0) / 1000;
}

async function latency(args, sendOne) {
  // Warm-up: 10 jobs, fewer where the gap is long (about a second of them, at least 2).
  const warmup = Math.max(2, Math.min(10, Math.floor(1000 / args.gapMs)));
  for (let k = 0; k < warmup; k++) { await sendOne(-(k + 1)); await sleep(args.gapMs); }
  await sleep(300);
  const lines = [];
  for (let seq = 0; seq < args.n; seq++) {
    await sendOne(seq);
    lines.push(`${seq} ${now().toFixed(6)}\n`);
    await sleep(args.gapMs);
  }
  fs.writeFileSync(args.out, lines.join(""));
}

function emit(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }

async function main(handlers) {
  const args = parseArgs(process.argv.slice(2));
  try {
    const fn = handlers[args.command];
    if (!fn) throw new Error(`unknown command ${args.command}`);
    emit(await fn.call(handlers, args));
    process.exit(0);
  } catch (err) {
    emit({ error: String((err && err.stack) || err).split("\n").slice(0, 3).join(" | ") });
    process.exit(1);
  }
}

module.exports = { parseArgs, now, payload, recordStart, shouldFail, sleep, producers, latency, emit, main };
