// Export of restore points through the real appliance: a vcsim VM with two disks (an ext4 file system and a
// random+zero image) is backed up, then every disk is exported as VMDK streamOptimized, VHDX and raw through
// the REST API and `vmkeep restore export`, and the whole VM as an OVA. Every exported image must pass
// `qemu-img compare` against the restore point's raw content; the OVA must list its OVF first, carry a manifest
// whose SHA-256 lines match the members, and hold disks that qemu-img reads back byte-exact. A point whose
// chunks are gone makes the download fail mid-stream (never padded), and the CLI leaves nothing behind.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { addVcsimHost, runBackup, startAppliance, vmIdByName, vmkeep, type Appliance } from './peers/appliance';
import { buildExt4Image, buildRandomZeroImage, sha256File, type DiskImage } from './peers/disk-images';
import { flushRedisDb } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const run = promisify(execFile);
const REDIS_DB = 14;
const VM_NAME = 'export-vm';

interface PointRow {
  id: string;
  vmId: string;
  disks: { key: string; deviceKey: number; capacityBytes: number }[];
}

let work: string;
let home: string;
let vcsim: VcsimInstance;
let app: Appliance;
let images: DiskImage[];
let point: PointRow;
/** The restore point's raw content of each disk (in device order), as the /raw route gives it. */
let raws: string[];

/** Downloads a route of the API into `file`; returns the response's Content-Type, Content-Disposition and length. */
async function download(route: string, file: string): Promise<{ type: string | null; disposition: string | null; length: number | null }> {
  const res = await app.fetch('GET', route);
  if (!res.ok || !res.body) throw new Error(`GET ${route} → HTTP ${res.status}: ${await res.text()}`);
  await pipeline(Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]), fs.createWriteStream(file));
  const length = res.headers.get('content-length');
  return { type: res.headers.get('content-type'), disposition: res.headers.get('content-disposition'), length: length === null ? null : Number(length) };
}

/** `qemu-img compare` of an image against raw data: resolves when identical, rejects with its output otherwise. */
async function qemuCompare(image: string, format: string, raw: string): Promise<void> {
  await run('qemu-img', ['compare', '-f', format, '-F', 'raw', image, raw]);
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-export-test-'));
  home = path.join(work, 'home');
  fs.mkdirSync(home);
  images = [await buildExt4Image({ dir: work, sizeMiB: 16 }), await buildRandomZeroImage({ dir: work, sizeMiB: 12 })];
  vcsim = await startVcsim({ seed: [{ name: VM_NAME, disks: images.map((i) => ({ image: i.path })) }] });
  const redisUrl = process.env.TEST_REDIS_URL!;
  await flushRedisDb(redisUrl, REDIS_DB);
  app = await startAppliance({ redisUrl, redisDb: REDIS_DB });

  await addVcsimHost(app, vcsim);
  const done = await runBackup(app, await vmIdByName(app, VM_NAME));
  expect(done).toMatchObject({ state: 'succeeded' });
  point = await app.api<PointRow>('GET', `/api/restore-points/${done.restorePointId}`);
  point.disks.sort((a, b) => a.deviceKey - b.deviceKey);
  raws = [];
  for (const [i, disk] of point.disks.entries()) {
    const file = path.join(work, `point-${disk.key}.raw`);
    await download(`/api/restore-points/${point.id}/disks/${disk.key}/raw`, file);
    expect(await sha256File(file)).toBe(images[i].sha256);
    raws.push(file);
  }
}, 240_000);

afterAll(async () => {
  await app?.stop();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('export of restore points', () => {
  it.each([
    ['vmdk-stream', 'vmdk', 'application/x-vmdk'],
    ['vhdx', 'vhdx', 'application/x-vhdx'],
    ['raw', 'raw', 'application/octet-stream'],
  ])('streams every disk as %s through the API, and qemu-img finds it identical to the point', async (format, qemuFormat, type) => {
    for (const [i, disk] of point.disks.entries()) {
      const file = path.join(work, `api-${disk.key}.${format}`);
      const got = await download(`/api/restore-points/${point.id}/disks/${disk.key}/export?format=${format}`, file);
      expect(got.type).toBe(type);
      expect(got.disposition).toMatch(new RegExp(`^attachment; filename="[^"/]+\\.${qemuFormat}"$`));
      // Raw and VHDX announce their exact length; the compressed VMDK streams chunked and is smaller.
      if (format === 'vmdk-stream') {
        expect(got.length).toBeNull();
        expect(fs.statSync(file).size).toBeLessThan(disk.capacityBytes);
      } else {
        expect(got.length).toBe(fs.statSync(file).size);
      }
      await qemuCompare(file, qemuFormat, raws[i]);
      fs.rmSync(file);
    }
  });

  it('exports through `vmkeep restore export` with the same result, leaving only the output file', async () => {
    const env = { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token };
    const out = path.join(home, 'cli-out');
    fs.mkdirSync(out);
    for (const [format, qemuFormat] of [['vhdx', 'vhdx'], ['vmdk-stream', 'vmdk']] as const) {
      const disk = point.disks[1];
      const file = path.join(out, `disk.${qemuFormat}`);
      const res = await vmkeep(['restore', 'export', point.id, '--disk', disk.key, '--format', format, '--output', file, '--json'], { home, env });
      expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
      expect(JSON.parse(res.stdout)).toEqual({ point: point.id, disk: disk.key, format, output: file, bytes: fs.statSync(file).size });
      await qemuCompare(file, qemuFormat, raws[1]);
    }
    expect(fs.readdirSync(out).sort()).toEqual(['disk.vhdx', 'disk.vmdk']);

    // A point with two disks needs --disk; an OVA takes none; unknown formats are refused before any download.
    const many = await vmkeep(['restore', 'export', point.id, '--format', 'raw', '--output', path.join(out, 'x')], { home, env });
    expect(many).toMatchObject({ code: 1, stderr: expect.stringMatching(/has 2 disks: name one with --disk/) });
    const qcow = await vmkeep(['restore', 'export', point.id, '--format', 'qcow2', '--output', path.join(out, 'x')], { home, env });
    expect(qcow).toMatchObject({ code: 1, stderr: expect.stringMatching(/format "qcow2" is not supported/) });
    expect(fs.readdirSync(out).sort()).toEqual(['disk.vhdx', 'disk.vmdk']);
  });

  it('exports the whole VM as an OVA: OVF first, manifest hashes verify, disks convert byte-exact', async () => {
    const env = { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token };
    const ova = path.join(work, 'vm.ova');
    const res = await vmkeep(['restore', 'export', point.id, '--format', 'ova', '--output', ova, '--json'], { home, env });
    expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
    // The API gives the same archive layout, with its exact length announced.
    const viaApi = path.join(work, 'api.ova');
    const got = await download(`/api/restore-points/${point.id}/export.ova`, viaApi);
    expect(got).toMatchObject({ type: 'application/x-tar', length: fs.statSync(viaApi).size });
    expect(got.disposition).toMatch(/^attachment; filename="export-vm-[^"/]+\.ova"$/);

    const { stdout: listing } = await run('tar', ['tf', ova]);
    const members = listing.trim().split('\n');
    expect(members).toEqual([`${VM_NAME}.ovf`, `${VM_NAME}-disk1.vmdk`, `${VM_NAME}-disk2.vmdk`, `${VM_NAME}.mf`]);
    expect((await run('tar', ['tf', viaApi])).stdout.trim().split('\n')).toEqual(members);

    const dir = path.join(work, 'ova');
    fs.mkdirSync(dir);
    await run('tar', ['xf', ova, '-C', dir]);
    const manifest = fs.readFileSync(path.join(dir, `${VM_NAME}.mf`), 'utf8').trim().split('\n');
    expect(manifest).toHaveLength(3);
    for (const name of members.slice(0, 3)) {
      const sha = createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex');
      expect(manifest).toContain(`SHA256(${name})= ${sha}`);
    }
    const ovf = fs.readFileSync(path.join(dir, `${VM_NAME}.ovf`), 'utf8');
    for (const [i, disk] of point.disks.entries()) {
      const name = `${VM_NAME}-disk${i + 1}.vmdk`;
      expect(ovf).toContain(`ovf:href="${name}" ovf:id="file${i + 1}" ovf:size="${fs.statSync(path.join(dir, name)).size}"`);
      expect(ovf).toContain(`ovf:capacity="${disk.capacityBytes}"`);
      const converted = path.join(dir, `disk${i + 1}.raw`);
      await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', path.join(dir, name), converted]);
      expect(await sha256File(converted)).toBe(images[i].sha256);
      await qemuCompare(path.join(dir, name), 'vmdk', raws[i]);
    }
  });

  it('answers bad requests with clear errors before streaming', async () => {
    const bad = await app.fetch('GET', `/api/restore-points/${point.id}/disks/${point.disks[0].key}/export?format=qcow2`);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toMatch(/format must be one of the following values: vmdk-stream, vhdx, raw/);
    const noDisk = await app.fetch('GET', `/api/restore-points/${point.id}/disks/disk-9/export?format=vhdx`);
    expect(noDisk.status).toBe(404);
    const noPoint = await app.fetch('GET', `/api/restore-points/00000000-0000-4000-8000-000000000000/export.ova`);
    expect(noPoint.status).toBe(404);
  });

  it('aborts the transfer when the data cannot be read, and the CLI leaves nothing behind', async () => {
    // Lose every chunk of the repository: the headers go out, then the first read fails.
    fs.rmSync(path.join(app.repositoryPath, 'chunks'), { recursive: true, force: true });
    fs.mkdirSync(path.join(app.repositoryPath, 'chunks'));
    for (const route of [`/disks/${point.disks[0].key}/export?format=vhdx`, `/disks/${point.disks[0].key}/export?format=vmdk-stream`, '/export.ova']) {
      const res = await app.fetch('GET', `/api/restore-points/${point.id}${route}`);
      expect(res.status).toBe(200);
      await expect(res.arrayBuffer()).rejects.toThrow();
    }
    const env = { VMKEEP_URL: app.url, VMKEEP_TOKEN: app.token };
    const out = path.join(home, 'failed');
    fs.mkdirSync(out);
    for (const format of ['ova', 'vhdx', 'vmdk-stream']) {
      const args = ['restore', 'export', point.id, ...(format === 'ova' ? [] : ['--disk', point.disks[1].key]), '--format', format, '--output', path.join(out, `x.${format}`)];
      const res = await vmkeep(args, { home, env });
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^error: the download broke off after \d+ bytes .*; nothing written/);
    }
    expect(fs.readdirSync(out)).toEqual([]);
    expect(app.logs()).toMatch(/export aborted: .*chunk/i);
  });
});
