/**
 * Builders of real disk data for tests: an ext4 file system image made by mke2fs -d from generated files, and a
 * raw image of random and zero runs whose boundaries are not aligned to chunk sizes. Content is derived from a
 * seed (AES-CTR keystream), so the same seed gives the same bytes.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

export interface DiskImage {
  path: string;
  size: number;
  /** Hex SHA-256 of the whole file. */
  sha256: string;
}

export interface ImageOptions {
  /** Folder to write into; default a new temp folder (the caller removes it). */
  dir?: string;
  /** Content seed; same seed, same bytes. */
  seed?: string;
  sizeMiB?: number;
}

/** Deterministic pseudo-random bytes for a seed and a stream name. */
export function seededBytes(seed: string, name: string, length: number): Buffer {
  const key = createHash('sha256').update(`key:${seed}:${name}`).digest();
  const iv = createHash('sha256').update(`iv:${seed}:${name}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function targetDir(dir: string | undefined): Promise<string> {
  if (dir) {
    await fs.mkdir(dir, { recursive: true });
    return dir;
  }
  return fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-images-'));
}

/**
 * An ext4 image (default 64 MiB) holding a small tree of generated files: text files, binary files of various
 * sizes (some bigger than a chunk) and nested folders, written by `mke2fs -t ext4 -d`.
 */
export async function buildExt4Image(options: ImageOptions = {}): Promise<DiskImage> {
  const dir = await targetDir(options.dir);
  const seed = options.seed ?? 'ext4';
  const size = (options.sizeMiB ?? 64) * MiB;
  const tree = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ext4-tree-'));
  try {
    const files: [string, Buffer][] = [
      ['README.txt', Buffer.from(`VMKeep test file system (seed ${seed})\n`.repeat(40))],
      ['etc/hostname', Buffer.from('vmkeep-demo-1\n')],
      ['etc/app.conf', Buffer.from(Array.from({ length: 200 }, (_, i) => `option${i} = ${i * 7}`).join('\n'))],
      ['data/small.bin', seededBytes(seed, 'small', 4096 + 123)],
      ['data/medium.bin', seededBytes(seed, 'medium', 3 * MiB + 777)],
      ['data/large.bin', seededBytes(seed, 'large', 9 * MiB + 4321)],
      ['data/nested/deep/file.bin', seededBytes(seed, 'deep', 700 * 1024)],
      ['logs/empty.log', Buffer.alloc(0)],
    ];
    for (const [name, content] of files) {
      const file = path.join(tree, name);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, content);
    }
    const image = path.join(dir, `${seed}-ext4.img`);
    await fs.rm(image, { force: true });
    await execFileAsync('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'vmkeep', '-d', tree, image, `${size / 1024}k`], {
      env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
    });
    const stat = await fs.stat(image);
    return { path: image, size: stat.size, sha256: await sha256File(image) };
  } finally {
    await fs.rm(tree, { recursive: true, force: true });
  }
}

/**
 * A raw image (default 48 MiB) of alternating random and zero runs. Run lengths vary from a few KiB to several
 * MiB and most boundaries fall inside 1 MiB chunks, so readers see partial, all-zero and full chunks.
 */
export async function buildRandomZeroImage(options: ImageOptions = {}): Promise<DiskImage> {
  const dir = await targetDir(options.dir);
  const seed = options.seed ?? 'random-zero';
  const size = (options.sizeMiB ?? 48) * MiB;
  const layout = seededBytes(seed, 'layout', 1024);
  const image = Buffer.alloc(size);
  let offset = 0;
  for (let run = 0; offset < size; run++) {
    // 4 KiB .. ~5 MiB, in 512-byte steps so runs start off chunk boundaries.
    const length = Math.min(size - offset, 4096 + (layout.readUInt32LE((run * 4) % 1020) % 10240) * 512);
    if (run % 2 === 0) seededBytes(seed, `run${run}`, length).copy(image, offset);
    offset += length;
  }
  // Make sure a full all-zero chunk and the disk's last bytes are covered.
  const zeroStart = Math.floor(size / 2 / MiB) * MiB;
  image.fill(0, zeroStart, Math.min(zeroStart + 2 * MiB, size - 4096));
  seededBytes(seed, 'tail', 4096).copy(image, size - 4096);
  const file = path.join(dir, `${seed}-raw.img`);
  await fs.writeFile(file, image);
  return { path: file, size, sha256: createHash('sha256').update(image).digest('hex') };
}
