/**
 * LVM2 volumes across the disks of a VM, without device-mapper: physical volumes written by test/peers/lvm-images
 * on an MBR partition and on a whole disk, ext4 file systems made by mke2fs -d and laid into the logical
 * volumes' extents (a linear LV spanning both disks, an LV striped over both), and the same over PVs whose label
 * and metadata were written by the real lvm2 tools (pvcreate + vgcfgrestore); files read back through the LV
 * Volume + openFileSystem equal the source tree and every LV byte equals the mke2fs image. Missing PVs, thin
 * pools and other unsupported segment types, and damaged or hostile metadata give typed errors.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRaw } from '@vmkeep/disk-formats';
import type { Disk } from '@vmkeep/disk';
import {
  FileSystemError, listVolumesOfVm, LogicalVolume, MissingPhysicalVolumeError, openFileSystem, UnsupportedFileSystemError,
} from '@vmkeep/filesystems';
import { buildExtTree, makeExt, MiB, walkFileSystem, walkHostTree, writeMbr } from './peers/fs-images';
import { fakeUuid, LvSpec, MDA_SIZE, PvSpec, realLvmDisks, VgSpec, vgText, writeIntoLv, writePv } from './peers/lvm-images';

let dir: string;
let tree: string;
const opened: Disk[] = [];

async function blank(name: string, sizeMiB: number): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, '');
  await fs.truncate(file, sizeMiB * MiB);
  return file;
}

async function open(...files: string[]): Promise<Disk[]> {
  const disks = await Promise.all(files.map((f) => openRaw(f)));
  opened.push(...disks);
  return disks;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-lvm-'));
  tree = path.join(dir, 'tree');
  await buildExtTree(tree);
});

afterAll(async () => {
  await Promise.all(opened.map((d) => d.close()));
  await fs.rm(dir, { recursive: true, force: true });
});

describe('a volume group over two disks (MBR partition + whole disk)', () => {
  const EXTENT = 8192; // sectors: 4 MiB
  let diskA: string;
  let diskB: string;
  let vg: VgSpec;
  let root: LvSpec;
  let data: LvSpec;
  const images: Record<string, Buffer> = {};

  beforeAll(async () => {
    diskA = await blank('a.img', 80);
    diskB = await blank('b.img', 48);
    await writeMbr(diskA, [{ type: 0x83, start: 2048, sectors: 16384 }, { type: 0x8e, start: 18432, sectors: 163840 - 18432 }]);
    const pv0: PvSpec = { name: 'pv0', uuid: fakeUuid('pv0'), file: diskA, offset: 18432 * 512, size: (163840 - 18432) * 512, peCount: 17 };
    const pv1: PvSpec = { name: 'pv1', uuid: fakeUuid('pv1'), file: diskB, offset: 0, size: 48 * MiB, peCount: 11 };
    root = { name: 'root', uuid: fakeUuid('root'), segments: [{ extents: 3, stripes: [['pv0', 2]] }, { extents: 5, stripes: [['pv1', 0]] }] };
    data = { name: 'data', uuid: fakeUuid('data'), segments: [{ extents: 4, stripes: [['pv0', 6], ['pv1', 6]], stripeSize: 128 }] };
    const solo: LvSpec = { name: 'solo', uuid: fakeUuid('solo'), segments: [{ extents: 1, stripes: [['pv0', 9]] }] };
    const hidden: LvSpec = { name: 'lvol0_pmspare', uuid: fakeUuid('hidden'), visible: false, segments: [{ extents: 1, stripes: [['pv0', 0]] }] };
    vg = { name: 'vg0', uuid: fakeUuid('vg0'), extentSize: EXTENT, pvs: [pv0, pv1], lvs: [hidden, root, data, solo] };
    const text = vgText(vg);
    await writePv(pv0, text);
    await writePv(pv1, text, { textOffset: MDA_SIZE - 700 }); // wraps around the circular buffer
    for (const [lv, sizeMiB] of [[root, 32], [data, 16]] as const) {
      const image = await makeExt(path.join(dir, `${lv.name}.ext4`), tree, { type: 'ext4', blockSize: 4096, sizeMiB });
      images[lv.name] = await fs.readFile(image);
      await writeIntoLv(vg, lv, images[lv.name]);
    }
  });

  test('partitions that are not PVs and the visible LVs are listed; hidden LVs are not', async () => {
    const result = await listVolumesOfVm(await open(diskA, diskB));
    expect(result.failed).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.volumes.map((v) => [v.id, v.disk, v.volume.scheme, v.volume.size])).toEqual([
      ['disk0/1', 0, 'mbr', 8 * MiB],
      ['lvm/vg0/root', null, 'lvm', 32 * MiB],
      ['lvm/vg0/data', null, 'lvm', 16 * MiB],
      ['lvm/vg0/solo', null, 'lvm', 4 * MiB],
    ]);
    const lv = result.volumes[1].volume as LogicalVolume;
    expect([lv.name, lv.vgName, lv.lvName, lv.guid, lv.vgUuid, lv.type]).toEqual(['vg0/root', 'vg0', 'root', root.uuid, vg.uuid, 'lvm2-linear']);
    expect(result.volumes[2].volume.type).toBe('lvm2-striped');
  });

  test.each(['root', 'data'])('LV %s: every byte equals the mke2fs image, and its files equal the source tree', async (name) => {
    const result = await listVolumesOfVm(await open(diskA, diskB));
    const lv = result.volumes.find((v) => v.id === `lvm/vg0/${name}`)!.volume;
    // Read in odd-sized pieces so reads cross segment, disk and stripe-chunk boundaries.
    const parts: Buffer[] = [];
    for (let at = 0; at < lv.size; at += 3 * MiB + 4097) parts.push(await lv.read(at, Math.min(3 * MiB + 4097, lv.size - at)));
    expect(sha(Buffer.concat(parts))).toBe(sha(images[name]));
    const fsys = await openFileSystem(lv);
    expect(fsys.type).toBe('ext4');
    const { ['/lost+found']: lostFound, ...ours } = await walkFileSystem(fsys);
    expect(lostFound).toEqual({ type: 'directory' });
    expect(ours).toEqual(await walkHostTree(tree));
    // Data extents lie inside the LV and cover the file-system superblock.
    const extents = await lv.extents();
    expect(extents.length).toBeGreaterThan(0);
    expect(extents[0].offset).toBe(0);
    for (const e of extents) expect(e.offset + e.length).toBeLessThanOrEqual(lv.size);
  });

  test('a linear LV reports only the PV ranges that hold data', async () => {
    const [a, b] = await open(diskA, diskB);
    // Disk A claims data only in two ranges: one inside solo's extent (pv0 extent 9), one ending 1 KiB into it.
    const soloStart = 18432 * 512 + MiB + 9 * 4 * MiB;
    const sparseA: Disk = {
      size: a.size, read: (o, l) => a.read(o, l), close: async () => {},
      extents: async () => [{ offset: soloStart - 4096, length: 5120 }, { offset: soloStart + MiB, length: 512 * 1024 }],
    };
    const result = await listVolumesOfVm([sparseA, b]);
    const solo = result.volumes.find((v) => v.id === 'lvm/vg0/solo')!.volume;
    expect(await solo.extents()).toEqual([{ offset: 0, length: 1024 }, { offset: MiB, length: 512 * 1024 }]);
    await expect(solo.read(solo.size - 10, 11)).rejects.toThrow(/past the end/);
  });

  test('without the second disk, LVs on its PV fail with MissingPhysicalVolumeError naming it; the rest is listed', async () => {
    const result = await listVolumesOfVm(await open(diskA));
    expect(result.volumes.map((v) => v.id)).toEqual(['disk0/1', 'lvm/vg0/solo']);
    expect(result.failed.map((f) => f.id)).toEqual(['lvm/vg0/root', 'lvm/vg0/data']);
    for (const f of result.failed) {
      expect(f.error).toBeInstanceOf(MissingPhysicalVolumeError);
      const e = f.error as MissingPhysicalVolumeError;
      expect([e.vgName, e.pvName, e.pvUuid, e.device]).toEqual(['vg0', 'pv1', vg.pvs[1].uuid, '/dev/sd1']);
      expect(e.message).toContain(`physical volume pv1 (UUID ${vg.pvs[1].uuid}`);
    }
  });
});

test('PVs, VG metadata and LVs written by the lvm2 tools: linear over two disks and striped', async () => {
  const vg = await realLvmDisks(dir);
  const images: Record<string, Buffer> = {};
  for (const [lv, sizeMiB] of [[vg.lvs[0], 20], [vg.lvs[1], 16]] as const) {
    images[lv.name] = await fs.readFile(await makeExt(path.join(dir, `real-${lv.name}.ext4`), tree, { type: 'ext4', blockSize: 4096, sizeMiB }));
    await writeIntoLv(vg, lv, images[lv.name]);
  }
  const result = await listVolumesOfVm(await open(...vg.pvs.map((p) => p.file)));
  expect(result.failed).toEqual([]);
  expect(result.warnings).toEqual([]);
  expect(result.volumes.map((v) => [v.id, v.disk, v.volume.size, v.volume.type])).toEqual([
    ['lvm/vgt/lin', null, 20 * MiB, 'lvm2-linear'],
    ['lvm/vgt/str', null, 16 * MiB, 'lvm2-striped'],
  ]);
  for (const { volume } of result.volumes) {
    const lv = volume as LogicalVolume;
    expect([lv.vgUuid, lv.guid]).toEqual([vg.uuid, vg.lvs.find((l) => l.name === lv.lvName)!.uuid]);
    expect(sha(await lv.read(0, lv.size))).toBe(sha(images[lv.lvName]));
    const { ['/lost+found']: lostFound, ...ours } = await walkFileSystem(await openFileSystem(lv));
    expect(lostFound).toEqual({ type: 'directory' });
    expect(ours).toEqual(await walkHostTree(tree));
  }
});

describe('unsupported logical volumes and damaged metadata', () => {
  /** A whole-disk PV of `sizeMiB` holding `lvs`; returns the image file. */
  async function singlePvDisk(name: string, lvs: LvSpec[], sizeMiB = 24, peCount = sizeMiB / 4 - 1): Promise<{ file: string; pv: PvSpec; vg: VgSpec }> {
    const file = await blank(`${name}.img`, sizeMiB);
    const pv: PvSpec = { name: 'pv0', uuid: fakeUuid(`${name}-pv`), file, offset: 0, size: sizeMiB * MiB, peCount };
    const vg: VgSpec = { name: `vg_${name}`, uuid: fakeUuid(`${name}-vg`), extentSize: 8192, pvs: [pv], lvs };
    await writePv(pv, vgText(vg));
    return { file, pv, vg };
  }
  const lin = (name: string, extent: number, visible = true): LvSpec => ({ name, uuid: fakeUuid(name), visible, segments: [{ extents: 1, stripes: [['pv0', extent]] }] });

  test('thin pools, thin volumes, RAID, mirrors, snapshots and caches are reported as not supported yet', async () => {
    const { file } = await singlePvDisk('thin', [
      { name: 'pool', uuid: fakeUuid('pool'), segments: [{ extents: 2, type: 'thin-pool', extra: ['metadata = "pool_tmeta"', 'pool = "pool_tdata"', 'transaction_id = 1', 'chunk_size = 128', 'discards = "passdown"', 'zero_new_blocks = 1'] }] },
      lin('pool_tmeta', 0, false),
      { name: 'pool_tdata', uuid: fakeUuid('tdata'), visible: false, segments: [{ extents: 2, stripes: [['pv0', 1]] }] },
      { name: 'thin1', uuid: fakeUuid('thin1'), segments: [{ extents: 3, type: 'thin', extra: ['thin_pool = "pool"', 'transaction_id = 0', 'device_id = 1'] }] },
      { name: 'mirrored', uuid: fakeUuid('mirrored'), segments: [{ extents: 1, type: 'raid1', extra: ['device_count = 2', 'region_size = 1024', 'raids = ["mirrored_rmeta_0", "mirrored_rimage_0"]'] }] },
      { name: 'old_mirror', uuid: fakeUuid('old_mirror'), segments: [{ extents: 1, type: 'mirror', extra: ['mirror_count = 2', 'mirrors = ["m_0", 0, "m_1", 0]'] }] },
      lin('origin', 3),
      lin('snap', 4),
      { name: 'snapshot0', uuid: fakeUuid('snapshot0'), visible: false, segments: [{ extents: 1, type: 'snapshot', extra: ['chunk_size = 8', 'origin = "origin"', 'cow = "snap"'] }] },
      { name: 'cached', uuid: fakeUuid('cached'), segments: [{ extents: 1, type: 'cache', extra: ['cache_pool = "cpool"', 'origin = "cached_corig"'] }] },
    ]);
    const result = await listVolumesOfVm(await open(file));
    expect(result.volumes.map((v) => v.id)).toEqual(['lvm/vg_thin/origin']);
    const failed = Object.fromEntries(result.failed.map((f) => [f.id, f.error]));
    expect(Object.keys(failed)).toEqual(['lvm/vg_thin/pool', 'lvm/vg_thin/thin1', 'lvm/vg_thin/mirrored', 'lvm/vg_thin/old_mirror', 'lvm/vg_thin/snap', 'lvm/vg_thin/cached']);
    for (const e of Object.values(failed)) {
      expect(e).toBeInstanceOf(UnsupportedFileSystemError);
      expect(e.message).toMatch(/not supported yet/);
    }
    expect(failed['lvm/vg_thin/pool'].message).toContain('segment type "thin-pool" (thin provisioning)');
    expect(failed['lvm/vg_thin/thin1'].message).toContain('segment type "thin" (thin provisioning)');
    expect(failed['lvm/vg_thin/mirrored'].message).toContain('(RAID)');
    expect(failed['lvm/vg_thin/old_mirror'].message).toContain('segment type "mirror" (mirroring)');
    expect(failed['lvm/vg_thin/snap'].message).toContain('is a snapshot');
    expect(failed['lvm/vg_thin/cached'].message).toContain('(caching)');
  });

  async function failureOf(file: string): Promise<FileSystemError> {
    const result = await listVolumesOfVm(await open(file));
    expect(result.volumes).toEqual([]);
    expect(result.failed).toHaveLength(1);
    expect(result.failed[0].error).toBeInstanceOf(FileSystemError);
    return result.failed[0].error as FileSystemError;
  }

  test('extents beyond the PV\'s pe_count, or a pe_count beyond the disk, are typed errors', async () => {
    const beyondCount = await singlePvDisk('beyond', [{ name: 'big', uuid: fakeUuid('big'), segments: [{ extents: 4, stripes: [['pv0', 3]] }] }]);
    const e1 = await failureOf(beyondCount.file);
    expect([e1.source, e1.structure]).toEqual(['lvm2', 'VG metadata']);
    expect(e1.message).toContain('needs extents 3..6 of pv0, which has 5');

    const beyondDisk = await singlePvDisk('short', [{ name: 'big', uuid: fakeUuid('big2'), segments: [{ extents: 9, stripes: [['pv0', 0]] }] }], 24, 50);
    const result = await listVolumesOfVm(await open(beyondDisk.file));
    expect(result.failed.map((f) => f.id)).toEqual(['lvm/vg_short/big']);
    expect(result.failed[0].error).toBeInstanceOf(FileSystemError);
    expect(result.failed[0].error.message).toMatch(/beyond the \d+-byte physical volume/);
  });

  test('unterminated, oversized and checksum-damaged metadata are typed errors naming the structure', async () => {
    const { file, pv } = await singlePvDisk('hostile', [lin('lv', 0)]);
    await writePv(pv, '', { raw: Buffer.from('vg_hostile {\n\tid = "abc\n') });
    const e1 = await failureOf(file);
    expect([e1.structure, e1.message]).toEqual(['VG metadata text', expect.stringContaining('unterminated string')]);

    await writePv(pv, '', { raw: Buffer.from(`vg_hostile {\n${'\ta {\n'.repeat(40)}`) });
    expect((await failureOf(file)).message).toMatch(/nested deeper than/);

    await writePv(pv, '', { raw: Buffer.from('x'), claimedSize: 8 * MiB });
    const e3 = await failureOf(file);
    expect([e3.structure, e3.message]).toEqual(['metadata area header', expect.stringMatching(/does not fit/)]);

    await writePv(pv, vgText({ name: 'vg_hostile', uuid: fakeUuid('h'), extentSize: 8192, pvs: [pv], lvs: [] }));
    const h = await fs.open(file, 'r+');
    await h.write(Buffer.from('Z'), 0, 1, 4096 + 600); // inside the metadata text: its CRC no longer matches
    await h.close();
    expect((await failureOf(file)).message).toMatch(/metadata CRC mismatch/);

    const h2 = await fs.open(file, 'r+');
    await h2.write(Buffer.from('Z'), 0, 1, 512 + 40); // inside the PV header: the label CRC no longer matches
    await h2.close();
    const e5 = await failureOf(file);
    expect([e5.structure, e5.message]).toEqual(['PV label', expect.stringMatching(/label CRC mismatch/)]);
  });
});
