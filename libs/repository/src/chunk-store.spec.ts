import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { isTempName } from './atomic';
import { FsChunkStore, SYNC_BATCH_CHUNKS } from './chunk-store';
import { MissingChunkError } from './errors';
import { filesUnder } from './testing/repo-files';
import { tempDir } from './testing/test-disks';

const idOf = (blob: Buffer) => createHash('sha256').update(blob).digest();

describe('FsChunkStore (batched durability)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: FsChunkStore;

  beforeEach(async () => {
    tmp = tempDir('chunk-store');
    await fs.mkdir(path.join(tmp.dir, 'chunks'));
    store = new FsChunkStore(path.join(tmp.dir, 'chunks'));
  });
  afterEach(() => tmp.cleanup());

  const names = async () => (await filesUnder(store.dir)).map((f) => path.basename(f));

  it('keeps a chunk under a temp name until flushed, answering has/get/refresh for it meanwhile', async () => {
    const blob = randomBytes(5000);
    const id = idOf(blob);
    expect(await store.insert(id, blob)).toEqual({ existed: false });
    // Not under its name yet: a crash now must not leave a name that could be half written.
    expect((await names()).every(isTempName)).toBe(true);
    expect(await store.has(id)).toBe(true);
    expect(await store.refresh(id)).toBe(true);
    expect((await store.get(id)).equals(blob)).toBe(true);
    expect(await store.insert(id, blob)).toEqual({ existed: true });

    await store.flush();
    expect(await names()).toEqual([id.toString('hex')]);
    expect((await fs.readFile(store.pathOf(id))).equals(blob)).toBe(true);
    expect((await store.get(id)).equals(blob)).toBe(true);
    await expect(store.get(idOf(Buffer.from('absent')))).rejects.toBeInstanceOf(MissingChunkError);
  });

  it('syncs a full batch in the background, without waiting for flush', async () => {
    const blobs = Array.from({ length: SYNC_BATCH_CHUNKS }, () => randomBytes(100));
    for (const b of blobs) await store.insert(idOf(b), b);
    // The batch runs on its own; wait for it to show up under the final names.
    for (let i = 0; i < 200 && (await names()).some(isTempName); i++) await new Promise((r) => setTimeout(r, 10));
    expect((await names()).sort()).toEqual(blobs.map((b) => idOf(b).toString('hex')).sort());
    await store.flush();
  });

  it('a chunk that cannot be made durable fails the flush of every writer that may rely on it', async () => {
    const mark = store.syncMark();
    const good = randomBytes(100);
    const lost = randomBytes(100);
    await store.insert(idOf(good), good);
    await store.insert(idOf(lost), lost);
    // Something removes the lost chunk's temp file before it is synced: the batch must fail loudly.
    const temp = (await filesUnder(store.dir)).find((f) => path.basename(f).startsWith(`.${idOf(lost).toString('hex')}`));
    await fs.rm(temp as string);
    await expect(store.flush()).rejects.toMatchObject({ code: 'ENOENT' });
    // A writer that started before the failure learns about it even if someone else flushed first…
    await expect(store.flush(mark)).rejects.toMatchObject({ code: 'ENOENT' });
    // …a writer starting afterwards does not, and the lost chunk is not claimed to exist.
    const later = store.syncMark();
    await store.flush(later);
    expect(await store.has(idOf(lost))).toBe(false);
    expect((await names()).some(isTempName)).toBe(false);
    // Stored again, it is durable this time.
    expect(await store.insert(idOf(lost), lost)).toEqual({ existed: false });
    await store.flush(later);
    expect((await fs.readFile(store.pathOf(idOf(lost)))).equals(lost)).toBe(true);
  });
});
