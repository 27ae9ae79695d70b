/**
 * Garbage collection running while a backup writes into the same repository (grace period 0): the backup
 * deduplicates against chunks that are garbage at that moment and writes new ones, GC sweeps in a loop, and the
 * new restore point must still verify and restore byte-exact.
 */
import * as path from 'node:path';
import { closeSharedChunkWorkers, GcReport, Repository } from '@vmkeep/repository';
import { backdate } from '../libs/repository/src/testing/repo-files';
import { BufferDisk, CountingDisk, patterned, readAll, tempDir } from '../libs/repository/src/testing/test-disks';

const CS = 256 * 1024;
const CHUNKS = 24;

describe('repository garbage collection concurrent with a backup', () => {
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir('gc-concurrent')));
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  it('never sweeps what the running backup needs, and sweeps the rest', async () => {
    const repo = await Repository.init(
      path.join(tmp.dir, 'repo'),
      { chunkSize: CS, encrypt: true, kdf: 'insecure-fast-for-tests' },
      { passphrase: 'test passphrase' },
    );
    const backupOf = async (data: Buffer) => {
      const w = repo.beginPoint();
      await w.writeDisk('scsi0-0', new BufferDisk(data));
      return w.commit({ vm: 'old' });
    };

    // Garbage: an old point of the same VM (shared with the next backup) and an unrelated one, both deleted,
    // their chunks written an hour ago.
    const previous = patterned('r'.repeat(CHUNKS), CS);
    const unrelated = patterned('r'.repeat(8), CS);
    await repo.deletePoint((await backupOf(previous)).id);
    await repo.deletePoint((await backupOf(unrelated)).id);
    await backdate(repo.localStore.dir, 3600_000);

    // The new backup keeps every other chunk of the previous one and changes the rest; it reads slowly so GC
    // runs many times while it writes.
    const next = Buffer.from(previous);
    for (let i = 1; i < CHUNKS; i += 2) patterned('r', CS).copy(next, i * CS);
    const source = new CountingDisk(next, undefined, 15);

    const writer = repo.beginPoint();
    let writing = true;
    const backup = writer.writeDisk('scsi0-0', source, { meta: { label: 'Hard disk 1' } }).finally(() => (writing = false));
    const reports: GcReport[] = [];
    const gcLoop = (async () => {
      while (writing) {
        reports.push(await repo.collectGarbage({ graceMs: 0 }));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const [stats] = await Promise.all([backup, gcLoop]);
    const manifest = await writer.commit({ vm: 'web01' });
    reports.push(await repo.collectGarbage({ graceMs: 0 }));

    expect(reports.length).toBeGreaterThanOrEqual(3);
    expect(reports.some((r) => r.activeWriters.includes(writer.id))).toBe(true);
    // Each kept chunk of the old point was either refreshed by the backup before a GC reached it (dedup), or
    // swept first and then stored again by the backup (new): never referenced while missing.
    expect(stats.dedupChunks + stats.newChunks).toBe(CHUNKS);
    expect(stats.newChunks).toBeGreaterThanOrEqual(CHUNKS / 2);
    const resweptThenStored = stats.newChunks - CHUNKS / 2;
    // Swept: the unrelated point, the replaced half of the old one, and the kept ones GC reached first.
    const swept = reports.reduce((n, r) => n + r.sweptChunks, 0);
    expect(swept).toBe(8 + CHUNKS / 2 + resweptThenStored);
    expect(reports[reports.length - 1]).toMatchObject({ referencedChunks: CHUNKS, keptRecentChunks: 0, activeWriters: [] });

    // The new point is complete and byte-exact, also for a fresh process opening the repository.
    const reopened = await Repository.open(repo.dir, { passphrase: 'test passphrase' });
    expect(await reopened.verify()).toMatchObject({ ok: true, points: [manifest.id], chunksChecked: CHUNKS });
    const restored = await readAll(await reopened.openDisk(manifest.id, 'scsi0-0'));
    expect(restored.equals(next)).toBe(true);
  });
});
