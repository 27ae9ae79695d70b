/**
 * The write window counts chunks being read/encoded/stored, not positions: chunks taken from an incremental's
 * parent (and zero chunks) pass without a slot, so scattered changed chunks are in flight together.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { Disk, Extent } from '@vmkeep/disk';
import { closeSharedChunkWorkers } from './chunk-workers';
import { Repository } from './repository';
import { BufferDisk, readAll, tempDir } from './testing/test-disks';

const CS = 256 * 1024; // the smallest chunk size
const CHUNKS = 120;
const CONCURRENCY = 4;
/** Waiting this long for more reads means the window did not let them start. */
const STALL_MS = 400;

jest.setTimeout(30_000);

/**
 * A disk whose reads are held until `gate` of them are pending (or STALL_MS passed, which is recorded): it
 * shows how many reads the writer keeps in flight at once.
 */
class GatedDisk implements Disk {
  private held: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  pending = 0;
  maxPending = 0;
  stalls = 0;
  constructor(
    private readonly data: Buffer,
    private readonly gate: number,
  ) {}
  get size(): number {
    return this.data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    await new Promise<void>((resolve) => {
      this.held.push(resolve);
      if (this.held.length >= this.gate) this.openGate();
      else this.timer ??= setTimeout(() => {
        this.stalls++;
        this.openGate();
      }, STALL_MS);
    });
    this.pending--;
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  private openGate(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const resolve of this.held.splice(0)) resolve();
  }
  async extents(): Promise<Extent[]> {
    return [{ offset: 0, length: this.data.length }];
  }
  async close(): Promise<void> {}
}

describe('writeDisk window', () => {
  let tmp: ReturnType<typeof tempDir>;
  let repo: Repository;

  beforeEach(async () => {
    tmp = tempDir('repo-window');
    repo = await Repository.init(path.join(tmp.dir, 'repo'), { chunkSize: CS }, { concurrency: CONCURRENCY });
  });
  afterEach(() => tmp.cleanup());
  afterAll(() => closeSharedChunkWorkers());

  it('keeps `concurrency` scattered changed chunks in flight while parent chunks pass through', async () => {
    const old = randomBytes(CHUNKS * CS);
    old.fill(0, 60 * CS, 72 * CS); // zero chunks in the parent stay zero
    const first = repo.beginPoint();
    await first.writeDisk('disk-1', new BufferDisk(old));
    const parentId = (await first.commit({})).id;

    // 12 changed chunks, 9 positions apart: a window of positions would hold one of them at a time.
    const next = Buffer.from(old);
    const changed: Extent[] = [];
    for (let c = 3; c < CHUNKS; c += 9) {
      if (c >= 60 && c < 72) continue;
      randomBytes(512).copy(next, c * CS + 100);
      changed.push({ offset: c * CS + 100, length: 512 });
    }
    expect(changed.length).toBe(12);
    const source = new GatedDisk(next, CONCURRENCY);
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('disk-1', source, { parent: { pointId: parentId, diskKey: 'disk-1', changed } });
    const { id } = await writer.commit({});

    expect(source.maxPending).toBe(CONCURRENCY); // overlapping, and never more than the window
    expect(source.stalls).toBe(0); // every batch of 4 reads was released by the 4th, never by the timer
    expect(stats.bytesRead).toBe(12 * 512); // each changed chunk is its parent's with the 512 changed bytes read
    expect(stats.patchedChunks).toBe(12);
    expect(stats.newChunks).toBe(12);
    expect(stats.parentChunks).toBe(CHUNKS - 12 - 12);
    expect(stats.zeroChunks).toBe(12);
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(next)).toBe(true);
  });

  it('a full write of a disk with sparse data keeps reads overlapping across zero positions', async () => {
    const data = Buffer.alloc(48 * CS);
    const extents: Extent[] = [];
    for (let c = 0; c < 48; c += 6) {
      randomBytes(CS).copy(data, c * CS);
      extents.push({ offset: c * CS, length: CS });
    }
    const source = new GatedDisk(data, CONCURRENCY);
    source.extents = async () => extents.map((e) => ({ ...e }));
    const writer = repo.beginPoint();
    const stats = await writer.writeDisk('disk-1', source);
    const { id } = await writer.commit({});
    expect(source.maxPending).toBe(CONCURRENCY);
    expect(source.stalls).toBe(0);
    expect(stats).toMatchObject({ newChunks: 8, zeroChunks: 40, bytesRead: 8 * CS });
    expect((await readAll(await repo.openDisk(id, 'disk-1'))).equals(data)).toBe(true);
  });
});
