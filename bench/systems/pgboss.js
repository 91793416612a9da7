// pg-boss driver (npm, installed into bench/.peers/node): send / insert, work() in its own
// process. Concurrency N = one work() with batchSize N (jobs of a batch run concurrently and
// are completed together); default = one work() with batchSize 1. Polling 0.5 s (its minimum;
// pg-boss has no LISTEN wake-up; the default is 2 s).
"use strict";
const c = require("./node_common");
const PgBoss = require("pg-boss");

async function boss(args, extra = {}) {
  const b = new PgBoss({ connectionString: args.dsn, ...extra });
  b.on("error", (e) => process.stderr.write(`pg-boss error: ${e}\n`));
  await b.start();
  return b;
}

const queueOpts = { retryLimit: 4, retryDelay: 0, retryBackoff: false };

c.main({
  async setup(args) {
    const b = await boss(args);
    await b.createQueue(args.queue, queueOpts);
    await b.stop({ graceful: false, wait: true });
    return { ok: true };
  },
  async enqueue(args) {
    const b = await boss(args, { max: Math.max(10, args.producers + 2), supervise: false, schedule: false });
    const runs = [];
    for (let r = 0; r < args.runs; r++) {
      runs.push(await c.producers(args.n, args.producers, (_i, seq) => b.send(args.queue, c.payload(args.kind, seq))));
    }
    return { runs };
  },
  async batch(args) {
    const b = await boss(args, { supervise: false, schedule: false });
    const runs = [];
    for (let r = 0; r < args.runs; r++) {
      const t0 = c.now();
      for (let s = 0; s < args.n; s += args.batch) {
        const jobs = [];
        for (let k = s; k < Math.min(args.n, s + args.batch); k++) jobs.push({ name: args.queue, data: c.payload(args.kind, k) });
        await b.insert(jobs);
      }
      runs.push(c.now() - t0);
    }
    return { runs };
  },
  async fill(args) { return this.batch(args); },
  async latency(args) {
    const b = await boss(args, { supervise: false, schedule: false });
    await c.latency(args, (seq) => b.send(args.queue, c.payload("lat", seq)));
    return { ok: true };
  },
  async work(args) {
    const b = await boss(args);
    const batchSize = args.concurrency || 1;
    await b.work(args.queue, { batchSize, pollingIntervalSeconds: 0.5, includeMetadata: true }, async (jobs) => {
      const failed = [];
      await Promise.all(jobs.map(async (job) => {
        c.recordStart(job.data);
        if (c.shouldFail(job.data, job.retryCount + 1)) failed.push(job.id);
      }));
      if (failed.length === jobs.length) throw new Error("fails once (benchmark)");
      for (const id of failed) await b.fail(args.queue, id, { message: "fails once (benchmark)" });
    });
    process.on("SIGTERM", async () => { await b.stop({ graceful: false, wait: false }); process.exit(0); });
    await c.sleep(args.maxSeconds * 1000);
    await b.stop({ graceful: false, wait: false });
    return { ok: true };
  },
});
