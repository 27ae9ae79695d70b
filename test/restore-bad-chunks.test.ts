/**
 * Restoring a point whose chunks fail verification (issue 6, "bad input"), through the real paths: a vcsim VM
 * is backed up by the appliance, then two chunks of its disk are damaged on disk (one byte flipped each). Every
 * restore must stop at the FIRST bad chunk, name it, and leave nothing partial behind — never deliver zeros or
 * the damaged bytes instead of data:
 * - `vmkeep repo restore` on the local repository (raw and VHDX): exit 1, the chunk named, no output file;
 * - the API downloads (raw route, export raw/VMDK, OVA): the response breaks off (the client sees an error, not
 *   a clean end), everything received before the break is the disk's true bytes, and the log names the chunk;
 * - a VM restore job on vcsim: the job fails naming the chunk; no VM and no flat file is left on the datastore.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHUNK_FANOUT_CHARS, Repository } from '@vmkeep/repository';
import { connect, type VimSession } from '@vmkeep/vsphere';
import { addVcsimHost, runBackup, startAppliance, vmIdByName, vmkeep, waitForJob, type Appliance, type JobRow } from './peers/appliance';
import { seededBytes } from './peers/disk-images';
import type { Peer } from './peers/process';
import { startRedis } from './peers/redis';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const MIB = 1024 * 1024;
const VM_NAME = 'bad-chunks-vm';
const DISK_MIB = 8;
/** Chunk indexes (1 MiB chunks: the appliance's default) damaged; the first one must be the one named. */
const BAD = [3, 5];

let work: string;
let home: string;
let vcsim: VcsimInstance;
/** A Redis of its own: every shared database number is taken by other suites. */
let redis: Peer;
let app: Appliance;
let session: VimSession;
let image: Buffer;
let pointId: string;
/** The same point's id inside the repository (what `vmkeep repo` commands take). */
let repoPointId: string;
let diskKey: string;
/** Hex ids of the damaged chunks, in disk order. */
let badIds: string[];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-bad-chunks-'));
  home = fs.mkdtempSync(path.join(work, 'home-'));
  image = seededBytes('bad-chunks', 'disk', DISK_MIB * MIB); // random: every chunk is stored, none is all-zero
  const imageFile = path.join(work, 'disk.raw');
  fs.writeFileSync(imageFile, image);
  vcsim = await startVcsim({ seed: [{ name: VM_NAME, disks: [{ image: imageFile }] }] });
  session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, thumbprint: vcsim.thumbprint });

  redis = await startRedis();
  app = await startAppliance({ redisUrl: redis.url, redisDb: 0 });
  await addVcsimHost(app, vcsim);
  const done = await runBackup(app, await vmIdByName(app, VM_NAME));
  expect(done).toMatchObject({ state: 'succeeded' });
  pointId = done.restorePointId!;
  diskKey = (await app.api<{ disks: { key: string }[] }>('GET', `/api/restore-points/${pointId}`)).disks[0].key;

  // Damage the chunks in place: same length, one byte flipped, so only verification can tell.
  const repo = await Repository.open(app.repositoryPath);
  try {
    const [manifest] = await repo.listPoints();
    repoPointId = manifest.id;
    const index = await repo.readIndex(manifest.id, manifest.disks[0]);
    expect(index.count).toBe(DISK_MIB);
    // Random content: no chunk of the point may be a hole (else the damage below would never be read).
    expect(Array.from({ length: index.count }, (_, i) => index.isZero(i))).toEqual(new Array(DISK_MIB).fill(false));
    badIds = BAD.map((i) => index.idAt(i).toString('hex'));
  } finally {
    await repo.close();
  }
  for (const id of badIds) {
    const file = path.join(app.repositoryPath, 'chunks', id.slice(0, CHUNK_FANOUT_CHARS), id);
    const blob = fs.readFileSync(file);
    blob[Math.floor(blob.length / 2)] ^= 0x55;
    fs.writeFileSync(file, blob);
  }
}, 300_000);

afterAll(async () => {
  await session?.logout();
  await app?.stop();
  await vcsim?.stop();
  await redis?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Reads a response body until it ends or breaks; returns what arrived and how it ended. */
async function drain(res: Response): Promise<{ received: Buffer; error?: Error }> {
  const parts: Buffer[] = [];
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { received: Buffer.concat(parts) };
      parts.push(Buffer.from(value));
    }
  } catch (err) {
    return { received: Buffer.concat(parts), error: err as Error };
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('restoring a point with chunks that fail verification', () => {
  it('vmkeep repo restore (local repository) stops at the first bad chunk, names it and leaves no file', async () => {
    const out = path.join(work, 'cli-out');
    fs.mkdirSync(out);
    for (const format of ['raw', 'vhdx']) {
      const r = await vmkeep(['repo', 'restore', repoPointId, '--output', path.join(out, `disk.${format}`), '--format', format], {
        home,
        env: { VMKEEP_REPO: app.repositoryPath },
      });
      expect({ format, code: r.code, stdout: r.stdout, stderr: r.stderr }).toMatchObject({ code: 1 });
      expect(r.stderr).toContain(`chunk ${badIds[0]} is corrupt`);
      expect(r.stderr).not.toContain(badIds[1]);
      expect(r.stderr).toMatch(new RegExp(`offset ${BAD[0] * MIB}\\b`));
      expect(fs.readdirSync(out)).toEqual([]);
    }
  });

  it('API downloads break off at the bad chunk with an error; what arrived before it is the true data', async () => {
    const routes = [
      `/disks/${diskKey}/raw`,
      `/disks/${diskKey}/export?format=raw`,
      `/disks/${diskKey}/export?format=vmdk-stream`,
      '/export.ova',
    ];
    for (const route of routes) {
      const res = await app.fetch('GET', `/api/restore-points/${pointId}${route}`);
      expect(res.status).toBe(200);
      const announced = res.headers.get('content-length');
      const { received, error } = await drain(res);
      // Not a clean end: the transfer is cut, so no client can mistake the body for a whole disk.
      expect(error).toBeDefined();
      if (announced !== null) expect(received.length).toBeLessThan(Number(announced));
      if (route.includes('raw')) {
        // Never past the bad chunk, and every byte sent is the disk's own (no zeros, no damaged bytes).
        expect(received.length).toBeLessThanOrEqual(BAD[0] * MIB);
        expect(received.length).toBeGreaterThan(0);
        expect(sha(received)).toBe(sha(image.subarray(0, received.length)));
      }
    }
    expect(app.logs()).toContain(badIds[0]);
  });

  it('a VM restore job fails naming the first bad chunk, and leaves no VM and no files on the datastore', async () => {
    const name = 'bad-chunks-restored';
    const job = await app.api<{ id: string }>('POST', `/api/restore-points/${pointId}/restore-vm`, { name, thin: true });
    const done: JobRow = await waitForJob(app, job.id);
    expect(done.state).toBe('failed');
    expect(done.error).toContain(`chunk ${badIds[0]} is corrupt`);
    expect(done.error).toMatch(new RegExp(`disk ${diskKey}, offset ${BAD[0] * MIB}\\b`));
    expect(done.error).not.toContain(badIds[1]);
    const inventory = await session.inventory();
    expect(inventory.vms.map((v) => v.name)).not.toContain(name);
    for (const ds of vcsim.datastores) expect(fs.existsSync(path.join(ds.path, name))).toBe(false);
  });
});
