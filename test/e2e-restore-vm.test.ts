// Full VM restore through the appliance (compiled API + worker, Redis, SQLite) on vcsim: a seeded VM with two
// disks of real data and a NIC is backed up (the restore point keeps its configuration), restored under a new
// name with `vmkeep restore vm --wait`; the flat files in vcsim's datastore folder hash like the restore point
// and the new VM's configuration matches the original. Overwriting the original is refused unless asked for,
// and with --overwrite-original its disks get the backed-up bytes back.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, nicDevice, type VimSession } from '@vmkeep/vsphere';
import { addVcsimHost, itemsOf, startAppliance, vmkeep, waitForJob, type Appliance, type JobRow } from './peers/appliance';
import { buildRandomZeroImage, sha256File, type DiskImage } from './peers/disk-images';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const VM_NAME = 'e2e-restore-vm';
const REDIS_DB = 5;

interface PointRow {
  id: string;
  vmId: string;
}

let work: string;
let home: string;
let vcsim: VcsimInstance;
let images: DiskImage[];
let app: Appliance;
let session: VimSession;
let pointId: string;

const flatOf = (dir: string, vm: string, index: number) => path.join(dir, vm, `${vm}_${index}-flat.vmdk`);

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-e2e-restore-vm-'));
  home = fs.mkdtempSync(path.join(work, 'home-'));
  images = [
    await buildRandomZeroImage({ dir: work, sizeMiB: 8, seed: 'e2e-restore-a' }),
    await buildRandomZeroImage({ dir: work, sizeMiB: 5, seed: 'e2e-restore-b' }),
  ];
  vcsim = await startVcsim({ seed: [{ name: VM_NAME, disks: images.map((image) => ({ image: image.path })) }] });
  session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, thumbprint: vcsim.thumbprint });
  const vmId = vcsim.vms.find((vm) => vm.name === VM_NAME)!.id;
  const network = (await session.placementTargets()).networks.find((n) => n.name === 'VM Network')!;
  const nic = { key: -1, type: 'VirtualE1000', network: 'VM Network', startConnected: true };
  await session.reconfigureVm(vmId, { numCPUs: 2, memoryMB: 768, deviceChange: [{ operation: 'add', device: nicDevice(nic, -1, network.ref) }] });

  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB });
}, 300_000);

afterAll(async () => {
  await session?.logout();
  await app?.stop();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const cli = (args: string[]) => vmkeep([...args, '--json'], { home, env: { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token } });

it('backs up the VM with its configuration and restores it under a new name, byte-exact', async () => {
  await addVcsimHost(app, vcsim);
  const backup = await cli(['backup', 'run', VM_NAME, '--wait']);
  expect({ code: backup.code, stderr: backup.stderr }).toEqual({ code: 0, stderr: '' });
  pointId = (JSON.parse(backup.stdout) as JobRow).restorePointId!;
  expect(itemsOf(await app.api<PointRow[]>('GET', '/api/restore-points')).map((p) => p.id)).toContain(pointId);

  const restore = await cli(['restore', 'vm', pointId, '--name', 'e2e-restored', '--thin', '--wait']);
  expect({ code: restore.code, stderr: restore.stderr }).toEqual({ code: 0, stderr: '' });
  const job = JSON.parse(restore.stdout) as JobRow;
  expect(job).toMatchObject({ state: 'succeeded', progress: 100, bytesDone: images[0].size + images[1].size });
  expect(job.speed).toBeGreaterThan(0);

  const ds = vcsim.datastores[0].path;
  for (const [index, image] of images.entries()) {
    expect(await sha256File(flatOf(ds, 'e2e-restored', index))).toBe(image.sha256);
  }
  const inventory = await session.inventory();
  const restored = inventory.vms.find((vm) => vm.name === 'e2e-restored')!;
  const original = inventory.vms.find((vm) => vm.name === VM_NAME)!;
  const [a, b] = await Promise.all([session.vmConfig(original.ref.value), session.vmConfig(restored.ref.value)]);
  expect({ ...b, name: VM_NAME }).toMatchObject({
    guestId: a.guestId,
    numCPUs: 2,
    memoryMB: 768,
    nics: a.nics.map((n) => expect.objectContaining({ type: n.type, network: n.network })),
  });
  expect(b.disks.map((d) => d.capacityBytes)).toEqual(a.disks.map((d) => d.capacityBytes));
});

it('refuses to restore without a name unless overwriting the original is asked for', async () => {
  const refused = await app.fetch('POST', `/api/restore-points/${pointId}/restore-vm`, {});
  expect(refused.status).toBe(400);
  expect(await refused.text()).toMatch(/overwrite the original explicitly/);
  const cliRefused = await cli(['restore', 'vm', pointId]);
  expect(cliRefused.code).toBe(1);
  expect(cliRefused.stderr).toMatch(/--overwrite-original/);
});

it('with --overwrite-original puts the backed-up bytes back into the original VM', async () => {
  const ds = vcsim.datastores[0].path;
  // The original's data gets damaged after the backup.
  const damaged = flatOf(ds, VM_NAME, 0);
  const fd = fs.openSync(damaged, 'r+');
  fs.writeSync(fd, Buffer.alloc(64 * 1024, 0xee), 0, 64 * 1024, 4096);
  fs.closeSync(fd);
  expect(await sha256File(damaged)).not.toBe(images[0].sha256);

  const before = (await session.inventory()).vms.find((vm) => vm.name === VM_NAME)!;
  const run = await cli(['restore', 'vm', pointId, '--overwrite-original', '--wait']);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  const after = await session.vmConfig(before.ref.value);
  for (const [index, disk] of after.disks.entries()) {
    const rel = disk.fileName.replace(/^\[[^\]]+\]\s*/, '').replace(/\.vmdk$/, '-flat.vmdk');
    expect(await sha256File(path.join(ds, rel))).toBe(images[index].sha256);
  }
  const jobs = itemsOf(await app.api<JobRow[]>('GET', '/api/jobs')) as (JobRow & { type: string })[];
  expect(jobs.filter((j) => j.type === 'restore-vm').map((j) => j.state)).toEqual(['succeeded', 'succeeded']);
  await waitForJob(app, jobs[0].id);
});
