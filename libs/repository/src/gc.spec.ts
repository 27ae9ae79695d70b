import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { MANIFEST_DELETING_FILE, MANIFEST_FILE, WRITERS_DIR } from './constants';
import { StaleWriterError } from './errors';
import { Repository } from './repository';
import { backdate, filesUnder } from './testing/repo-files';
import { BufferDisk, patterned, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;
const HOUR = 3600_000;

describe('garbage collection', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('gc');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS });
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  const chunkFiles = () => filesUnder(repo.localStore.dir);

  async function backup(data: Buffer) {
    const writer = repo.beginPoint();
    await writer.writeDisk('d', new BufferDisk(data));
    return writer.commit({});
  }

  it('sweeps unreferenced chunks older than the grace period and reports counts and bytes', async () => {
    const keepData = patterned('rr', CS);
    const kept = await backup(keepData);
    const gone = await backup(patterned('rrr', CS));
    const aborted = repo.beginPoint();
    await aborted.writeDisk('d', new BufferDisk(patterned('r', CS)));
    await aborted.abort();
    await repo.deletePoint(gone.id);
    expect((await chunkFiles()).length).toBe(6);

    // Everything is fresh: the default 24 h grace keeps it all.
    const fresh = await repo.collectGarbage();
    expect(fresh).toMatchObject({ referencedChunks: 2, sweptChunks: 0, keptRecentChunks: 4 });

    await backdate(repo.localStore.dir, 2 * HOUR);
    const dry = await repo.collectGarbage({ graceMs: HOUR, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, sweptChunks: 4 });
    expect((await chunkFiles()).length).toBe(6);

    const report = await repo.collectGarbage({ graceMs: HOUR });
    expect(report).toMatchObject({ referencedChunks: 2, sweptChunks: 4, keptRecentChunks: 0 });
    expect(report.sweptBytes).toBeGreaterThan(4 * CS);
    expect((await chunkFiles()).length).toBe(2);
    expect((await readAll(await repo.openDisk(kept.id, 'd'))).equals(keepData)).toBe(true);
    expect(await repo.verify()).toMatchObject({ ok: true });
  });

  it('keeps chunks a running writer wrote or deduplicated against, and removes a crashed writer’s stale marker', async () => {
    const data = patterned('rrr', CS);
    const old = await backup(data);
    await repo.deletePoint(old.id);
    await backdate(repo.localStore.dir, 2 * HOUR); // garbage, long unreferenced

    // A live writer deduplicates against the garbage: refresh() marks those chunks as used.
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('d', new BufferDisk(data));
    expect(stats.dedupChunks).toBe(3);
    const during = await repo.collectGarbage({ graceMs: 0 });
    expect(during).toMatchObject({ activeWriters: [writer.id], sweptChunks: 0, keptRecentChunks: 3 });
    const manifest = await writer.commit({});
    expect((await readAll(await repo.openDisk(manifest.id, 'd'))).equals(data)).toBe(true);
    expect(await fs.readdir(path.join(repo.dir, WRITERS_DIR))).toEqual([]);

    // A crashed writer: marker and partial point folder left behind, no heartbeat for hours.
    const crashed = repo.beginPoint();
    await crashed.writeDisk('d', new BufferDisk(patterned('r', CS)));
    await backdate(path.join(repo.dir, WRITERS_DIR), 3 * HOUR);
    await backdate(repo.pointDir(crashed.id), 3 * HOUR);
    const old2 = new Date(Date.now() - 3 * HOUR);
    await fs.utimes(repo.pointDir(crashed.id), old2, old2);
    await backdate(repo.localStore.dir, 3 * HOUR);
    const report = await repo.collectGarbage({ graceMs: HOUR });
    expect(report.staleWritersRemoved).toEqual([crashed.id]);
    expect(report.partialPointsRemoved).toEqual([crashed.id]);
    expect(report.sweptChunks).toBe(1);
    // Were that writer still alive, it could not commit a point that may reference swept chunks.
    await expect(crashed.commit({})).rejects.toBeInstanceOf(StaleWriterError);
    expect(await repo.verify()).toMatchObject({ ok: true, points: [manifest.id] });
  });

  it('finishes a delete interrupted long ago, or undoes it when the point was archived meanwhile', async () => {
    const a = await backup(patterned('r', CS));
    const b = await backup(patterned('r', CS));
    await repo.archivePoint(b.id, { retainUntil: '2999-01-01' });
    for (const p of [a, b]) {
      await fs.rename(path.join(repo.pointDir(p.id), MANIFEST_FILE), path.join(repo.pointDir(p.id), MANIFEST_DELETING_FILE));
      const old = new Date(Date.now() - 2 * HOUR);
      await fs.utimes(repo.pointDir(p.id), old, old);
    }
    expect(await repo.listPoints()).toEqual([]);
    await backdate(repo.localStore.dir, 2 * HOUR);
    const report = await repo.collectGarbage({ graceMs: 0 });
    expect(report).toMatchObject({ deletesFinished: [a.id], deletesUndone: [b.id], referencedChunks: 1, sweptChunks: 1 });
    expect((await repo.listPoints()).map((m) => m.id)).toEqual([b.id]);
  });

  it('puts back a chunk refreshed while it was being swept', async () => {
    const p = await backup(patterned('r', CS));
    const id = Buffer.from((await repo.readIndex(p.id, (await repo.readManifest(p.id)).disks[0])).idAt(0));
    await backdate(repo.localStore.dir, 2 * HOUR);
    const file = repo.localStore.pathOf(id);
    const trash = path.join(path.dirname(file), `.${path.basename(file)}.tmp-gc-test`);
    // As if a GC renamed it aside and a writer refreshed it just before: the next GC settles it back.
    await repo.store.refresh(id);
    await fs.rename(file, trash);
    await repo.collectGarbage({ graceMs: HOUR });
    await expect(fs.access(file)).resolves.toBeUndefined();
    await expect(fs.access(trash)).rejects.toThrow();
    expect(await repo.localStore.deleteIfUnusedSince(id, Date.now() - HOUR)).toBeUndefined();
  });
});
