// Acceptance of the spine: the real appliance (compiled API + worker processes, Redis, MariaDB or SQLite) backs
// up a vcsim VM with two disks holding real data (an ext4 file system and a random+zero image) and gives both disks
// back bit for bit, through the REST API and the `vmkeep` CLI; the VM keeps no snapshot; a second backup of the
// unchanged VM stores (almost) no new chunk data.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect } from '@vmkeep/vsphere';
import { addVcsimHost, itemsOf, startAppliance, vmkeep, waitForJob, type Appliance, type JobRow } from './peers/appliance';
import { buildExt4Image, buildRandomZeroImage, sha256File, type DiskImage } from './peers/disk-images';
import { createDatabase } from './peers/mariadb';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const MiB = 1024 * 1024;
const VM_NAME = 'e2e-two-disks';

interface PointRow {
  id: string;
  vmId: string;
  vmName: string | null;
  disks: { key: string; deviceKey: number; capacityBytes: number }[];
}

async function sha256Response(res: Response): Promise<string> {
  if (!res.ok) throw new Error(`download failed: HTTP ${res.status} ${await res.text()}`);
  return createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex');
}

let work: string;
let vcsim: VcsimInstance;
let images: { ext4: DiskImage; mixed: DiskImage };

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-e2e-backup-'));
  images = {
    ext4: await buildExt4Image({ dir: work, sizeMiB: 32 }),
    mixed: await buildRandomZeroImage({ dir: work, sizeMiB: 24 }),
  };
  vcsim = await startVcsim({
    seed: [{ name: VM_NAME, disks: [{ image: images.ext4.path }, { image: images.mixed.path }] }],
  });
});

afterAll(async () => {
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe.each([
  ['MariaDB', 1],
  ['SQLite', 2],
] as const)('backup and restore end to end on %s', (database, redisDb) => {
  let app: Appliance;
  let home: string;
  let vmId: string;
  let firstJob: JobRow;

  beforeAll(async () => {
    const redisUrl = process.env.TEST_REDIS_URL!;
    await flushRedisDb(redisUrl, redisDb);
    const databaseUrl =
      database === 'MariaDB' ? await createDatabase(process.env.TEST_MYSQL_URL!, 'vmkeep_e2e_backup') : undefined;
    app = await startAppliance({ redisUrl, redisDb, databaseUrl });
    home = fs.mkdtempSync(path.join(work, 'home-'));
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('registers vcsim, syncs, backs up the VM and restores both disks byte-exact (API and CLI)', async () => {
    await addVcsimHost(app, vcsim);
    const vms = itemsOf(await app.api<{ id: string; name: string; moref: string }[]>('GET', '/api/vms'));
    const vm = vms.find((v) => v.name === VM_NAME);
    expect(vm).toMatchObject({ diskCount: 2, capacityBytes: images.ext4.size + images.mixed.size });
    vmId = vm!.id;

    const cliEnv = { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token };
    const run = await vmkeep(['backup', 'run', VM_NAME, '--wait', '--json'], { home, env: cliEnv });
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    firstJob = JSON.parse(run.stdout) as JobRow;
    expect(firstJob).toMatchObject({ state: 'succeeded', progress: 100, error: null });
    expect(firstJob.bytesTotal).toBe(images.ext4.size + images.mixed.size);

    const points = itemsOf(await app.api<PointRow[]>('GET', '/api/restore-points')).filter((p) => p.vmId === vmId);
    expect(points.map((p) => [p.id, p.vmName])).toEqual([[firstJob.restorePointId, VM_NAME]]);
    const [ext4Disk, mixedDisk] = [...points[0].disks].sort((a, b) => a.deviceKey - b.deviceKey);
    expect(ext4Disk.capacityBytes).toBe(images.ext4.size);
    expect(mixedDisk.capacityBytes).toBe(images.mixed.size);

    // Disk 1 through the REST API, disk 2 through `vmkeep restore disk`.
    const raw = await app.fetch('GET', `/api/restore-points/${points[0].id}/disks/${ext4Disk.key}/raw`);
    expect(await sha256Response(raw)).toBe(images.ext4.sha256);
    const output = path.join(home, 'restored.raw');
    const restore = await vmkeep(
      ['restore', 'disk', points[0].id, '--disk', mixedDisk.key, '--format', 'raw', '--output', output, '--json'],
      { home, env: cliEnv },
    );
    expect({ code: restore.code, stderr: restore.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(restore.stdout)).toMatchObject({ bytes: mixedDisk.capacityBytes, output });
    expect(await sha256File(output)).toBe(images.mixed.sha256);

    // The VM keeps no snapshot, and the job no snapshot to clean up.
    const session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, insecure: true });
    try {
      expect((await session.getVm(vm!.moref)).snapshots).toEqual([]);
    } finally {
      await session.logout();
    }
    expect((await app.api<JobRow>('GET', `/api/jobs/${firstJob.id}`)).snapshotMoref ?? null).toBeNull();
  });

  it('stores (almost) no new chunk data when the unchanged VM is backed up again', async () => {
    const job = await app.api<{ id: string }>('POST', `/api/vms/${vmId}/backup`, { quiesce: false });
    const second = await waitForJob(app, job.id);
    expect(second.state).toBe('succeeded');
    const first = firstJob.stats!;
    const again = second.stats!;
    process.stdout.write(
      `[${database}] first backup: ${first.newBytes} new bytes in ${first.newChunks} chunks; ` +
        `second backup: ${again.newBytes} new bytes in ${again.newChunks} chunks (${again.dedupChunks} deduplicated)\n`,
    );
    expect(first.newBytes).toBeGreaterThan(4 * MiB);
    expect(again.newBytes).toBeLessThan(first.newBytes / 100);
    expect(again.dedupChunks).toBeGreaterThanOrEqual(first.newChunks - 1);
    expect(itemsOf(await app.api<PointRow[]>('GET', '/api/restore-points')).filter((p) => p.vmId === vmId)).toHaveLength(2);
  });
});
