/**
 * Real NTFS images for the NTFS suites, made without kernel mounts: `mkntfs -F -Q` on an image file, then
 * populated through ntfs-3g's userspace FUSE driver (`ntfs-3g -o streams_interface=windows` on the image file,
 * unmounted with `fusermount -u`): plain, empty, multi-cluster, sparse and compressed files (a folder flagged
 * compressed via the `system.ntfs_attrib_be` xattr), alternate data streams ("file:stream"), relative and
 * absolute symlinks (ntfs-3g writes NTFS symlink reparse points), a 1500-entry folder (a multi-level $I30 B+ tree),
 * a file whose many streams overflow its record (an $ATTRIBUTE_LIST), a badly fragmented file, deep folders and
 * non-ASCII names.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { seededBytes } from './disk-images';
import { MiB, run } from './fs-images';

export interface NtfsImageOptions {
  sizeMiB: number;
  clusterSize: number;
  label: string;
}

/** Runs `fn` with the image mounted through ntfs-3g at a fresh folder next to it; always unmounts. */
export async function withNtfsMount<T>(image: string, fn: (mnt: string) => Promise<T>, readOnly = false): Promise<T> {
  const mnt = await fs.mkdtemp(`${image}-mnt-`);
  const opts = ['streams_interface=windows', ...(readOnly ? ['ro'] : [])].join(',');
  await run('ntfs-3g', ['-o', opts, image, mnt]);
  try {
    return await fn(mnt);
  } finally {
    await run('fusermount', ['-u', mnt]).catch(() => run('umount', [mnt]));
    await fs.rmdir(mnt);
  }
}

async function writeAt(file: string, offset: number, data: Buffer): Promise<void> {
  const h = await fs.open(file, 'r+');
  try {
    await h.write(data, 0, data.length, offset);
  } finally {
    await h.close();
  }
}

/** Text that LZNT1 compresses well but not trivially. */
function compressible(seed: string, length: number): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  const noise = seededBytes('ntfs', seed, Math.ceil(length / 4));
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < length; i++) {
    const w = `${words[noise[i % noise.length] % words.length]}${noise[(i * 7) % noise.length] % 100} `;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('').slice(0, length));
}

async function populate(mnt: string): Promise<void> {
  const put = async (rel: string, data: Buffer | string) => {
    await fs.mkdir(path.dirname(path.join(mnt, rel)), { recursive: true });
    await fs.writeFile(path.join(mnt, rel), data);
  };
  await put('hello.txt', 'hello, ntfs\n');
  await put('empty', '');
  await put('resident-600', seededBytes('ntfs', 'resident', 600));
  await put('big.bin', seededBytes('ntfs', 'big', 3 * MiB + 333));
  await put('ünïcødé/файл — ✓.txt', 'unicode\n');
  await put('deep/a/b/c/d/e/f/deep.txt', 'at the bottom\n');
  await put('Name With Spaces.TXT', 'spaces\n');

  const sparse = path.join(mnt, 'sparse.img');
  await fs.writeFile(sparse, '');
  await fs.truncate(sparse, 8 * MiB);
  await writeAt(sparse, MiB + 100, seededBytes('ntfs', 'sparse-1', 5000));
  await writeAt(sparse, 6 * MiB, seededBytes('ntfs', 'sparse-2', 70_000));

  await fs.mkdir(path.join(mnt, 'compressed'));
  await run('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "system.ntfs_attrib_be", (0x800).to_bytes(4, "big"))', path.join(mnt, 'compressed')]);
  await put('compressed/words.txt', compressible('words', 300_000));
  await put('compressed/random.bin', seededBytes('ntfs', 'random', 100_000));
  const csparse = path.join(mnt, 'compressed', 'sparse-compressed');
  await fs.writeFile(csparse, '');
  await fs.truncate(csparse, 2 * MiB);
  await writeAt(csparse, MiB, compressible('csparse', 40_000));

  await put('ads.txt', 'main stream\n');
  await fs.writeFile(path.join(mnt, 'ads.txt:Zone.Identifier'), '[ZoneTransfer]\r\nZoneId=3\r\n');
  await fs.writeFile(path.join(mnt, 'ads.txt:big'), seededBytes('ntfs', 'ads-big', 20_000));
  await put('many-streams', 'has an attribute list\n');
  for (let i = 0; i < 60; i++) await fs.writeFile(path.join(mnt, `many-streams:s${i}`), seededBytes('ntfs', `s${i}`, 150));

  // Interleaved appends fragment both files into hundreds of runs.
  const fragA = path.join(mnt, 'frag-a.bin');
  const fragB = path.join(mnt, 'frag-b.bin');
  await fs.writeFile(fragA, '');
  await fs.writeFile(fragB, '');
  for (let i = 0; i < 600; i++) {
    await fs.appendFile(fragA, seededBytes('ntfs', `fa${i}`, 4096));
    await fs.appendFile(fragB, seededBytes('ntfs', `fb${i}`, 4096));
  }

  await fs.symlink('hello.txt', path.join(mnt, 'link-rel'));
  await fs.symlink('deep/a/b/c', path.join(mnt, 'link-dir'));
  await fs.symlink('../../hello.txt', path.join(mnt, 'deep', 'a', 'link-up'));

  await fs.mkdir(path.join(mnt, 'many'));
  for (let i = 0; i < 1500; i++) await fs.writeFile(path.join(mnt, 'many', `entry-${String(i).padStart(5, '0')}.txt`), `${i}\n`);
  await fs.mkdir(path.join(mnt, 'empty-dir'));
}

/** Makes and populates an NTFS image; returns its path. */
export async function makeNtfs(file: string, o: NtfsImageOptions): Promise<string> {
  await fs.rm(file, { force: true });
  await fs.writeFile(file, '');
  await fs.truncate(file, o.sizeMiB * MiB);
  await run('mkntfs', ['-F', '-Q', '-q', '-c', String(o.clusterSize), '-L', o.label, file]);
  await withNtfsMount(file, populate);
  return file;
}
