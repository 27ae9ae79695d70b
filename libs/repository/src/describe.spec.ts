import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { Repository } from './repository';
import { patterned, readAll, tempDir, BufferDisk } from './testing/test-disks';

const CS = 256 * 1024;

describe('self-describing repository (attach with only the folder and the passphrase)', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('describe')));
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  it('a fresh process lists every point with VM name, time, disks and sizes, and restores each', async () => {
    const dir = path.join(tmp.dir, 'repo');
    const repo = await Repository.init(dir, { chunkSize: CS, encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: 'pw' });
    const d1 = patterned('rz', CS, 100);
    const d2 = patterned('tr', CS);
    const w = repo.beginPoint();
    await w.writeDisk('disk-2000', new BufferDisk(d1), { meta: { label: 'Hard disk 1' } });
    await w.writeDisk('disk-2001', new BufferDisk(d2), { meta: { label: 'Hard disk 2' } });
    const a = await w.commit({ vm: { name: 'web01', moref: 'vm-42' }, host: { name: 'vc1' } });
    const w2 = repo.beginPoint();
    await w2.writeDisk('disk-0', new BufferDisk(d2));
    const b = await w2.commit({ vm: 'legacy-name' });
    await repo.archivePoint(b.id, { retainUntil: '2999-01-01' });

    const attached = await Repository.open(dir, { passphrase: 'pw' });
    const description = await attached.describe({ storage: true });
    expect(description).toMatchObject({ id: repo.config.id, encrypted: true, chunkSize: CS, format: 1 });
    expect(description.storage?.chunks).toBeGreaterThanOrEqual(4);
    expect(description.points).toEqual([
      {
        id: a.id,
        createdAt: a.createdAt,
        vmName: 'web01',
        disks: [
          { key: 'disk-2000', size: d1.length, label: 'Hard disk 1' },
          { key: 'disk-2001', size: d2.length, label: 'Hard disk 2' },
        ],
        totalSize: d1.length + d2.length,
        meta: { vm: { name: 'web01', moref: 'vm-42' }, host: { name: 'vc1' } },
      },
      expect.objectContaining({ id: b.id, vmName: 'legacy-name', totalSize: d2.length, archive: expect.objectContaining({ locked: true }) }),
    ]);
    expect((await readAll(await attached.openDisk(a.id, 'disk-2000'))).equals(d1)).toBe(true);
    expect((await readAll(await attached.openDisk(a.id, 'disk-2001'))).equals(d2)).toBe(true);
    expect((await readAll(await attached.openDisk(b.id, 'disk-0'))).equals(d2)).toBe(true);
  });
});
