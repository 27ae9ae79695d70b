/**
 * Real file-system and partitioned-disk images for the libs/filesystems suites, made without kernel mounts:
 * `mke2fs -d` (+ `e2fsck -fyD`), `mkfs.fat` + `mcopy -s`, `sgdisk`, and hand-written MBR/EBR chains and
 * 4096-byte-sector GPTs (no tool here writes those into a plain file) that `mmls` then reads back. Also the
 * tree walkers the suites compare with: our reader's view and a host folder's view (as extracted by debugfs or
 * mcopy), reduced to {type, size, sha256 | link target} per path.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { FileSystem } from '@vmkeep/filesystems';
import { crc32 } from '@vmkeep/filesystems';
import { seededBytes } from './disk-images';

const execFileAsync = promisify(execFile);
export const MiB = 1024 * 1024;

/** Runs a tool with a UTF-8 locale; `okCodes` lists exit codes that are not failures (e2fsck uses 1 and 2). */
export async function run(cmd: string, args: string[], okCodes: number[] = [0]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { env: { ...process.env, LC_ALL: 'C.UTF-8' }, maxBuffer: 64 * MiB, encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code === 'number' && okCodes.includes(err.code)) return err.stdout ?? '';
    throw new Error(`${cmd} ${args.join(' ')} failed (${err.code}): ${err.stderr ?? ''}`, { cause: e });
  }
}

async function write(file: string, data: Buffer | string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, data);
}

/** Writes `data` at `offset` of `file` (creating it), leaving everything else a hole. */
async function writeAt(file: string, offset: number, data: Buffer): Promise<void> {
  const h = await fs.open(file, 'a+');
  await h.close();
  const w = await fs.open(file, 'r+');
  try {
    await w.write(data, 0, data.length, offset);
  } finally {
    await w.close();
  }
}

/**
 * The tree given to mke2fs -d: small, empty, multi-MiB and sparse files, a file with 40 separate data islands
 * (an extent tree of depth ≥ 1), fast and slow symlinks, deep folders, a 1200-entry folder (htree after
 * e2fsck -D), and non-ASCII names.
 */
export async function buildExtTree(dir: string): Promise<void> {
  await write(path.join(dir, 'hello.txt'), 'hello, world\n');
  await write(path.join(dir, 'empty'), '');
  await write(path.join(dir, 'tiny-40'), seededBytes('ext', 'tiny', 40));
  await write(path.join(dir, 'small-100'), seededBytes('ext', 'small', 100));
  await write(path.join(dir, 'medium.bin'), seededBytes('ext', 'medium', 70_000));
  await write(path.join(dir, 'big.bin'), seededBytes('ext', 'big', 3 * MiB + 17));
  const sparse = path.join(dir, 'sparse.img');
  await fs.writeFile(sparse, '');
  await fs.truncate(sparse, 8 * MiB);
  await writeAt(sparse, MiB, seededBytes('ext', 'sparse-1', 5000));
  await writeAt(sparse, 6 * MiB + 123, seededBytes('ext', 'sparse-2', 9000));
  const islands = path.join(dir, 'islands.bin');
  await fs.writeFile(islands, '');
  for (let i = 0; i < 40; i++) await writeAt(islands, i * 64 * 1024, seededBytes('ext', `island-${i}`, 4096));
  await fs.truncate(islands, 40 * 64 * 1024 + 4096);
  await fs.symlink('hello.txt', path.join(dir, 'link-fast'));
  await fs.symlink(`deep/${'x'.repeat(90)}/target-that-does-not-exist`, path.join(dir, 'link-slow'));
  await write(path.join(dir, 'deep', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'deep.txt'), 'at the bottom\n');
  await fs.symlink('../hello.txt', path.join(dir, 'deep', 'link-up'));
  await write(path.join(dir, 'ünïcødé', 'файл — ✓.txt'), 'unicode\n');
  await write(path.join(dir, 'name with spaces.txt'), 'spaces\n');
  for (let i = 0; i < 1200; i++) await write(path.join(dir, 'many', `entry-${String(i).padStart(5, '0')}.txt`), `${i}\n`);
  await fs.mkdir(path.join(dir, 'empty-dir'));
}

/** The tree copied into FAT images: 8.3 and long names, a multi-cluster file, a 300-entry folder, deep folders. */
export async function buildFatTree(dir: string): Promise<void> {
  await write(path.join(dir, 'README.TXT'), 'upper-case 8.3 name\n');
  await write(path.join(dir, 'lower.txt'), 'lower-case 8.3 name\n');
  await write(path.join(dir, 'A long file name with spaces.text'), 'long name\n');
  await write(path.join(dir, 'ünïcødé-файл.txt'), 'unicode\n');
  await write(path.join(dir, 'empty.dat'), '');
  await write(path.join(dir, 'big.bin'), seededBytes('fat', 'big', 1536 * 1024 + 5));
  await write(path.join(dir, 'deep', 'a', 'b', 'c', 'd', 'e', 'deep.txt'), 'deep\n');
  for (let i = 0; i < 300; i++) await write(path.join(dir, 'many', `file-number-${String(i).padStart(4, '0')}.txt`), `${i}\n`);
}

export interface ExtOptions {
  type: 'ext2' | 'ext3' | 'ext4';
  blockSize?: number;
  features?: string;
  sizeMiB: number;
}

/** mke2fs -d TREE, then e2fsck -fyD (indexes large folders). */
export async function makeExt(file: string, tree: string, o: ExtOptions): Promise<string> {
  const args = ['-q', '-F', '-t', o.type, '-L', `vmkeep-${o.type}`, '-U', '0b6f3e52-8a3c-4d1e-9f00-1234567890ab', '-d', tree];
  if (o.blockSize) args.push('-b', String(o.blockSize));
  if (o.features) args.push('-O', o.features);
  await run('mke2fs', [...args, file, `${o.sizeMiB}M`]);
  await run('e2fsck', ['-fyD', file], [0, 1, 2]);
  return file;
}

/** mkfs.fat -F BITS then mcopy -s of the tree's contents. */
export async function makeFat(file: string, tree: string, bits: 12 | 16 | 32, sizeMiB: number, sectorsPerCluster?: number): Promise<string> {
  const args = ['-C', '-F', String(bits), '-n', `VMKEEP${bits}`, '-i', '1234abcd'];
  if (sectorsPerCluster) args.push('-s', String(sectorsPerCluster));
  await fs.rm(file, { force: true });
  await run('mkfs.fat', [...args, file, String(sizeMiB * 1024)]);
  const names = (await fs.readdir(tree)).map((n) => path.join(tree, n));
  await run('mcopy', ['-s', '-Q', '-i', file, ...names, '::/']);
  return file;
}

/** Copies `image` into `disk` at byte `offset` (the disk file already has its size). */
export async function placeImage(disk: string, offset: number, image: string): Promise<void> {
  await writeAt(disk, offset, await fs.readFile(image));
}

/** Writes an MBR with the given primary entries and, for an extended entry, an EBR chain of logical partitions. */
export async function writeMbr(
  disk: string,
  primaries: { type: number; start: number; sectors: number }[],
  logicals: { type: number; start: number; sectors: number }[] = [],
): Promise<void> {
  const entry = (buf: Buffer, i: number, e: { type: number; start: number; sectors: number }) => {
    const at = 446 + i * 16;
    buf[at] = 0;
    buf[at + 4] = e.type;
    buf.writeUInt32LE(e.start, at + 8);
    buf.writeUInt32LE(e.sectors, at + 12);
  };
  const mbr = Buffer.alloc(512);
  primaries.forEach((p, i) => entry(mbr, i, p));
  mbr.writeUInt16LE(0xaa55, 510);
  await writeAt(disk, 0, mbr);
  const ext = primaries.find((p) => p.type === 0x05 || p.type === 0x0f);
  if (!ext) return;
  // Each logical partition gets an EBR one MiB before its data; the link is relative to the extended start.
  for (let i = 0; i < logicals.length; i++) {
    const ebrSector = logicals[i].start - 2048;
    const ebr = Buffer.alloc(512);
    entry(ebr, 0, { type: logicals[i].type, start: 2048, sectors: logicals[i].sectors });
    const next = logicals[i + 1];
    if (next) entry(ebr, 1, { type: 0x05, start: next.start - 2048 - ext.start, sectors: next.sectors + 2048 });
    ebr.writeUInt16LE(0xaa55, 510);
    await writeAt(disk, ebrSector * 512, ebr);
  }
}

function guidBytes(text: string): Buffer {
  const h = text.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** Writes a GPT (protective MBR, primary and backup headers and arrays) for a given logical sector size. */
export async function writeGpt(
  disk: string,
  diskSize: number,
  sectorSize: number,
  parts: { first: number; last: number; type: string; guid: string; name: string }[],
): Promise<void> {
  const lastLba = diskSize / sectorSize - 1;
  const entrySectors = Math.ceil((128 * 128) / sectorSize);
  const entries = Buffer.alloc(128 * 128);
  parts.forEach((p, i) => {
    const at = i * 128;
    guidBytes(p.type).copy(entries, at);
    guidBytes(p.guid).copy(entries, at + 16);
    entries.writeBigUInt64LE(BigInt(p.first), at + 32);
    entries.writeBigUInt64LE(BigInt(p.last), at + 40);
    entries.write(p.name, at + 56, 'utf16le');
  });
  const header = (my: number, alt: number, entryLba: number) => {
    const h = Buffer.alloc(sectorSize);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(BigInt(my), 24);
    h.writeBigUInt64LE(BigInt(alt), 32);
    h.writeBigUInt64LE(BigInt(2 + entrySectors), 40);
    h.writeBigUInt64LE(BigInt(lastLba - 1 - entrySectors), 48);
    guidBytes('5e0c1d2a-0000-4000-8000-00000000d15c').copy(h, 56);
    h.writeBigUInt64LE(BigInt(entryLba), 72);
    h.writeUInt32LE(128, 80);
    h.writeUInt32LE(128, 84);
    h.writeUInt32LE(crc32(entries), 88);
    h.writeUInt32LE(crc32(h.subarray(0, 92)), 16);
    return h;
  };
  const mbr = Buffer.alloc(512);
  mbr[446 + 4] = 0xee;
  mbr.writeUInt32LE(1, 446 + 8);
  mbr.writeUInt32LE(Math.min(lastLba, 0xffffffff), 446 + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  await writeAt(disk, 0, mbr);
  await writeAt(disk, sectorSize, header(1, lastLba, 2));
  await writeAt(disk, 2 * sectorSize, entries);
  await writeAt(disk, (lastLba - entrySectors) * sectorSize, entries);
  await writeAt(disk, lastLba * sectorSize, header(lastLba, 1, lastLba - entrySectors));
}

export interface TreeEntry {
  type: string;
  size?: number;
  sha256?: string;
  target?: string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Our reader's view of the whole tree (pages of 97 entries, so paging is exercised), keyed by path. */
export async function walkFileSystem(fsys: FileSystem, root = '/'): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const visit = async (dir: string): Promise<void> => {
    let offset: number | null = 0;
    while (offset !== null) {
      const page = await fsys.readdir(dir, { offset, limit: 97 });
      for (const e of page.entries) {
        const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
        if (e.stat.type === 'directory') {
          out[p] = { type: 'directory' };
          await visit(p);
        } else if (e.stat.type === 'symlink') {
          out[p] = { type: 'symlink', target: await fsys.readlink(p) };
        } else {
          const file = await fsys.open(p);
          const hash = createHash('sha256');
          for (let at = 0; at < file.size; at += 4 * MiB) hash.update(await file.read(at, Math.min(4 * MiB, file.size - at)));
          out[p] = { type: e.stat.type, size: file.size, sha256: hash.digest('hex') };
        }
      }
      offset = page.nextOffset;
    }
  };
  await visit(root);
  return out;
}

/** A host folder's view in the same shape (symlinks not followed). */
export async function walkHostTree(dir: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const visit = async (rel: string): Promise<void> => {
    for (const name of await fs.readdir(path.join(dir, rel))) {
      const p = `${rel}/${name}`;
      const full = path.join(dir, p);
      const st = await fs.lstat(full);
      if (st.isDirectory()) {
        out[p] = { type: 'directory' };
        await visit(p);
      } else if (st.isSymbolicLink()) {
        out[p] = { type: 'symlink', target: await fs.readlink(full) };
      } else {
        out[p] = { type: 'file', size: st.size, sha256: sha(await fs.readFile(full)) };
      }
    }
  };
  await visit('');
  return out;
}

/** `fls -r -p -u` of an image (offset in sectors): path → 'd' | 'r' | 'l' | ..., virtual $-entries dropped. */
export async function flsListing(image: string, sectorOffset = 0, extra: string[] = []): Promise<Record<string, string>> {
  const text = await run('fls', ['-r', '-p', '-u', '-o', String(sectorOffset), ...extra, image]);
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S)\/(\S)\s+\*?\s*[\d-]+(?:\(realloc\))?:\t(.*)$/.exec(line);
    if (!m) continue;
    const name = m[3];
    if (name.endsWith('(Volume Label Entry)') || name.split('/').some((part) => part.startsWith('$') || part === 'lost+found')) continue;
    out[`/${name}`] = m[2];
  }
  return out;
}

/** A small tree for fuzz seeds: a few files, a 60-entry folder, fast and slow symlinks, a sparse file with 8 islands. */
export async function seededWrite(dir: string): Promise<void> {
  await write(path.join(dir, 'hello.txt'), 'hello\n');
  await write(path.join(dir, 'small-100'), seededBytes('fuzz', 'small', 100));
  await write(path.join(dir, 'file.bin'), seededBytes('fuzz', 'file', 300_000));
  await write(path.join(dir, 'sub', 'deeper', 'leaf.txt'), 'leaf\n');
  for (let i = 0; i < 60; i++) await write(path.join(dir, 'many', `n${i}`), `${i}`);
  await fs.symlink('hello.txt', path.join(dir, 'fast-link'));
  await fs.symlink('y'.repeat(120), path.join(dir, 'slow-link'));
  const islands = path.join(dir, 'islands');
  await fs.writeFile(islands, '');
  for (let i = 0; i < 8; i++) await writeAt(islands, i * 16384, seededBytes('fuzz', `island-${i}`, 1024));
}

/**
 * An exFAT image: `mkfs.exfat`, then the tree written in by this helper (no tool here copies files into exFAT
 * without a mount). Files alternate between contiguous (NoFatChain) and FAT-chained allocations laid out
 * backwards, folders grow cluster by cluster. The result is checked by `fsck.exfat -n` before it is returned.
 */
export async function makeExfat(file: string, tree: string, sizeMiB: number): Promise<string> {
  await fs.rm(file, { force: true });
  await fs.writeFile(file, '');
  await fs.truncate(file, sizeMiB * MiB);
  await run('mkfs.exfat', ['-L', 'VMKEEPX', file]);
  const img = await fs.readFile(file);
  const bps = 2 ** img[108];
  const cs = bps * 2 ** img[109];
  const fatOff = img.readUInt32LE(80) * bps;
  const heap = img.readUInt32LE(88) * bps;
  const count = img.readUInt32LE(92);
  const at = (c: number) => heap + (c - 2) * cs;
  const root = img.readUInt32LE(96);
  let bitmapAt = -1;
  for (let i = 0; i < cs; i += 32) if (img[at(root) + i] === 0x81) bitmapAt = at(img.readUInt32LE(at(root) + i + 20));
  const used = (c: number) => (img[bitmapAt + ((c - 2) >> 3)] >> ((c - 2) & 7)) & 1;
  const take = (c: number) => (img[bitmapAt + ((c - 2) >> 3)] |= 1 << ((c - 2) & 7));
  const setFat = (c: number, v: number) => img.writeUInt32LE(v >>> 0, fatOff + c * 4);
  const alloc = (n: number, contiguous: boolean): number[] => {
    const out: number[] = [];
    if (contiguous) {
      for (let start = 2; start + n - 1 <= count + 1 && out.length === 0; start++) {
        let ok = true;
        for (let c = start; c < start + n && ok; c++) ok = !used(c);
        if (ok) for (let c = start; c < start + n; c++) out.push(c);
      }
    } else {
      for (let c = count + 1; c >= 2 && out.length < n; c--) if (!used(c)) out.push(c);
    }
    if (out.length < n) throw new Error('exFAT image full');
    out.forEach(take);
    if (!contiguous) out.forEach((c, i) => setFat(c, i + 1 < out.length ? out[i + 1] : 0xffffffff));
    return out;
  };
  const checksum = (set: Buffer) => {
    let sum = 0;
    for (let i = 0; i < set.length; i++) if (i !== 2 && i !== 3) sum = ((((sum & 1) << 15) | (sum >>> 1)) + set[i]) & 0xffff;
    return sum;
  };
  const nameHash = (name: string) => {
    let h = 0;
    for (const unit of Buffer.from(name.toUpperCase(), 'utf16le')) h = ((((h & 1) << 15) | (h >>> 1)) + unit) & 0xffff;
    return h;
  };
  interface Dir { clusters: number[]; used: number; setAt: number[] }
  const slotAt = (dir: Dir, slot: number) => at(dir.clusters[Math.floor((slot * 32) / cs)]) + ((slot * 32) % cs);
  const rootDir: Dir = { clusters: [root], used: 0, setAt: [] };
  while (img[slotAt(rootDir, rootDir.used)] !== 0) rootDir.used++;
  const stamp = ((2024 - 1980) << 25) | (5 << 21) | (6 << 16) | (7 << 11) | (8 << 5) | 5;
  const addSet = (dir: Dir, name: string, attr: number, first: number, size: number, contiguous: boolean) => {
    const units = Buffer.from(name, 'utf16le');
    const nameEntries = Math.ceil(name.length / 15);
    const set = Buffer.alloc(32 * (2 + nameEntries));
    set[0] = 0x85;
    set[1] = 1 + nameEntries;
    set.writeUInt16LE(attr, 4);
    for (const off of [8, 12, 16]) set.writeUInt32LE(stamp, off);
    set[21] = 50;
    set[23] = 0x80 | 4; // UTC+1
    set[32] = 0xc0;
    set[33] = size > 0 || attr & 0x10 ? 1 | (contiguous ? 2 : 0) : 0;
    set[35] = name.length;
    set.writeUInt16LE(nameHash(name), 36);
    set.writeBigUInt64LE(BigInt(size), 40);
    set.writeUInt32LE(first, 52);
    set.writeBigUInt64LE(BigInt(size), 56);
    for (let i = 0; i < nameEntries; i++) {
      set[64 + i * 32] = 0xc1;
      units.copy(set, 64 + i * 32 + 2, i * 30, Math.min(units.length, (i + 1) * 30));
    }
    set.writeUInt16LE(checksum(set), 2);
    const slots = set.length / 32;
    while (dir.used + slots > (dir.clusters.length * cs) / 32) {
      const [c] = alloc(1, false);
      img.fill(0, at(c), at(c) + cs);
      setFat(dir.clusters[dir.clusters.length - 1], c);
      dir.clusters.push(c);
      if (dir.setAt.length) {
        // Grow the folder's own stream extension (DataLength, ValidDataLength) and refresh its set checksum.
        const parts = dir.setAt.map((p) => img.subarray(p, p + 32));
        for (const off of [8, 24]) parts[1].writeBigUInt64LE(BigInt(dir.clusters.length * cs), off);
        const whole = Buffer.concat(parts);
        parts[0].writeUInt16LE(checksum(whole), 2);
      }
    }
    const positions: number[] = [];
    for (let i = 0; i < slots; i++) {
      const p = slotAt(dir, dir.used + i);
      set.copy(img, p, i * 32, i * 32 + 32);
      positions.push(p);
    }
    dir.used += slots;
    return positions;
  };
  let fileNo = 0;
  const visit = async (host: string, dir: Dir): Promise<void> => {
    for (const name of (await fs.readdir(host)).sort()) {
      const full = path.join(host, name);
      const st = await fs.lstat(full);
      if (st.isDirectory()) {
        // Folders are FAT-chained so they can grow.
        const [c] = alloc(1, false);
        img.fill(0, at(c), at(c) + cs);
        const child: Dir = { clusters: [c], used: 0, setAt: [] };
        child.setAt = addSet(dir, name, 0x10, c, cs, false);
        await visit(full, child);
      } else if (st.isFile()) {
        const data = await fs.readFile(full);
        const contiguous = fileNo++ % 2 === 0;
        const clusters = data.length ? alloc(Math.ceil(data.length / cs), contiguous) : [];
        clusters.forEach((c, i) => {
          img.fill(0, at(c), at(c) + cs);
          data.copy(img, at(c), i * cs, Math.min(data.length, (i + 1) * cs));
        });
        addSet(dir, name, 0x20, clusters[0] ?? 0, data.length, contiguous);
      }
    }
  };
  await visit(tree, rootDir);
  // Both copies of the FAT are not kept (NumberOfFats 1 here); the boot checksum does not cover what changed.
  await fs.writeFile(file, img);
  await run('fsck.exfat', ['-n', file]);
  return file;
}
