// Faults on the real appliance (compiled API + worker, Redis, SQLite) against vcsim: bad credentials, an
// unreachable host, TLS mismatch, a VM deleted between sync and backup, the host dropping mid-backup (a TCP proxy
// between the appliance and vcsim is cut, then restored), cancellation, and vcsim killed mid-backup. Every failed
// job must say why, leave no half-visible restore point, and its snapshot must go once the host answers again.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository, RepositoryNotFoundError } from '@vmkeep/repository';
import { connect } from '@vmkeep/vsphere';
import { itemsOf, startAppliance, waitForJob, type Appliance } from './peers/appliance';
import { freePort } from './peers/process';
import { flushRedisDb } from './peers/redis';
import { startTcpProxy, viaProxy, type TcpProxy } from './peers/tcp-proxy';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const MiB = 1024 * 1024;
const REDIS_DB = 3;
/** Throttle of the proxied host: the 24 MiB disk then takes ~8 s, so a backup is reliably "mid-read". */
const SLOW_BYTES_PER_SECOND = 3 * MiB;
/**
 * BullMQ stall detection of the suite's worker, far below BullMQ's defaults (30 s lock, 30 s check) so that the
 * job of a killed worker is handed out again within a few seconds; still long enough that a busy live worker
 * keeps renewing its lock (every LOCK_MS / 2).
 */
const LOCK_MS = 5000;
const STALLED_INTERVAL_MS = 1000;
/** BullMQ's default lockDuration: with it, a killed worker's job could not restart sooner than this. */
const BULLMQ_DEFAULT_LOCK_MS = 30_000;

interface HostRow {
  id: string;
  name: string;
}
interface VmRow {
  id: string;
  name: string;
  moref: string;
  hostId: string;
}

let work: string;
let vcsim: VcsimInstance;
let proxy: TcpProxy;
let app: Appliance;
let direct: HostRow;
let proxied: HostRow;

function randomImage(file: string, size: number): string {
  fs.writeFileSync(file, randomBytes(size));
  return file;
}

async function addHost(body: Record<string, unknown>): Promise<HostRow> {
  return app.api<HostRow>('POST', '/api/hosts', body);
}

/** POST /api/hosts/:id/test → whether the host was accepted, and the whole answer as text (for messages). */
async function probe(hostId: string): Promise<{ ok: boolean; text: string }> {
  const res = await app.fetch('POST', `/api/hosts/${hostId}/test`);
  const text = await res.text();
  let ok = res.ok;
  try {
    const body = JSON.parse(text) as { ok?: boolean };
    if (body.ok === false) ok = false;
  } catch {
    // not JSON
  }
  return { ok, text };
}

async function vmOf(host: HostRow, name: string): Promise<VmRow> {
  const vms = itemsOf(await app.api<VmRow[]>('GET', '/api/vms'));
  const vm = vms.find((v) => v.hostId === host.id && v.name === name);
  if (!vm) throw new Error(`VM ${name} of host ${host.name} not found after sync`);
  return vm;
}

/** Snapshots of a VM as vcsim reports them right now (straight to vcsim, not through the proxy). */
async function snapshotsOf(moref: string): Promise<string[]> {
  const session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, insecure: true });
  try {
    return (await session.getVm(moref)).snapshots.map((s) => s.name);
  } finally {
    await session.logout();
  }
}

async function pointsOf(vmId: string): Promise<unknown[]> {
  return itemsOf(await app.api<{ vmId: string }[]>('GET', '/api/restore-points')).filter((p) => p.vmId === vmId);
}

/** Restore points visible in the repository (committed manifests). */
async function manifests(): Promise<number> {
  try {
    return (await (await Repository.open(app.repositoryPath)).listPoints()).length;
  } catch (err) {
    if (err instanceof RepositoryNotFoundError) return 0;
    throw err;
  }
}

async function startBackup(vm: VmRow): Promise<string> {
  return (await app.api<{ id: string }>('POST', `/api/vms/${vm.id}/backup`, { quiesce: false })).id;
}

/** Gives the VM's disks new content, so that even an incremental (CBT) backup has the whole disk to read. */
function rewriteDisks(vm: VmRow): void {
  for (const disk of vcsim.vms.find((v) => v.name === vm.name)?.disks ?? []) {
    fs.writeFileSync(disk.localPath.replace(/\.vmdk$/, '-flat.vmdk'), randomBytes(disk.capacityBytes));
  }
}

/** Starts a backup through the throttled proxy and resolves with its job id once it is reading disk data. */
async function startBackupMidRead(vm: VmRow): Promise<string> {
  rewriteDisks(vm);
  proxy.throttle(SLOW_BYTES_PER_SECOND);
  const jobId = await startBackup(vm);
  await waitForJob(app, jobId, (job) => job.state === 'running' && job.bytesDone > 0);
  return jobId;
}

/** Deletes a VM on vcsim with plain SOAP (Destroy_Task), as an admin would in the vSphere client. */
async function destroyVm(moref: string): Promise<void> {
  const soap = (body: string, cookie?: string) =>
    new Promise<{ status: number; text: string; cookie?: string }>((resolve, reject) => {
      const req = https.request(
        `${vcsim.url}/sdk`,
        {
          method: 'POST',
          rejectUnauthorized: false,
          headers: {
            'content-type': 'text/xml; charset="utf-8"',
            soapaction: 'urn:vim25/6.5',
            ...(cookie ? { cookie } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text, cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }),
          );
        },
      );
      req.on('error', reject);
      req.end(
        `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ` +
          `xmlns:urn="urn:vim25"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`,
      );
    });
  const login = await soap(
    `<urn:Login><urn:_this type="SessionManager">SessionManager</urn:_this><urn:userName>${vcsim.username}</urn:userName>` +
      `<urn:password>${vcsim.password}</urn:password></urn:Login>`,
  );
  if (login.status !== 200 || !login.cookie) throw new Error(`vcsim login failed: ${login.text}`);
  const destroy = await soap(
    `<urn:Destroy_Task><urn:_this type="VirtualMachine">${moref}</urn:_this></urn:Destroy_Task>`,
    login.cookie,
  );
  if (destroy.status !== 200) throw new Error(`Destroy_Task failed: ${destroy.text}`);
  for (let i = 0; i < 50; i++) {
    const session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, insecure: true });
    try {
      await session.getVm(moref);
    } catch {
      return;
    } finally {
      await session.logout().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`VM ${moref} still exists after Destroy_Task`);
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-e2e-faults-'));
  vcsim = await startVcsim({
    seed: [
      { name: 'victim', disks: [{ image: randomImage(path.join(work, 'victim.img'), 2 * MiB) }] },
      { name: 'bulk', disks: [{ image: randomImage(path.join(work, 'bulk.img'), 24 * MiB) }] },
    ],
  });
  proxy = await startTcpProxy({ host: '127.0.0.1', port: vcsim.port });

  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({
    redisUrl,
    redisDb: REDIS_DB,
    env: {
      VMKEEP_SNAPSHOT_CLEANUP_SECONDS: '2',
      VMKEEP_WORKER_LOCK_MS: String(LOCK_MS),
      VMKEEP_WORKER_STALLED_INTERVAL_MS: String(STALLED_INTERVAL_MS),
    },
  });

  const credentials = { username: vcsim.username, password: vcsim.password, thumbprint: vcsim.thumbprint };
  direct = await addHost({ name: 'vcsim-direct', url: vcsim.url, ...credentials });
  proxied = await addHost({ name: 'vcsim-proxied', url: viaProxy(vcsim.url, proxy), ...credentials });
  await app.api('POST', `/api/hosts/${direct.id}/sync`);
  await app.api('POST', `/api/hosts/${proxied.id}/sync`);
});

afterAll(async () => {
  await app?.stop();
  await proxy?.close();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

afterEach(() => {
  proxy.restore();
  proxy.throttle(undefined);
});

describe('connection faults', () => {
  it('says the credentials are wrong on test and on sync', async () => {
    const host = await addHost({
      name: 'wrong-password',
      url: vcsim.url,
      username: vcsim.username,
      password: 'not-the-password',
      thumbprint: vcsim.thumbprint,
    });
    const result = await probe(host.id);
    expect(result.ok).toBe(false);
    expect(result.text).toMatch(/credential|login|password|authenticat/i);
    expect(result.text).not.toContain('not-the-password');
    const sync = await app.fetch('POST', `/api/hosts/${host.id}/sync`);
    expect(sync.status).toBeGreaterThanOrEqual(400);
    expect(await sync.text()).toMatch(/credential|login|password|authenticat/i);
  });

  it('says an unreachable host is unreachable', async () => {
    const host = await addHost({
      name: 'nobody-home',
      url: `https://127.0.0.1:${await freePort()}`,
      username: 'u',
      password: 'p',
      insecure: true,
    });
    const result = await probe(host.id);
    expect(result.ok).toBe(false);
    expect(result.text).toMatch(/unreachable|ECONNREFUSED|refused/i);
  });

  it('refuses an untrusted certificate unless the host is insecure or its thumbprint is pinned', async () => {
    const base = { url: vcsim.url, username: vcsim.username, password: vcsim.password };
    const untrusted = await addHost({ name: 'tls-untrusted', ...base });
    const wrongPin = await addHost({ name: 'tls-wrong-pin', ...base, thumbprint: 'AB:'.repeat(31) + 'AB' });
    const insecure = await addHost({ name: 'tls-insecure', ...base, insecure: true });

    for (const host of [untrusted, wrongPin]) {
      const result = await probe(host.id);
      expect(result.ok).toBe(false);
      expect(result.text).toMatch(/certificate|thumbprint|TLS/i);
    }
    expect((await probe(insecure.id)).ok).toBe(true);
    expect((await probe(direct.id)).ok).toBe(true);
  });
});

describe('backup faults', () => {
  it('fails a backup of a VM deleted since the sync with "no longer exists"', async () => {
    const vm = await vmOf(direct, 'victim');
    await destroyVm(vm.moref);
    const job = await waitForJob(app, await startBackup(vm));
    expect(job.state).toBe('failed');
    expect(job.error).toBe('VM victim no longer exists on vcsim-direct');
    expect(await pointsOf(vm.id)).toEqual([]);
  });

  it('cancels a running backup: state cancelled, snapshot removed, nothing stored', async () => {
    const vm = await vmOf(proxied, 'bulk');
    const before = await manifests();
    const jobId = await startBackupMidRead(vm);
    await app.api('POST', `/api/jobs/${jobId}/cancel`);
    const job = await waitForJob(app, jobId);
    expect(job).toMatchObject({ state: 'cancelled', restorePointId: null });
    expect(job.snapshotMoref ?? null).toBeNull();
    expect(await snapshotsOf(vm.moref)).toEqual([]);
    expect(await pointsOf(vm.id)).toEqual([]);
    expect(await manifests()).toBe(before);
  });

  it('fails cleanly when the host drops mid-read; the sweep removes the snapshot once it is back', async () => {
    const vm = await vmOf(proxied, 'bulk');
    const before = await manifests();
    const jobId = await startBackupMidRead(vm);
    proxy.cut();

    const job = await waitForJob(app, jobId);
    expect(job.state).toBe('failed');
    expect(job.error).toMatch(/vcsim-proxied|Hard disk/);
    expect(job.error).toMatch(/unreachable|reset|closed|socket|connect/i);
    expect(await pointsOf(vm.id)).toEqual([]);
    expect(await manifests()).toBe(before);
    // The host was unreachable when the job ended, so its snapshot is still there, waiting for the sweep.
    expect(await snapshotsOf(vm.moref)).toEqual([`vmkeep-backup ${jobId}`]);

    proxy.restore();
    const deadline = Date.now() + 60_000;
    while ((await snapshotsOf(vm.moref)).length > 0) {
      if (Date.now() > deadline) throw new Error(`the sweep did not remove the snapshot\n${app.logs()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const swept = await waitForJob(app, jobId, (j) => (j.snapshotMoref ?? null) === null, 30_000);
    expect(swept.state).toBe('failed');
  });

  it('restarts a backup whose worker died mid-read on another worker (BullMQ stalled job)', async () => {
    const vm = await vmOf(proxied, 'bulk');
    const pointsBefore = (await pointsOf(vm.id)).length;
    const jobId = await startBackupMidRead(vm);
    const killedAt = Date.now();
    await app.restartWorker(); // SIGKILL: no cleanup at all, the BullMQ lock simply expires
    proxy.throttle(undefined);

    // Once the lock (LOCK_MS) has expired, the new worker's stalled-job check (every STALLED_INTERVAL_MS) hands the
    // job out again, and it runs from scratch.
    const job = await waitForJob(app, jobId, undefined, 60_000);
    expect(job).toMatchObject({ state: 'succeeded', error: null });
    // The configured lock and interval were used: with BullMQ's defaults this could not happen so soon.
    expect(Date.now() - killedAt).toBeLessThan(BULLMQ_DEFAULT_LOCK_MS);
    expect(await pointsOf(vm.id)).toHaveLength(pointsBefore + 1);
    expect(await snapshotsOf(vm.moref)).toEqual([]);
  });

  it('fails cleanly when vcsim dies mid-backup and shows nothing half-written', async () => {
    const vm = await vmOf(proxied, 'bulk');
    const pointsBefore = (await pointsOf(vm.id)).length;
    const before = await manifests();
    const jobId = await startBackupMidRead(vm);
    vcsim.kill('SIGKILL');

    const job = await waitForJob(app, jobId);
    expect(job.state).toBe('failed');
    expect(job.error).toMatch(/unreachable|reset|closed|socket|connect|refused/i);
    expect(job.restorePointId).toBeNull();
    expect(await pointsOf(vm.id)).toHaveLength(pointsBefore);
    expect(await manifests()).toBe(before);
  });
});
