/**
 * Real XFS v5 images for the XFS suites, made without kernel mounts: a host tree is written, turned into an
 * `mkfs.xfs -p` protofile, and given to mkfs.xfs. Folders are sized to land in every directory form (short form,
 * block, leaf, node, and a B+tree fork: files with data created between a big folder's blocks fragment it).
 * `xfs_db` is the tool we did not write that the suites compare with, and (in expert mode) the way to make
 * states mkfs cannot: unwritten extents, holes, a dirty superblock.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { crc32c } from '@vmkeep/disk-formats';
import { seededBytes } from './disk-images';
import { MiB } from './fs-images';

const execFileAsync = promisify(execFile);

/** mkfs.xfs refuses file systems under 300 MB unless it believes it runs under fstests; small images keep tests fast. */
const SMALL_FS_ENV = { TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' };

/** Runs an xfsprogs tool (small file systems allowed). */
export async function xfsTool(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { env: { ...process.env, ...SMALL_FS_ENV, LC_ALL: 'C.UTF-8' }, maxBuffer: 64 * MiB, encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed (${err.code}): ${err.stderr ?? ''}`, { cause: e });
  }
}

async function write(file: string, data: Buffer | string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, data);
}

/** Folders and the directory form each is meant to take. */
export const DIR_FORMS = { '/sf': 'short form', '/block': 'block', '/leaf': 'leaf', '/node': 'node', '/frag': 'B+tree fork' } as const;
export const REMOTE_LINK_TARGET = `${'remote/'.repeat(100)}target`;

/** The host tree the images are made from (protofile names cannot hold white space). */
export async function buildXfsTree(dir: string): Promise<void> {
  await write(path.join(dir, 'hello.txt'), 'hello, xfs\n');
  await write(path.join(dir, 'empty'), '');
  await write(path.join(dir, 'tiny-40'), seededBytes('xfs', 'tiny', 40));
  await write(path.join(dir, 'medium.bin'), seededBytes('xfs', 'medium', 70_000));
  await write(path.join(dir, 'big.bin'), seededBytes('xfs', 'big', 3 * MiB + 17));
  await write(path.join(dir, 'prealloc.bin'), seededBytes('xfs', 'prealloc', 5 * 4096));
  await write(path.join(dir, 'holey.bin'), seededBytes('xfs', 'holey', 4 * 4096));
  await write(path.join(dir, 'deep', 'a', 'b', 'c', 'd', 'e', 'f', 'deep.txt'), 'at the bottom\n');
  await fs.symlink('../hello.txt', path.join(dir, 'deep', 'link-up'));
  await write(path.join(dir, 'ünïcødé', 'файл-✓.txt'), 'unicode\n');
  await fs.symlink('hello.txt', path.join(dir, 'link-local'));
  await fs.symlink(REMOTE_LINK_TARGET, path.join(dir, 'link-remote'));
  for (let i = 0; i < 4; i++) await write(path.join(dir, 'sf', `s${i}`), `${i}\n`);
  for (let i = 0; i < 40; i++) await write(path.join(dir, 'block', `block-entry-${i}`), `${i}\n`);
  for (let i = 0; i < 400; i++) await write(path.join(dir, 'leaf', `leaf-entry-${String(i).padStart(4, '0')}`), '');
  for (let i = 0; i < 1500; i++) await write(path.join(dir, 'node', `node-entry-${String(i).padStart(5, '0')}`), '');
  for (let i = 0; i < 1200; i++) {
    await write(path.join(dir, 'frag', `fragmenting-entry-with-a-long-name-to-fill-blocks-${String(i).padStart(5, '0')}`), seededBytes('xfs', `frag-${i}`, 3000));
  }
  await fs.mkdir(path.join(dir, 'empty-dir'));
}

/** Writes the protofile for `tree`; `extra` lines are added to the root folder (devices, FIFOs). */
export async function writeProtofile(tree: string, file: string, extra: string[] = []): Promise<Map<string, string>> {
  const lines = ['vmkeep-boot', '0 0', 'd--755 0 0'];
  const links = new Map<string, string>();
  const perm = (mode: number) => (mode & 0o777).toString(8).padStart(3, '0');
  const visit = async (dir: string): Promise<void> => {
    for (const name of (await fs.readdir(dir)).sort()) {
      if (/\s/.test(name)) throw new Error(`protofile names cannot hold white space: ${name}`);
      const full = path.join(dir, name);
      const st = await fs.lstat(full);
      if (st.isDirectory()) {
        lines.push(`${name} d--${perm(st.mode)} 0 0`);
        await visit(full);
        lines.push('$');
      } else if (st.isSymbolicLink()) {
        const target = await fs.readlink(full);
        links.set(`/${path.relative(tree, full).split(path.sep).join('/')}`, target);
        lines.push(`${name} l--777 0 0 ${target}`);
      } else {
        lines.push(`${name} ---${name === 'hello.txt' ? '640' : perm(st.mode)} ${name === 'hello.txt' ? '1000 1001' : '0 0'} ${full}`);
      }
    }
  };
  await visit(tree);
  lines.push(...extra, '$', '');
  await fs.writeFile(file, lines.join('\n'));
  return links;
}

export interface XfsOptions {
  sizeMiB: number;
  blockSize?: number;
  /** Directory block size in bytes (mkfs -n size). */
  dirBlockSize?: number;
  label?: string;
  /** More mkfs.xfs arguments, for example ['-i', 'nrext64=1']. */
  extraArgs?: string[];
}

export const XFS_UUID = '5d0e7a1c-3b2f-4e6a-9c8d-0123456789ab';

/** mkfs.xfs -p PROTOFILE of `tree` into a file image of `sizeMiB` with 16 MiB AGs. */
export async function makeXfs(file: string, tree: string, o: XfsOptions): Promise<string> {
  const proto = `${file}.proto`;
  const remoteLinks = await writeProtofile(tree, proto, ['pipe p--644 0 0', 'null c--666 0 0 1 3']);
  const args = ['-q', '-f', '-p', proto, '-L', o.label ?? 'vmkeep-xfs', '-m', `uuid=${XFS_UUID}`, '-d', `file,name=${file},size=${o.sizeMiB}m,agsize=16m`];
  if (o.blockSize) args.push('-b', `size=${o.blockSize}`);
  if (o.dirBlockSize) args.push('-n', `size=${o.dirBlockSize}`);
  args.push(...(o.extraArgs ?? []));
  await xfsTool('mkfs.xfs', args);
  await addSymlinkHeaders(file, remoteLinks);
  return file;
}

/**
 * mkfs.xfs 6.1 writes the target of a remote symlink from a protofile without the v5 block header (XSLM, CRC,
 * owner), which xfs_db then reports as a CRC error and the kernel refuses. Writes the header the kernel would
 * have written, so the images are valid v5 file systems (the suite checks xfs_db agrees).
 */
async function addSymlinkHeaders(image: string, links: Map<string, string>): Promise<void> {
  const geometry = await xfsDb(image, ['sb 0', 'print blocksize agblocks agblklog uuid']);
  const field = (name: string) => new RegExp(`^${name} = (\\S+)$`, 'm').exec(geometry)![1];
  const [bs, agblocks, agblklog] = [Number(field('blocksize')), Number(field('agblocks')), Number(field('agblklog'))];
  const uuid = Buffer.from(field('uuid').replace(/-/g, ''), 'hex');
  const h = await fs.open(image, 'r+');
  try {
    for (const [linkPath, target] of links) {
      const text = await xfsDb(image, [`path ${linkPath}`, 'print core.format v3.inumber', 'bmap']);
      if (!/core.format = 2 /.test(text)) continue;
      const ino = BigInt(/v3.inumber = (\d+)/.exec(text)![1]);
      const fsb = Number(/startblock (\d+)/.exec(text)![1]);
      const linear = Math.floor(fsb / 2 ** agblklog) * agblocks + (fsb % 2 ** agblklog);
      const block = Buffer.alloc(bs);
      const data = Buffer.from(target);
      if (56 + data.length > bs) throw new Error(`symlink target of ${linkPath} does not fit one block`);
      const current = Buffer.alloc(4);
      await h.read(current, 0, 4, linear * bs);
      if (current.readUInt32BE(0) === 0x58534c4d) continue;
      block.writeUInt32BE(0x58534c4d, 0);
      block.writeUInt32BE(0, 4);
      block.writeUInt32BE(data.length, 8);
      uuid.copy(block, 16);
      block.writeBigUInt64BE(ino, 32);
      block.writeBigUInt64BE(BigInt((linear * bs) / 512), 40);
      data.copy(block, 56);
      block.writeUInt32LE(crc32c(block), 12);
      await h.write(block, 0, bs, linear * bs);
    }
  } finally {
    await h.close();
  }
}

/** `xfs_db -r` commands against an image. */
export function xfsDb(image: string, commands: string[], expert = false): Promise<string> {
  return xfsTool('xfs_db', [expert ? '-x' : '-r', ...commands.flatMap((c) => ['-c', c]), image]);
}

/** Names in a folder as `xfs_db ls` prints them ("." and ".." dropped), with their inode numbers. */
export async function xfsDbList(image: string, dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await xfsDb(image, [`path ${dir}`, 'ls'])).split('\n')) {
    const m = /^\d+\s+(\d+)\s+\S+\s+\S+\s+\d+\s(.*) \(good\)$/.exec(line);
    if (m && m[2] !== '.' && m[2] !== '..') out[m[2]] = Number(m[1]);
  }
  return out;
}

/** One `print FIELD` value of the inode at `filePath`. */
export async function xfsDbField(image: string, filePath: string, field: string): Promise<string> {
  const text = await xfsDb(image, [`path ${filePath}`, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/[.[\]]/g, '\\$&')} = (.*)$`, 'm').exec(text);
  if (!m) throw new Error(`xfs_db printed no ${field} for ${filePath}: ${text}`);
  return m[1];
}

/**
 * Rewrites the one-extent data fork of `filePath` as a B+tree fork (root in the inode, one BMA3 leaf in the last
 * block of the file system, the extent cut into `pieces` records), as the kernel would once a file has more
 * extents than its inode holds — protofile mkfs never makes such files. The result is checked with xfs_db bmap.
 */
export async function makeBtreeFork(image: string, filePath: string, pieces: number): Promise<void> {
  const sb = await xfsDb(image, ['sb 0', 'print blocksize agblocks agblklog agcount dblocks inodesize inopblog uuid']);
  const field = (name: string) => new RegExp(`^${name} = (\\S+)$`, 'm').exec(sb)![1];
  const [bs, agblocks, agblklog, inodeSize, inopblog] = ['blocksize', 'agblocks', 'agblklog', 'inodesize', 'inopblog'].map((n) => Number(field(n)));
  const linear = (fsb: number) => Math.floor(fsb / 2 ** agblklog) * agblocks + (fsb % 2 ** agblklog);
  const text = await xfsDb(image, [`path ${filePath}`, 'print v3.inumber core.format', 'bmap']);
  const ino = Number(/v3.inumber = (\d+)/.exec(text)![1]);
  const extents = [...text.matchAll(/data offset (\d+) startblock (\d+) \(\d+\/\d+\) count (\d+)/g)];
  if (!/core.format = 2 /.test(text) || extents.length !== 1) throw new Error(`${filePath} is not a one-extent file`);
  const [start, count] = [Number(extents[0][2]), Number(extents[0][3])];
  // The last block of the last AG, as an AG-packed block number.
  const lastLinear = Number(field('dblocks')) - 1;
  const leafFsb = Math.floor(lastLinear / agblocks) * 2 ** agblklog + (lastLinear % agblocks);
  const leaf = Buffer.alloc(bs);
  leaf.writeUInt32BE(0x424d4133, 0);
  leaf.writeUInt16BE(0, 4);
  leaf.writeUInt16BE(pieces, 6);
  leaf.writeBigInt64BE(-1n, 8);
  leaf.writeBigInt64BE(-1n, 16);
  leaf.writeBigUInt64BE(BigInt((lastLinear * bs) / 512), 24);
  Buffer.from(field('uuid').replace(/-/g, ''), 'hex').copy(leaf, 40);
  leaf.writeBigUInt64BE(BigInt(ino), 56);
  const per = Math.ceil(count / pieces);
  for (let i = 0; i < pieces; i++) {
    const off = i * per;
    const n = Math.min(per, count - off);
    const l0 = BigInt(off) << 9n | BigInt(start + off) >> 43n;
    const l1 = (BigInt(start + off) & ((1n << 43n) - 1n)) << 21n | BigInt(n);
    leaf.writeBigUInt64BE(l0, 72 + i * 16);
    leaf.writeBigUInt64BE(l1, 80 + i * 16);
  }
  leaf.writeUInt32LE(crc32c(leaf), 64);
  const inodeAt = linear(Math.floor(ino / 2 ** inopblog)) * bs + (ino % 2 ** inopblog) * inodeSize;
  const h = await fs.open(image, 'r+');
  try {
    const inode = Buffer.alloc(inodeSize);
    await h.read(inode, 0, inodeSize, inodeAt);
    if ((inode.readBigUInt64BE(120) & 0x10n) !== 0n) throw new Error('nrext64 inodes are not handled here');
    inode[5] = 3;
    inode.writeUInt32BE(pieces, 76);
    inode.writeBigUInt64BE(inode.readBigUInt64BE(64) + 1n, 64);
    const fork = inode.subarray(176);
    fork.fill(0);
    const maxrecs = Math.floor((fork.length - 4) / 16);
    fork.writeUInt16BE(1, 0);
    fork.writeUInt16BE(1, 2);
    fork.writeBigUInt64BE(0n, 4);
    fork.writeBigUInt64BE(BigInt(leafFsb), 4 + maxrecs * 8);
    inode.writeUInt32LE(0, 100);
    inode.writeUInt32LE(crc32c(inode), 100);
    await h.write(inode, 0, inodeSize, inodeAt);
    await h.write(leaf, 0, bs, lastLinear * bs);
  } finally {
    await h.close();
  }
}
