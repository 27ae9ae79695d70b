// File-level browsing of a backed-up disk holding LVM2: an MBR disk whose second partition is a physical volume
// (written by test/peers/lvm-images) with an ext4 logical volume (mke2fs -d) in two linear segments out of order,
// backed up into a real repository with the repository API (what `vmkeep repo backup-image` does). The CLI
// (`vmkeep repo files ls|get`, no server) lists the LV with its file system, and listings and file bytes equal
// what debugfs reads from the LV bytes, reassembled here from the disk by hand.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCliInProcess } from './peers/cli';
import { seededBytes } from './peers/disk-images';
import { makeExt, MiB, placeImage, run, writeMbr } from './peers/fs-images';
import { fakeUuid, type LvSpec, PE_START, type PvSpec, type VgSpec, vgText, writeIntoLv, writePv } from './peers/lvm-images';
import { imagePoint } from './peers/repository-points';

const EXTENT_SECTORS = 8192; // 4 MiB
const PV_START_SECTOR = 10240; // partition 2 at 5 MiB

let dir: string;
let repoPath: string;
let pointId: string;
let lvImage: string;

const cli = (args: string[]) => runCliInProcess(args, { home: dir });

/** The LV's bytes read back from the disk file by its segments (linear: PV data start + extent × extent size). */
async function lvBytesFromDisk(disk: string, vg: VgSpec, lv: LvSpec): Promise<Buffer> {
  const handle = await fs.open(disk, 'r');
  try {
    const parts: Buffer[] = [];
    for (const seg of lv.segments) {
      const [pvName, firstExtent] = seg.stripes![0];
      const pv = vg.pvs.find((p) => p.name === pvName)!;
      const length = seg.extents * EXTENT_SECTORS * 512;
      const part = Buffer.alloc(length);
      await handle.read(part, 0, length, pv.offset + PE_START * 512 + firstExtent * EXTENT_SECTORS * 512);
      parts.push(part);
    }
    return Buffer.concat(parts);
  } finally {
    await handle.close();
  }
}

/** `debugfs -R "ls -p DIR"`: name → { type, size } (". .." left out). */
async function debugfsList(image: string, dirPath: string): Promise<Record<string, { type: string; size: number }>> {
  const out = await run('debugfs', ['-R', `ls -p ${dirPath}`, image]);
  const entries: Record<string, { type: string; size: number }> = {};
  for (const line of out.split('\n')) {
    // /inode/mode/uid/gid/name/size/
    const m = /^\/(\d+)\/(\d+)\/\d+\/\d+\/(.*)\/(\d*)\/$/.exec(line.trim());
    if (!m || m[3] === '.' || m[3] === '..') continue;
    const mode = parseInt(m[2], 8);
    const type = (mode & 0o170000) === 0o040000 ? 'directory' : (mode & 0o170000) === 0o120000 ? 'symlink' : 'file';
    entries[m[3]] = { type, size: type === 'file' ? Number(m[4]) : 0 };
  }
  return entries;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-files-lvm-'));
  const tree = path.join(dir, 'tree');
  await fs.mkdir(path.join(tree, 'home', 'alice'), { recursive: true });
  await fs.writeFile(path.join(tree, 'home', 'alice', 'notes.txt'), 'on a logical volume\n');
  await fs.writeFile(path.join(tree, 'home', 'alice', 'data.bin'), seededBytes('files-lvm', 'data', 2 * MiB + 123));
  await fs.writeFile(path.join(tree, 'motd'), 'hello from LVM\n');
  await fs.symlink('home/alice/notes.txt', path.join(tree, 'notes'));

  // 64 MiB disk: partition 1 (0x83, 4 MiB, ext2), partition 2 (0x8e) the PV with 13 extents of 4 MiB.
  const disk = path.join(dir, 'disk.raw');
  await fs.writeFile(disk, '');
  await fs.truncate(disk, 64 * MiB);
  const totalSectors = (64 * MiB) / 512;
  await writeMbr(disk, [
    { type: 0x83, start: 2048, sectors: 8192 },
    { type: 0x8e, start: PV_START_SECTOR, sectors: totalSectors - PV_START_SECTOR },
  ]);
  // A small ext2 /boot in partition 1, so the point has two readable volumes.
  await fs.mkdir(path.join(dir, 'boot'));
  await fs.writeFile(path.join(dir, 'boot', 'vmlinuz'), 'kernel\n');
  await placeImage(disk, 2048 * 512, await makeExt(path.join(dir, 'boot.ext2'), path.join(dir, 'boot'), { type: 'ext2', sizeMiB: 4 }));
  const pv: PvSpec = { name: 'pv0', uuid: fakeUuid('files-lvm-pv0'), file: disk, offset: PV_START_SECTOR * 512, size: (totalSectors - PV_START_SECTOR) * 512, peCount: 13 };
  // 16 MiB LV: extents 8-9 first, then 1-2 (out of order on the PV, as after an lvextend).
  const lv: LvSpec = { name: 'root', uuid: fakeUuid('files-lvm-root'), segments: [{ extents: 2, stripes: [['pv0', 8]] }, { extents: 2, stripes: [['pv0', 1]] }] };
  const vg: VgSpec = { name: 'vgdata', uuid: fakeUuid('files-lvm-vg'), extentSize: EXTENT_SECTORS, pvs: [pv], lvs: [lv] };
  await writePv(pv, vgText(vg));
  const image = await makeExt(path.join(dir, 'root.ext4'), tree, { type: 'ext4', sizeMiB: 16 });
  await writeIntoLv(vg, lv, await fs.readFile(image));
  await fs.rm(image);

  lvImage = path.join(dir, 'lv-from-disk.img');
  await fs.writeFile(lvImage, await lvBytesFromDisk(disk, vg, lv));

  repoPath = path.join(dir, 'repo');
  pointId = await imagePoint(repoPath, disk, { vm: 'lvm-vm' }, 'disk-0');
}, 60_000);

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe('browsing an LVM2 logical volume in a restore point', () => {
  it('lists the LV with its ext4 file system next to the partitions', async () => {
    const r = await cli(['repo', 'files', 'ls', pointId, '--repo', repoPath, '--json']);
    expect(r.stderr).toBe('');
    const volumes = JSON.parse(r.stdout) as { volume: number; id: string; fileSystem: { type: string; label: string } | null; error: string | null }[];
    const lv = volumes.find((v) => v.id === 'lvm/vgdata/root');
    expect(lv).toMatchObject({ fileSystem: { type: 'ext4', label: 'vmkeep-ext4' }, error: null });
    expect(volumes.find((v) => v.id === 'disk0/1')).toMatchObject({ fileSystem: { type: 'ext2' } });
    expect(volumes.map((v) => v.id)).toEqual(expect.arrayContaining(['disk0/1', 'lvm/vgdata/root']));
    const human = await cli(['repo', 'files', 'ls', pointId, '--repo', repoPath]);
    expect(human.stdout).toMatch(/lvm\/vgdata\/root.*ext4.*vmkeep-ext4.*clean/);
  });

  it('ls of folders on the LV equals debugfs on the LV bytes', async () => {
    const volumes = JSON.parse((await cli(['repo', 'files', 'ls', pointId, '--repo', repoPath, '--json'])).stdout) as { volume: number; id: string }[];
    const vol = String(volumes.find((v) => v.id === 'lvm/vgdata/root')!.volume);
    for (const folder of ['/', '/home/alice']) {
      const r = await cli(['repo', 'files', 'ls', pointId, folder, '--repo', repoPath, '--volume', vol, '--json']);
      expect(r.code).toBe(0);
      const listed = (JSON.parse(r.stdout) as { entries: { name: string; type: string; size: number }[] }).entries;
      const ours = Object.fromEntries(listed.map((e) => [e.name, { type: e.type, size: e.type === 'file' ? e.size : 0 }]));
      expect(ours).toEqual(await debugfsList(lvImage, folder));
    }
  });

  it('get of files on the LV equals debugfs dump of the LV bytes', async () => {
    const volumes = JSON.parse((await cli(['repo', 'files', 'ls', pointId, '--repo', repoPath, '--json'])).stdout) as { volume: number; id: string }[];
    const vol = String(volumes.find((v) => v.id === 'lvm/vgdata/root')!.volume);
    for (const file of ['/home/alice/data.bin', '/motd']) {
      const ours = path.join(dir, `get-${path.basename(file)}`);
      const theirs = path.join(dir, `dump-${path.basename(file)}`);
      const r = await cli(['repo', 'files', 'get', pointId, file, '--repo', repoPath, '--volume', vol, '--output', ours]);
      expect(r.code).toBe(0);
      await run('debugfs', ['-R', `dump ${file} ${theirs}`, lvImage]);
      const [a, b] = await Promise.all([fs.readFile(ours), fs.readFile(theirs)]);
      expect(a.length).toBeGreaterThan(0);
      expect(a.equals(b)).toBe(true);
    }
  });
});
