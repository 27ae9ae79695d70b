import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { closeSharedChunkWorkers } from './chunk-workers';
import { ARCHIVES_DIR } from './constants';
import { ArchiveChangeError, ArchiveLockedError, PointNotFoundError } from './errors';
import { Repository } from './repository';
import { backdate } from './testing/repo-files';
import { BufferDisk, patterned, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024;
const FUTURE = '2999-01-01';

describe('archives, prune and delete', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('archive');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS });
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  async function backup(data: Buffer) {
    const writer = repo.beginPoint();
    await writer.writeDisk('d', new BufferDisk(data));
    return writer.commit({});
  }

  it('locks an archived point against delete, prune and GC until its date; extending works, shortening never', async () => {
    const data = patterned('rr', CS);
    const archived = await backup(data);
    const plain = await backup(patterned('r', CS));
    const status = await repo.archivePoint(archived.id, { retainUntil: '2998-06-01' });
    expect(status).toMatchObject({ retainUntil: '2998-06-01T00:00:00.000Z', legalHold: false, locked: true, revisions: 1 });

    await expect(repo.deletePoint(archived.id)).rejects.toBeInstanceOf(ArchiveLockedError);
    const pruned = await repo.prune({ keepLast: 1 });
    expect(pruned.plan.keep.find((k) => k.id === archived.id)?.reasons).toEqual(['archived until 2998-06-01T00:00:00.000Z']);
    expect(pruned.removed).toEqual([]); // the plain point is the 1 kept; the archive does not count
    // GC with no grace: the archive's chunks stay.
    await backdate(repo.localStore.dir, 3600_000);
    await repo.collectGarbage({ graceMs: 0 });
    expect((await readAll(await repo.openDisk(archived.id, 'd'))).equals(data)).toBe(true);

    await expect(repo.archivePoint(archived.id, { retainUntil: '2998-01-01' })).rejects.toBeInstanceOf(ArchiveChangeError);
    await expect(repo.archivePoint(archived.id, { retainUntil: 'next year' })).rejects.toThrow(/not an ISO date/);
    expect(await repo.archivePoint(archived.id, { retainUntil: FUTURE })).toMatchObject({ retainUntil: '2999-01-01T00:00:00.000Z', revisions: 2 });

    // Revisions are write-once, read-only files; a forged later revision cannot shorten the date.
    const recDir = path.join(repo.dir, ARCHIVES_DIR, archived.id);
    const files = (await fs.readdir(recDir)).sort();
    expect(files).toEqual(['000001.json', '000002.json']);
    expect((await fs.stat(path.join(recDir, files[0]))).mode & 0o222).toBe(0);
    await fs.writeFile(
      path.join(recDir, '000003.json'),
      JSON.stringify({ pointId: archived.id, revision: 3, retainUntil: '2000-01-01T00:00:00.000Z', legalHold: false, at: '' }),
    );
    expect(await repo.archiveStatus(archived.id)).toMatchObject({ retainUntil: '2999-01-01T00:00:00.000Z', locked: true });

    await repo.deletePoint(plain.id); // backups delete normally
    expect((await repo.listPoints()).map((m) => m.id)).toEqual([archived.id]);
    expect((await repo.listArchives()).map((a) => a.pointId)).toEqual([archived.id]);
  });

  it('legal hold locks past the date and can be released; an expired archive can then be deleted', async () => {
    const p = await backup(patterned('r', CS));
    await repo.archivePoint(p.id, { retainUntil: new Date(Date.now() + 60_000), legalHold: true });
    const later = new Date(Date.now() + 3600_000);
    expect(await repo.archives.status(p.id, later)).toMatchObject({ legalHold: true, locked: true });
    await expect(repo.prune({ keepLast: 1 }, { now: later })).resolves.toMatchObject({ removed: [] });
    await repo.setLegalHold(p.id, false);
    expect(await repo.archives.status(p.id, later)).toMatchObject({ legalHold: false, locked: false });
    expect((await repo.archives.status(p.id))?.locked).toBe(true); // still before its date now
    await expect(repo.deletePoint(p.id)).rejects.toThrow(/retained until/);

    const expired = await backup(patterned('r', CS));
    await expect(repo.archivePoint(expired.id, { retainUntil: '2001-01-01' })).rejects.toThrow(/not in the future/);
    await expect(repo.archivePoint('20250101T000000000Z-00000000', { retainUntil: FUTURE })).rejects.toBeInstanceOf(PointNotFoundError);
    await expect(repo.setLegalHold(expired.id, true)).rejects.toThrow(/retain-until date is required/);
  });

  it('prune dry run lists what would go and deletes nothing; the real run deletes manifests and indexes only', async () => {
    const a = await backup(patterned('r', CS));
    const b = await backup(patterned('r', CS));
    const c = await backup(patterned('r', CS));
    const chunkCount = async () => (await fs.readdir(repo.localStore.dir)).length;
    const chunksBefore = await chunkCount();
    const dry = await repo.prune({ keepLast: 1 }, { dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.plan.remove.map((r) => r.id)).toEqual([b.id, a.id]);
    expect((await repo.listPoints()).length).toBe(3);

    const real = await repo.prune({ keepLast: 1 });
    expect(real.removed).toEqual([b.id, a.id]);
    expect((await repo.listPoints()).map((m) => m.id)).toEqual([c.id]);
    expect(await fs.readdir(path.join(repo.dir, 'points'))).toEqual([c.id]);
    expect(await chunkCount()).toBe(chunksBefore); // chunks wait for GC
  });
});
