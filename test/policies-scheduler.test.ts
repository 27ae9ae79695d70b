// The scheduler end to end: the compiled appliance (API + three worker processes on one Redis), vcsim with seeded
// VMs, and a policy created with the CLI whose cron pattern fires every 10 seconds. Every tick must run exactly
// once (one policy run, one backup job per selected VM) although three workers compete for it, and retention
// (keep-last 2) must hold after each run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { POLICY_QUEUE } from '@vmkeep/policies';
import { parseRedisUrl } from '@vmkeep/queue';
import { buildRandomZeroImage } from './peers/disk-images';
import { addVcsimHost, itemsOf, startAppliance, vmkeep, type Appliance } from './peers/appliance';
import { makeTempDir, spawnPeer, waitUntil, type SpawnedPeer } from './peers/process';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const REDIS_DB = 14;
const TICK_S = 10;

interface RunRow {
  id: string;
  tickAt: string;
  state: string;
  manual: boolean;
  vms: { vmId: string; vmName: string; outcome: string; jobIds: string[]; pruned?: number; message?: string }[];
  warnings: string[];
}

let work: string;
let vcsim: VcsimInstance;
let app: Appliance;
const extraWorkers: SpawnedPeer[] = [];

beforeAll(async () => {
  work = makeTempDir('vmkeep-policies-sched-');
  const image = (seed: string) => buildRandomZeroImage({ dir: work, sizeMiB: 2, seed });
  vcsim = await startVcsim({
    seed: [
      { name: 'sched-web-1', disks: [{ image: (await image('a')).path }] },
      { name: 'sched-web-2', disks: [{ image: (await image('b')).path }] },
      { name: 'other-db', disks: [{ image: (await image('c')).path }] },
    ],
  });
  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB });
  // Two more worker processes next to the appliance's own: three compete for every tick.
  for (let i = 0; i < 2; i++) {
    const worker = spawnPeer(process.execPath, [path.join(__dirname, '..', 'dist', 'apps', 'worker', 'src', 'main.js')], {
      cwd: app.dataDir,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...app.env },
    });
    extraWorkers.push(worker);
    await waitUntil('extra worker', async () => /processing vmkeep-policies/.test(worker.tail()), worker, 60_000);
  }
  expect(app.logs()).toMatch(/processing vmkeep-policies/);
});

afterAll(async () => {
  await Promise.allSettled(extraWorkers.map((w) => w.stop(10_000)));
  await app?.stop();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

it('runs each tick once with three workers, one backup per VM per tick, and keeps what the retention says', async () => {
  await addVcsimHost(app, vcsim);
  const home = makeTempDir('vmkeep-policies-home-');
  const cli = (args: string[]) => vmkeep(args, { home, env: { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token } });

  const created = await cli(['policy', 'create', 'every-10s', '--cron', `*/${TICK_S} * * * * *`, '--pattern', 'sched-web-*', '--keep-last', '2', '--json']);
  expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
  const policy = JSON.parse(created.stdout) as { id: string; vms: { name: string }[]; nextRunAt: string };
  expect(policy.vms.map((v) => v.name)).toEqual(['sched-web-1', 'sched-web-2']);
  expect(new Date(policy.nextRunAt).getUTCSeconds() % TICK_S).toBe(0);

  const runs = async () => app.api<RunRow[]>('GET', `/api/policies/${policy.id}/runs`);
  const deadline = Date.now() + 120_000;
  while ((await runs()).filter((r) => r.state !== 'running').length < 3) {
    if (Date.now() > deadline) throw new Error(`fewer than 3 runs ended in time: ${JSON.stringify(await runs())}\n${app.logs()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const disabled = await cli(['policy', 'update', 'every-10s', '--disable', '--json']);
  expect(disabled.code).toBe(0);
  expect(JSON.parse(disabled.stdout)).toMatchObject({ enabled: false, nextRunAt: null });
  while ((await runs()).some((r) => r.state === 'running')) await new Promise((r) => setTimeout(r, 500));

  const all = (await runs()).reverse(); // oldest first
  expect(all.length).toBeGreaterThanOrEqual(3);
  const ticks = all.map((r) => new Date(r.tickAt).getTime());
  expect(new Set(ticks).size).toBe(ticks.length);
  for (let i = 0; i < ticks.length; i++) {
    expect(ticks[i] % (TICK_S * 1000)).toBe(0);
    if (i > 0) expect(ticks[i] - ticks[i - 1]).toBe(TICK_S * 1000); // no tick missed, none doubled
  }
  const failedJobs = itemsOf(await app.api<{ items: { state: string; error: string | null }[] }>('GET', '/api/jobs?state=failed'));
  expect(failedJobs.map((j) => j.error)).toEqual([]);
  for (const run of all) {
    expect(run).toMatchObject({ state: 'succeeded', manual: false, warnings: [] });
    expect(run.vms.map((v) => [v.vmName, v.outcome, v.jobIds.length])).toEqual([
      ['sched-web-1', 'succeeded', 1],
      ['sched-web-2', 'succeeded', 1],
    ]);
  }
  // BullMQ handed each tick to one worker only: one completed policy-run job per run, none that found its tick taken.
  const queue = new Queue(POLICY_QUEUE, { connection: parseRedisUrl(app.env.REDIS_URL) });
  try {
    const completed = await queue.getCompleted(0, -1);
    expect(completed.map((j) => String(j.returnvalue)).sort()).toEqual(all.map((r) => `${r.id}: succeeded`).sort());
    expect(await queue.getFailedCount()).toBe(0);
  } finally {
    await queue.close();
  }
  // Every backup job of the policy belongs to exactly one run: one per VM per tick, nothing else.
  const jobs = itemsOf(await app.api<{ items: { id: string; vmId: string; state: string; options: Record<string, unknown> }[] }>('GET', '/api/jobs?pageSize=200'));
  const policyJobs = jobs.filter((j) => j.options?.policyId === policy.id);
  expect(policyJobs.map((j) => j.id).sort()).toEqual(all.flatMap((r) => r.vms.flatMap((v) => v.jobIds)).sort());
  expect(policyJobs.every((j) => j.state === 'succeeded')).toBe(true);

  // keep-last 2: from the third run on, each success removed the oldest point of its VM.
  expect(all[2].vms.map((v) => v.pruned)).toEqual([1, 1]);
  for (const entry of all[all.length - 1].vms) {
    const points = itemsOf(await app.api<{ items: { id: string; vmId: string; jobId: string }[] }>('GET', `/api/restore-points?vmId=${entry.vmId}`)).filter((p) => p.vmId === entry.vmId);
    const lastTwo = all.slice(-2).map((r) => r.vms.find((v) => v.vmId === entry.vmId)!.jobIds[0]);
    expect(points.map((p) => p.jobId).sort()).toEqual([...lastTwo].sort());
    const protection = await app.api<Record<string, unknown>>('GET', `/api/vms/${entry.vmId}/protection`);
    expect(protection).toMatchObject({ restorePointCount: 2, multiplePolicies: false, nextRunAt: null, lastSuccessJobId: lastTwo[1] });
    expect((protection.policies as { name: string }[]).map((p) => p.name)).toEqual(['every-10s']);
  }

  const show = await cli(['policy', 'show', 'every-10s', '--json']);
  expect(JSON.parse(show.stdout).runs).toHaveLength(all.length);
  const refused = await cli(['policy', 'run-now', 'every-10s']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/policy every-10s is disabled; enable it first \(HTTP 409\)/);
  const removed = await cli(['policy', 'delete', 'every-10s', '--json']);
  expect(removed.code).toBe(0);
  expect(JSON.parse((await cli(['policy', 'list', '--json'])).stdout)).toEqual([]);
});
