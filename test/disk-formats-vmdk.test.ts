/**
 * VMDK readers against real images: every subformat qemu-img writes (read back byte-exact against the raw
 * source, allocation compared with `qemu-img map`), hand-built images qemu cannot write (GD_AT_END streams,
 * vmfs + vmfsSparse + seSparse chains) compared with qemu-img/vmdkinfo where they read them, and hostile images
 * that must fail with a typed error naming the file, the structure and the offset.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskFormatError, MissingFileError, UnsupportedFormatError } from '../libs/disk-formats/src/errors';
import { openVmdk, type VmdkDisk } from '../libs/disk-formats/src/vmdk';
import {
  buildCowd, buildSeSparse, buildStreamOptimized, descriptorText, kdmvFields, KiB, MiB, overlay, qemuDataRanges,
  qemuRead, run, SECTOR, sourceContent,
} from './peers/vmdk-fixtures';

const SIZE = 9 * MiB + 7 * SECTOR; // ends inside a grain
let dir: string;
let raw: Buffer;
let rawPath: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-vmdk-'));
  raw = sourceContent('vmdk', SIZE);
  rawPath = path.join(dir, 'source.raw');
  await fs.writeFile(rawPath, raw);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function withDisk<T>(file: string, fn: (disk: VmdkDisk) => Promise<T>): Promise<T> {
  const disk = await openVmdk(file);
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

/** Reads the whole disk in uneven pieces (not aligned to sectors or grains). */
async function readAll(disk: VmdkDisk): Promise<Buffer> {
  const parts: Buffer[] = [];
  const steps = [1, 777, 65536 + 3, 300 * KiB + 11, 1 * MiB + 513];
  let at = 0;
  for (let i = 0; at < disk.size; i++) {
    const n = Math.min(steps[i % steps.length], disk.size - at);
    parts.push(await disk.read(at, n));
    at += n;
  }
  return Buffer.concat(parts);
}

interface Expected {
  type?: typeof DiskFormatError;
  /** Part of the file name the error must name. */
  file: string;
  structure: RegExp;
  offset?: number;
  message?: RegExp;
}

/** Opens and reads the whole disk; expects the typed error described. */
async function expectFormatError(file: string, want: Expected): Promise<DiskFormatError> {
  let caught: unknown;
  try {
    await withDisk(file, async (d) => {
      await d.extents();
      return d.read(0, d.size);
    });
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(want.type ?? DiskFormatError);
  const e = caught as DiskFormatError;
  expect(e.structure).toMatch(want.structure);
  expect(e.file).toContain(want.file);
  if (want.offset !== undefined) expect(e.offset).toBe(want.offset);
  if (want.message) expect(e.message).toMatch(want.message);
  return e;
}

describe('images written by qemu-img', () => {
  const variants: [string, string][] = [
    ['monolithicSparse', 'subformat=monolithicSparse'],
    ['monolithicSparse-zeroed', 'subformat=monolithicSparse,zeroed_grain=on'],
    ['monolithicSparse-compat6', 'subformat=monolithicSparse,compat6=on,adapter_type=lsilogic'],
    ['monolithicSparse-hw', 'subformat=monolithicSparse,hwversion=14,adapter_type=buslogic'],
    ['monolithicFlat', 'subformat=monolithicFlat'],
    ['twoGbMaxExtentSparse', 'subformat=twoGbMaxExtentSparse'],
    ['twoGbMaxExtentFlat', 'subformat=twoGbMaxExtentFlat'],
    ['streamOptimized', 'subformat=streamOptimized'],
  ];

  it.each(variants)('%s reads back byte-exact with qemu-img map extents', async (name, options) => {
    const file = path.join(dir, `${name}.vmdk`);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', options, rawPath, file]);
    const expected = await qemuDataRanges(file);
    await withDisk(file, async (disk) => {
      expect(disk.size).toBe(SIZE);
      expect(disk.info.virtualSize).toBe(SIZE);
      expect(disk.info.subformat).toBe(name.split('-')[0]);
      expect((await readAll(disk)).equals(raw)).toBe(true);
      expect(await disk.extents()).toEqual(expected);
      const allocated = expected.reduce((s, r) => s + r.length, 0);
      expect(disk.info.allocatedBytes).toBe(allocated);
      if (name.endsWith('compat6')) expect(disk.info.metadata.virtualHWVersion).toBe('6');
      if (name.endsWith('-hw')) {
        expect(disk.info.metadata.virtualHWVersion).toBe('14');
        expect(disk.info.metadata.adapterType).toBe('buslogic');
      }
      expect(disk.info.metadata.cid).toMatch(/^[0-9a-f]{8}$/);
    });
  });

  it('twoGbMaxExtent disks larger than 2 GiB read across extent boundaries', async () => {
    const big = path.join(dir, 'big.raw');
    const size = 4 * 1024 * MiB + 5 * MiB;
    const marks = [0, 2 * 1024 * MiB - 3 * KiB, 4 * 1024 * MiB + 1 * MiB];
    const handle = await fs.open(big, 'w');
    await handle.truncate(size);
    for (const [i, at] of marks.entries()) await handle.write(sourceContent(`mark${i}`, 64 * KiB), 0, 64 * KiB, at);
    await handle.close();
    for (const sub of ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
      const file = path.join(dir, `big-${sub}.vmdk`);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, big, file]);
      await withDisk(file, async (disk) => {
        expect(disk.size).toBe(size);
        expect(disk.info.files.length).toBe(4); // descriptor + 3 extents
        for (const [i, at] of marks.entries()) {
          expect((await disk.read(at, 64 * KiB)).equals(sourceContent(`mark${i}`, 64 * KiB))).toBe(true);
          expect((await disk.read(at + 64 * KiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB))).toBe(true);
        }
        if (sub.endsWith('Sparse')) expect(await disk.extents()).toEqual(await qemuDataRanges(file));
      });
    }
    await fs.rm(big);
  });

  it('follows a qemu chain; zeroed grains hide the parent', async () => {
    const base = path.join(dir, 'chain-base.vmdk');
    const child = path.join(dir, 'chain-child.vmdk');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', rawPath, base]);
    await run('qemu-img', ['create', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', 'chain-base.vmdk', '-F', 'vmdk', child], dir);
    await run('qemu-io', ['-c', 'write -P 0x5a 64k 128k', '-c', 'write -z 0 64k', '-c', `write -z ${4 * MiB} ${1 * MiB}`, child]);
    const expected = await qemuRead(child, dir);
    await withDisk(child, async (disk) => {
      expect(disk.info.parents.map((p) => p.subformat)).toEqual(['monolithicSparse']);
      expect((await readAll(disk)).equals(expected)).toBe(true);
      const ext = await disk.extents();
      expect(ext[0].offset).toBe(64 * KiB);
      expect(disk.info.allocatedBytes).toBe(128 * KiB);
    });
  });
});

describe('hand-built images', () => {
  it('streamOptimized with GD_AT_END, footer and markers', async () => {
    const file = path.join(dir, 'stream-end.vmdk');
    const { image } = buildStreamOptimized(raw, 'stream-end.vmdk');
    await fs.writeFile(file, image);
    await withDisk(file, async (disk) => {
      expect(disk.info.subformat).toBe('streamOptimized');
      expect((await readAll(disk)).equals(raw)).toBe(true);
    });
    expect((await qemuRead(file, dir)).equals(raw)).toBe(true);
    expect(await run('vmdkinfo', [file])).toMatch(new RegExp(`\\(${SIZE} bytes\\)`));
  });

  async function writeChain(): Promise<{ base: Buffer; mid: Buffer; top: Buffer }> {
    const sectors = SIZE / SECTOR;
    await fs.writeFile(path.join(dir, 'vm-flat.vmdk'), raw);
    await fs.writeFile(path.join(dir, 'vm.vmdk'), descriptorText({ createType: 'vmfs', cid: 'aaaa0001', extents: [`RW ${sectors} VMFS "vm-flat.vmdk"`] }));
    const midData = sourceContent('cowd', SIZE);
    const midPresent = [{ offset: 3 * SECTOR, length: 5 * SECTOR }, { offset: 2 * MiB - SECTOR, length: 3 * SECTOR }, { offset: SIZE - SECTOR, length: SECTOR }];
    const midZero = [{ offset: 8 * MiB, length: 16 * SECTOR }];
    await fs.writeFile(path.join(dir, 'vm-000001-delta.vmdk'), buildCowd(midData, midPresent, midZero));
    await fs.writeFile(path.join(dir, 'vm-000001.vmdk'), descriptorText({
      createType: 'vmfsSparse', cid: 'bbbb0002', parentCid: 'aaaa0001', parentHint: 'vm.vmdk', extents: [`RW ${sectors} VMFSSPARSE "vm-000001-delta.vmdk"`],
    }));
    const mid = overlay(raw, midData, midPresent);
    mid.fill(0, 8 * MiB, 8 * MiB + 16 * SECTOR);
    const topData = sourceContent('sesparse', SIZE);
    const topPresent = [{ offset: 0, length: 8 * KiB }, { offset: 5 * MiB, length: 4 * KiB }];
    const topZero = [{ offset: 64 * KiB, length: 4 * KiB }];
    const topUnmapped = [{ offset: 2 * MiB - 4 * KiB, length: 4 * KiB }];
    await fs.writeFile(path.join(dir, 'vm-000002-sesparse.vmdk'), buildSeSparse(topData, { present: topPresent, zero: topZero, unmapped: topUnmapped }));
    await fs.writeFile(path.join(dir, 'vm-000002.vmdk'), descriptorText({
      createType: 'seSparse', cid: 'cccc0003', parentCid: 'bbbb0002', parentHint: 'vm-000001.vmdk', extents: [`RW ${sectors} SESPARSE "vm-000002-sesparse.vmdk"`],
    }));
    const top = overlay(mid, topData, topPresent);
    for (const r of [...topZero, ...topUnmapped]) top.fill(0, r.offset, r.offset + r.length);
    return { base: raw, mid, top };
  }

  it('vmfs base, COWD delta and seSparse delta: a 3-level chain read as one disk', async () => {
    const { base, mid, top } = await writeChain();
    await withDisk(path.join(dir, 'vm.vmdk'), async (d) => {
      expect(d.info.subformat).toBe('vmfs');
      expect(d.info.metadata.adapterType).toBe('lsilogic');
      expect((await readAll(d)).equals(base)).toBe(true);
    });
    await withDisk(path.join(dir, 'vm-000001.vmdk'), async (d) => {
      expect((await readAll(d)).equals(mid)).toBe(true);
      expect(d.info.allocatedBytes).toBe(9 * SECTOR);
    });
    await withDisk(path.join(dir, 'vm-000002.vmdk'), async (d) => {
      expect(d.info.subformat).toBe('seSparse');
      expect(d.info.parents.map((p) => p.subformat)).toEqual(['vmfsSparse', 'vmfs']);
      expect(d.info.allocatedBytes).toBe(12 * KiB);
      expect((await readAll(d)).equals(top)).toBe(true);
      // The flat base is fully allocated: only zeroed ranges of the deltas leave holes.
      expect(await d.extents()).toEqual([
        { offset: 0, length: 64 * KiB },
        { offset: 68 * KiB, length: 2 * MiB - 4 * KiB - 68 * KiB },
        { offset: 2 * MiB, length: 8 * MiB - 2 * MiB },
        { offset: 8 * MiB + 16 * SECTOR, length: SIZE - 8 * MiB - 16 * SECTOR },
      ]);
    });
    // qemu reads the same chain (vmfs, VMFSSPARSE and SESPARSE extents) to the same bytes.
    expect((await qemuRead(path.join(dir, 'vm-000001.vmdk'), dir)).equals(mid)).toBe(true);
    expect((await qemuRead(path.join(dir, 'vm-000002.vmdk'), dir)).equals(top)).toBe(true);
  });

  it('refuses a chain whose parentCID does not match the parent CID', async () => {
    await writeChain();
    const text = await fs.readFile(path.join(dir, 'vm.vmdk'), 'utf8');
    await fs.writeFile(path.join(dir, 'vm.vmdk'), text.replace('CID=aaaa0001', 'CID=aaaa0009'));
    await expectFormatError(path.join(dir, 'vm-000002.vmdk'), { file: 'vm-000001.vmdk', structure: /parentCID/, message: /aaaa0001.*aaaa0009/ });
  });
});

describe('hostile and broken images', () => {
  let sparse: Buffer;
  let stream: Buffer;
  const write = async (name: string, data: Buffer | string): Promise<string> => {
    const file = path.join(dir, name);
    await fs.writeFile(file, data);
    return file;
  };

  beforeAll(async () => {
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', rawPath, path.join(dir, 'h-sparse.vmdk')]);
    sparse = await fs.readFile(path.join(dir, 'h-sparse.vmdk'));
    stream = buildStreamOptimized(raw, 'h-stream.vmdk').image;
  });

  /** A copy of the qemu monolithicSparse image with `edit` applied. */
  const mutated = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(sparse);
    edit(b);
    return b;
  };

  it.each([
    ['grain size 0', 20, 0n, /grainSize is 0/],
    ['grain size not a power of two', 20, 100n, /power of two/],
    ['grain size too large', 20, 1n << 20n, /too large/],
    ['absurd capacity', 12, 1n << 50n, /capacity .* absurd/],
  ])('sparse header: %s', async (_name, at, value, message) => {
    const file = await write('h-field.vmdk', mutated((b) => b.writeBigUInt64LE(value as bigint, at as number)));
    await expectFormatError(file, { file: 'h-field.vmdk', structure: /^sparse header$/, offset: at as number, message: message as RegExp });
  });

  it('sparse header: numGTEsPerGT other than 512', async () => {
    const file = await write('h-gtes.vmdk', mutated((b) => b.writeUInt32LE(256, 44)));
    await expectFormatError(file, { file: 'h-gtes.vmdk', structure: /^sparse header$/, offset: 44, message: /numGTEsPerGT/ });
  });

  it('sparse header: newline detector altered by a text-mode transfer', async () => {
    const file = await write('h-newline.vmdk', mutated((b) => Buffer.from([0x0a, 0x20, 0x0a, 0x0a]).copy(b, 73)));
    await expectFormatError(file, { file: 'h-newline.vmdk', structure: /^sparse header$/, offset: 73, message: /text-mode/ });
  });

  it('falls back to the redundant grain directory when the primary is bad', async () => {
    const file = await write('h-rgd.vmdk', mutated((b) => b.writeBigUInt64LE(1n << 40n, 56)));
    await withDisk(file, async (disk) => {
      expect(disk.info.warnings.join('\n')).toMatch(/redundant/);
      expect((await disk.read(0, disk.size)).equals(raw)).toBe(true);
    });
  });

  it('grain directory past the end of the file, overlapping the header or the descriptor', async () => {
    const noRgd = (b: Buffer): void => {
      b.writeUInt32LE(b.readUInt32LE(8) & ~0x2, 8);
    };
    let file = await write('h-gd-eof.vmdk', mutated((b) => { noRgd(b); b.writeBigUInt64LE(1n << 40n, 56); }));
    await expectFormatError(file, { file: 'h-gd-eof.vmdk', structure: /^grain directory$/, offset: 2 ** 40 * SECTOR, message: /past the end/ });
    file = await write('h-gd-zero.vmdk', mutated((b) => { noRgd(b); b.writeBigUInt64LE(0n, 56); }));
    await expectFormatError(file, { file: 'h-gd-zero.vmdk', structure: /^grain directory$/, message: /header/ });
    file = await write('h-gd-desc.vmdk', mutated((b) => { noRgd(b); b.writeBigUInt64LE(2n, 56); }));
    await expectFormatError(file, { file: 'h-gd-desc.vmdk', structure: /^grain directory$/, message: /embedded descriptor/ });
  });

  it('grain table offset past the end of the file in both directories', async () => {
    const { gdOffset, rgdOffset } = kdmvFields(sparse);
    const file = await write('h-gt-eof.vmdk', mutated((b) => {
      b.writeUInt32LE(0x7fffffff, gdOffset * SECTOR);
      b.writeUInt32LE(0x7fffffff, rgdOffset * SECTOR);
    }));
    await expectFormatError(file, { file: 'h-gt-eof.vmdk', structure: /^grain directory$/, offset: gdOffset * SECTOR, message: /entry 0.*past the end/ });
  });

  it('grain entry pointing past the end of the file, and a truncated file', async () => {
    const { gdOffset } = kdmvFields(sparse);
    const gt0 = sparse.readUInt32LE(gdOffset * SECTOR) * SECTOR;
    let file = await write('h-gte.vmdk', mutated((b) => b.writeUInt32LE(0x7fffff00, gt0 + 3 * 4)));
    await expectFormatError(file, { file: 'h-gte.vmdk', structure: /^grain table 0$/, offset: gt0 + 12, message: /entry 3 .*past the end/ });
    file = await write('h-truncated.vmdk', sparse.subarray(0, sparse.length / 2));
    await expectFormatError(file, { file: 'h-truncated.vmdk', structure: /^grain table 0$/, message: /past the end/ });
  });

  it('streamOptimized: corrupt deflate, wrong lba, wrong inflated size, missing footer', async () => {
    const { image, grainOffsets } = buildStreamOptimized(raw, 'h-stream.vmdk');
    const g0 = grainOffsets.get(0)!;
    const deflateBroken = Buffer.from(image);
    for (let i = 0; i < 64; i++) deflateBroken[g0 + 100 + i] ^= 0x5a;
    let file = await write('h-stream-deflate.vmdk', deflateBroken);
    await expectFormatError(file, { file: 'h-stream-deflate.vmdk', structure: /^compressed grain 0$/, offset: g0 + 12, message: /deflate/ });

    const lba = Buffer.from(image);
    lba.writeBigUInt64LE(256n, g0);
    file = await write('h-stream-lba.vmdk', lba);
    await expectFormatError(file, { file: 'h-stream-lba.vmdk', structure: /^compressed grain 0$/, offset: g0, message: /sector 256, expected 0/ });

    const short = Buffer.from(image);
    const z = (await import('node:zlib')).deflateSync(Buffer.alloc(1000, 7));
    short.writeUInt32LE(z.length, g0 + 8);
    z.copy(short, g0 + 12);
    file = await write('h-stream-size.vmdk', short);
    await expectFormatError(file, { file: 'h-stream-size.vmdk', structure: /^compressed grain 0$/, message: /inflates to 1000 bytes/ });

    file = await write('h-stream-footer.vmdk', stream.subarray(0, stream.length - SECTOR));
    await expectFormatError(file, { file: 'h-stream-footer.vmdk', structure: /stream footer|end-of-stream/ });
  });

  it('a header claiming a huge disk is refused before anything large is allocated', async () => {
    const before = process.memoryUsage().rss;
    const file = await write('h-huge.vmdk', mutated((b) => {
      b.writeBigUInt64LE(60n << 31n, 12); // 60 TiB
      b.writeBigUInt64LE(1n, 20); // one-sector grains: a 2^28-entry directory
    }));
    await expectFormatError(file, { file: 'h-huge.vmdk', structure: /sparse header/, message: /too large/ });
    const file2 = await write('h-huge2.vmdk', mutated((b) => b.writeBigUInt64LE(60n << 31n, 12)));
    await expectFormatError(file2, { file: 'h-huge2.vmdk', structure: /grain directory/, message: /past the end/ });
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * MiB);
  });

  it('descriptor extents that are absolute, escape the folder, are missing or NOACCESS', async () => {
    const cases: [string, string, typeof DiskFormatError, RegExp][] = [
      ['RW 8 FLAT "/etc/passwd" 0', 'd-abs.vmdk', MissingFileError, /absolute/],
      ['RW 8 FLAT "../outside-flat.vmdk" 0', 'd-up.vmdk', MissingFileError, /leaves the folder/],
      ['RW 8 FLAT "sub/../../x.vmdk" 0', 'd-up2.vmdk', MissingFileError, /leaves the folder/],
      ['RW 8 FLAT "C:\\\\Windows\\\\x.vmdk" 0', 'd-drive.vmdk', MissingFileError, /absolute/],
      ['RW 8 FLAT "nowhere-flat.vmdk" 0', 'd-missing.vmdk', MissingFileError, /does not exist/],
      ['NOACCESS 8 FLAT "nowhere-flat.vmdk" 0', 'd-noaccess.vmdk', UnsupportedFormatError, /NOACCESS/],
      ['RW 99999999999999 FLAT "x-flat.vmdk" 0', 'd-absurd.vmdk', DiskFormatError, /absurd/],
    ];
    for (const [line, name, type, message] of cases) {
      const file = await write(name, descriptorText({ createType: 'monolithicFlat', extents: [line] }));
      const e = await expectFormatError(file, { type, file: name.includes('missing') ? 'nowhere' : name, structure: /descriptor line 10|^file$/, message });
      expect(e.message).not.toMatch(/root:/);
    }
  });

  it('descriptors that are too large, have too many lines, or name a missing or looping parent', async () => {
    let file = await write('d-large.vmdk', `version=1\n${'#'.repeat(2 * MiB)}\n`);
    await expectFormatError(file, { file: 'd-large.vmdk', structure: /descriptor/, message: /too large|exceeds/ });
    file = await write('d-lines.vmdk', `${descriptorText({ createType: 'vmfs', extents: ['RW 8 ZERO'] })}${'#\n'.repeat(70000)}`);
    await expectFormatError(file, { file: 'd-lines.vmdk', structure: /^descriptor$/, message: /lines/ });
    file = await write('d-orphan.vmdk', descriptorText({ createType: 'vmfsSparse', parentCid: '12345678', parentHint: 'gone.vmdk', extents: ['RW 8 ZERO'] }));
    await expectFormatError(file, { type: MissingFileError, file: 'gone.vmdk', structure: /^file$/ });
    file = await write('d-loop.vmdk', descriptorText({ createType: 'vmfsSparse', cid: '12345678', parentCid: '12345678', parentHint: 'd-loop.vmdk', extents: ['RW 8 ZERO'] }));
    await expectFormatError(file, { file: 'd-loop.vmdk', structure: /parentFileNameHint/, message: /loops/ });
  });

  it('ZERO extents read as zeros and keep the offsets of later extents', async () => {
    await write('z-flat.bin', raw.subarray(0, 2 * MiB));
    const file = await write('z.vmdk', descriptorText({
      createType: 'custom',
      extents: ['RW 2048 FLAT "z-flat.bin" 0', 'RW 1000 ZERO', 'RDONLY 2048 FLAT "z-flat.bin" 2048'],
    }));
    await withDisk(file, async (disk) => {
      expect(disk.size).toBe((2048 + 1000 + 2048) * SECTOR);
      const expected = Buffer.concat([raw.subarray(0, MiB), Buffer.alloc(1000 * SECTOR), raw.subarray(MiB, 2 * MiB)]);
      expect((await readAll(disk)).equals(expected)).toBe(true);
      expect(await disk.extents()).toEqual([{ offset: 0, length: MiB }, { offset: MiB + 1000 * SECTOR, length: MiB }]);
    });
  });

  it('COWD and seSparse deltas: bad tables, dirty journal, bare extent files', async () => {
    const sectors = 64;
    const base = sourceContent('small', sectors * SECTOR);
    await write('s.vmdk', descriptorText({ createType: 'vmfs', cid: '00000001', extents: [`RW ${sectors} VMFS "s-flat.vmdk"`] }));
    await write('s-flat.vmdk', base);
    const cowd = buildCowd(base, [{ offset: 0, length: 2 * SECTOR }]);
    const gt = cowd.readUInt32LE(4 * SECTOR) * SECTOR;
    cowd.writeUInt32LE(0x00ffffff, gt + 4);
    await write('s-1-delta.vmdk', cowd);
    let file = await write('s-1.vmdk', descriptorText({ createType: 'vmfsSparse', parentCid: '00000001', parentHint: 's.vmdk', extents: [`RW ${sectors} VMFSSPARSE "s-1-delta.vmdk"`] }));
    await expectFormatError(file, { file: 's-1-delta.vmdk', structure: /^grain table 0$/, offset: gt + 4, message: /entry 1 .*past the end/ });

    const se = buildSeSparse(Buffer.alloc(8 * MiB), { present: [{ offset: 0, length: 4096 }], replayJournal: true });
    await write('s-2-sesparse.vmdk', se);
    file = await write('s-2.vmdk', descriptorText({ createType: 'seSparse', extents: [`RW ${16384} SESPARSE "s-2-sesparse.vmdk"`] }));
    await expectFormatError(file, { file: 's-2-sesparse.vmdk', structure: /volatile header/, offset: SECTOR + 24, message: /journal/ });

    const badGd = buildSeSparse(Buffer.alloc(8 * MiB), { present: [{ offset: 0, length: 4096 }] });
    badGd.writeUInt32LE(0x20000000, 4 * SECTOR + 4);
    await write('s-3-sesparse.vmdk', badGd);
    file = await write('s-3.vmdk', descriptorText({ createType: 'seSparse', extents: [`RW ${16384} SESPARSE "s-3-sesparse.vmdk"`] }));
    await expectFormatError(file, { file: 's-3-sesparse.vmdk', structure: /^grain directory$/, offset: 4 * SECTOR, message: /invalid/ });

    await expectFormatError(path.join(dir, 's-1-delta.vmdk'), { type: UnsupportedFormatError, file: 's-1-delta.vmdk', structure: /^file$/, message: /descriptor/ });
  });
});
