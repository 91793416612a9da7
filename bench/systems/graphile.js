// graphile-worker driver (npm, installed into bench/.peers/node): addJob / addJobs through
// makeWorkerUtils, run() in its own process with LISTEN/NOTIFY (its default), concurrency as
// given (default 1), default pollInterval 2 s, default pool.
"use strict";
const c = require("./node_common");
const { run, makeWorkerUtils } = require("graphile-worker");

const noLogs = { logger: undefined };

async function utils(args) {
  return makeWorkerUtils({ connectionString: args.dsn, ...noLogs });
}

c.main({
  async setup(args) {
    const u = await utils(args);
    await u.migrate();
    await u.release();
    return { ok: true };
  },
  async enqueue(args) {
    const us = [];
    for (let i = 0; i < args.producers; i++) us.push(await utils(args));
    const runs = [];
    for (let r = 0; r < args.runs; r++) {
      runs.push(await c.producers(args.n, args.producers, (i, seq) => us[i].addJob("bench", c.payload(args.kind, seq))));
    }
    return { runs };
  },
  async batch(args) {
    const u = await utils(args);
    const runs = [];
    for (let r = 0; r < args.runs; r++) {
      const t0 = c.now();
      for (let s = 0; s < args.n; s += args.batch) {
        const specs = [];
        for (let k = s; k < Math.min(args.n, s + args.batch); k++) specs.push({ identifier: "bench", payload: c.payload(args.kind, k) });
        await u.addJobs(specs);
      }
      runs.push(c.now() - t0);
    }
    return { runs };
  },
  async fill(args) { return this.batch(args); },
  async latency(args) {
    const u = await utils(args);
    await c.latency(args, (seq) => u.addJob("bench", c.payload("lat", seq)));
    return { ok: true };
  },
  async work(args) {
    const runner = await run({
      connectionString: args.dsn,
      concurrency: args.concurrency || 1,
      noHandleSignals: false,
      taskList: {
        bench: async (payload, helpers) => {
          c.recordStart(payload);
          if (c.shouldFail(payload, helpers.job.attempts)) throw new Error("fails once (benchmark)");
        },
      },
    });
    const timer = setTimeout(() => runner.stop(), args.maxSeconds * 1000);
    await runner.promise;
    clearTimeout(timer);
    return { ok: true };
  },
});
