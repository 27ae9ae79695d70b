/**
 * Changed block tracking against vcsim extended by test/vcsim/cbt.go: ReconfigVM_Task(changeTrackingEnabled),
 * changeIds on snapshot disks, and QueryChangedDiskAreas answering from what changed in the flat file.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, collectChangedAreas, FaultError, type MoRef, type VimSession, type VmDiskInfo } from '@vmkeep/vsphere';
import type { Extent } from '@vmkeep/disk';
import { buildRandomZeroImage, seededBytes, type DiskImage } from './peers/disk-images';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The simulator's tracking granularity. */
const BLOCK = 64 * KiB;
const PAGE = 16 * MiB;

/** Non-zero BLOCK-sized blocks of a buffer, as merged extents. */
function allocatedBlocks(data: Buffer): Extent[] {
  const out: Extent[] = [];
  for (let offset = 0; offset < data.length; offset += BLOCK) {
    const block = data.subarray(offset, offset + BLOCK);
    if (!block.some((b) => b !== 0)) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === offset) last.length += block.length;
    else out.push({ offset, length: block.length });
  }
  return out;
}

function covers(areas: Extent[], offset: number, length: number): boolean {
  return areas.some((a) => a.offset <= offset && a.offset + a.length >= offset + length);
}

const total = (areas: Extent[]) => areas.reduce((n, a) => n + a.length, 0);

describe('changed block tracking on vcsim', () => {
  let work: string;
  let image: DiskImage;
  let sim: VcsimInstance;
  let session: VimSession;

  const vm = (name: string) => sim.vms.find((v) => v.name === name)!;
  const flatFile = (name: string) => vm(name).disks[0].localPath.replace(/\.vmdk$/, '-flat.vmdk');

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-vsphere-cbt-'));
    image = await buildRandomZeroImage({ dir: work, seed: 'cbt', sizeMiB: 40 });
    sim = await startVcsim({
      seed: [
        { name: 'cbt-exact', disks: [{ image: image.path }], cbtPageBytes: PAGE },
        { name: 'cbt-over', disks: [{ image: image.path }], cbtOverReport: true },
      ],
    });
    session = await connect({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });
  });

  afterAll(async () => {
    await session?.logout();
    await sim?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  async function snapshotDisk(vmId: string, name: string): Promise<{ snap: MoRef; disk: VmDiskInfo }> {
    const snap = await session.createSnapshot(vmId, name, 'cbt test', false);
    const [disk] = await session.snapshotDisks(snap);
    return { snap, disk };
  }

  async function changed(vmId: string, snap: MoRef, disk: VmDiskInfo, changeId: string) {
    return collectChangedAreas(
      (start) => session.queryChangedDiskAreas(vmId, snap, disk.key, start, changeId),
      disk.capacityBytes,
      'test',
    );
  }

  /** Writes seeded bytes at the offsets into the flat file; returns them as extents. */
  async function scribble(file: string, writes: [number, number][], seed: string): Promise<Extent[]> {
    const handle = await fs.open(file, 'r+');
    try {
      for (const [i, [offset, length]] of writes.entries()) {
        await handle.write(seededBytes(seed, String(i), length), 0, length, offset);
      }
    } finally {
      await handle.close();
    }
    return writes.map(([offset, length]) => ({ offset, length }));
  }

  it('reports and switches CBT through ReconfigVM_Task', async () => {
    const id = vm('cbt-exact').id;
    const before = await session.getVm(id);
    expect(before.changeTrackingSupported).toBe(true);
    expect(before.changeTrackingEnabled).toBe(false);

    const { snap, disk } = await snapshotDisk(id, 'no-cbt');
    expect(disk.changeId).toBeUndefined();
    await session.removeSnapshot(snap);

    await session.setChangeTracking!(id, true);
    expect((await session.getVm(id)).changeTrackingEnabled).toBe(true);
  });

  it('answers "*" with the allocated areas, page by page, then exactly the changed blocks', async () => {
    const id = vm('cbt-exact').id;
    const first = await snapshotDisk(id, 'first');
    expect(first.disk.changeId).toMatch(/^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}\/\d+$/);
    // The VM's own disk keeps no changeId of the snapshot (the snapshot has its own copy of the device).
    expect((await session.getVm(id)).disks[0].changeId).toBeUndefined();

    const all = await changed(id, first.snap, first.disk, '*');
    expect(all.calls).toBe(Math.ceil(image.size / PAGE));
    expect(all.areas.length).toBeGreaterThan(0);
    const merged = allocatedBlocks(await fs.readFile(flatFile('cbt-exact')));
    expect(mergeAll(all.areas)).toEqual(merged);
    await session.removeSnapshot(first.snap);

    // Scattered writes: inside a block, across a page boundary, at the very end.
    const writes = await scribble(flatFile('cbt-exact'), [[3 * MiB + 100, 5000], [PAGE - 10 * KiB, 20 * KiB], [image.size - 512, 512]], 'w1');
    const second = await snapshotDisk(id, 'second');
    expect(second.disk.changeId).not.toBe(first.disk.changeId);
    const delta = await changed(id, second.snap, second.disk, first.disk.changeId!);
    for (const w of writes) expect(covers(mergeAll(delta.areas), w.offset, w.length)).toBe(true);
    // Exactly the 64 KiB blocks touched: 1 + 2 (straddles a block boundary) + 1.
    expect(total(delta.areas)).toBe(4 * BLOCK);

    // Unchanged since the second snapshot: nothing to report.
    await session.removeSnapshot(second.snap);
    const third = await snapshotDisk(id, 'third');
    expect((await changed(id, third.snap, third.disk, second.disk.changeId!)).areas).toEqual([]);
    await session.removeSnapshot(third.snap);
  });

  it('faults like the real API for bad offsets and unknown changeIds, and after a reset', async () => {
    const id = vm('cbt-exact').id;
    const { snap, disk } = await snapshotDisk(id, 'faults');
    const fault = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

    const atEnd = await fault(session.queryChangedDiskAreas(id, snap, disk.key, disk.capacityBytes, '*'));
    expect(atEnd).toBeInstanceOf(FaultError);
    expect((atEnd as FaultError).fault).toBe('InvalidArgument');

    const unknown = await fault(session.queryChangedDiskAreas(id, snap, disk.key, 0, '52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1'));
    expect((unknown as FaultError).fault).toBe('InvalidArgument');
    await session.removeSnapshot(snap);

    // Reset: off and on again. The old changeId is then rejected.
    await session.setChangeTracking!(id, false);
    await session.setChangeTracking!(id, true);
    const after = await snapshotDisk(id, 'after-reset');
    expect(after.disk.changeId).toBeDefined();
    expect(after.disk.changeId!.split('/')[0]).not.toBe(disk.changeId!.split('/')[0]);
    const stale = await fault(session.queryChangedDiskAreas(id, after.snap, after.disk.key, 0, disk.changeId!));
    expect((stale as FaultError).fault).toBe('InvalidArgument');
    await session.removeSnapshot(after.snap);
  });

  it('over-reports when asked to, never under-reports', async () => {
    const id = vm('cbt-over').id;
    await session.setChangeTracking!(id, true);
    const first = await snapshotDisk(id, 'first');
    await session.removeSnapshot(first.snap);
    const writes = await scribble(flatFile('cbt-over'), [[5 * MiB, 4096], [20 * MiB + 70 * KiB, 100 * KiB]], 'w2');
    const second = await snapshotDisk(id, 'second');
    const delta = await changed(id, second.snap, second.disk, first.disk.changeId!);
    expect(delta.calls).toBe(1); // default page (64 MiB) covers the 40 MiB disk
    for (const w of writes) expect(covers(mergeAll(delta.areas), w.offset, w.length)).toBe(true);
    expect(total(delta.areas)).toBeGreaterThan(4 * BLOCK);
    await session.removeSnapshot(second.snap);
  });
});

/** Merges touching extents (answers of consecutive pages may meet at the page boundary). */
function mergeAll(areas: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const a of [...areas].sort((x, y) => x.offset - y.offset)) {
    const last = out[out.length - 1];
    if (last && a.offset <= last.offset + last.length) last.length = Math.max(last.length, a.offset + a.length - last.offset);
    else out.push({ ...a });
  }
  return out;
}
