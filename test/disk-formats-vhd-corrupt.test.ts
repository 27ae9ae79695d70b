/**
 * Broken and hostile VHD/VHDX images: every failure is a typed DiskFormatError naming the structure, damaged
 * redundant copies fall back to the good one, and a dirty VHDX log is replayed (checked against qemu-img,
 * which replays it in `check -r all`) or refused — never read past.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskFormatError, openVhd, openVhdx, VhdxLogError } from '@vmkeep/disk-formats';
import { buildRandomZeroImage, seededBytes } from './peers/disk-images';
import {
  addDirtyLog, batIndex, fixCrc, fixVhdDynamicHeader, fixVhdFooter, KiB, MiB, qemuImg, qemuRaw, readBat, sha, vhdLayout, vhdxLayout, writeBat,
} from './peers/vhd-fixtures';

let dir: string;
let dynVhd: Buffer;
let fixedVhd: Buffer;
let vhdx: Buffer;
let vhdxData: Buffer;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-vhd-bad-'));
  const raw = (await buildRandomZeroImage({ dir, sizeMiB: 16, seed: 'vhd-bad' })).path;
  const make = async (name: string, fmt: string, opts: string) => {
    const out = path.join(dir, name);
    await qemuImg('convert', '-f', 'raw', '-O', fmt, '-o', opts, raw, out);
    return fs.readFile(out);
  };
  dynVhd = await make('d.vhd', 'vpc', 'subformat=dynamic');
  fixedVhd = await make('f.vhd', 'vpc', 'subformat=fixed');
  vhdx = await make('d.vhdx', 'vhdx', 'block_size=1M');
  vhdxData = await qemuRaw(path.join(dir, 'd.vhdx'), 'vhdx');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let n = 0;
async function write(image: Buffer, ext: string): Promise<string> {
  const file = path.join(dir, `case-${n++}.${ext}`);
  await fs.writeFile(file, image);
  return file;
}

async function failure(p: Promise<unknown>): Promise<DiskFormatError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DiskFormatError);
  return err as DiskFormatError;
}

async function readWhole(file: string, open: typeof openVhd): Promise<Buffer> {
  const disk = await open(file);
  try {
    return await disk.read(0, disk.size);
  } finally {
    await disk.close();
  }
}

describe('VHD', () => {
  it('refuses a fixed VHD with a bad footer checksum or a wrong cookie', async () => {
    const bad = Buffer.from(fixedVhd);
    bad[bad.length - 512 + 50] ^= 0x01;
    const e1 = await failure(openVhd(await write(bad, 'vhd')));
    expect(e1.structure).toBe('VHD footer');
    expect(e1.message).toMatch(/checksum mismatch/);
    const cookie = Buffer.from(fixedVhd);
    cookie.write('notvhd!!', cookie.length - 512, 'latin1');
    expect((await failure(openVhd(await write(cookie, 'vhd')))).message).toMatch(/bad cookie/);
  });

  it('reads a dynamic VHD whose end footer is damaged from the copy at offset 0, fails when both are', async () => {
    const want = await readWhole(await write(dynVhd, 'vhd'), openVhd);
    const oneBad = Buffer.from(dynVhd);
    oneBad[oneBad.length - 512 + 30] ^= 0xff;
    const disk = await openVhd(await write(oneBad, 'vhd'));
    try {
      expect(disk.info.warnings.join()).toMatch(/using its copy at offset 0/);
      expect(sha(await disk.read(0, disk.size))).toBe(sha(want));
    } finally {
      await disk.close();
    }
    const bothBad = Buffer.from(oneBad);
    bothBad[30] ^= 0xff;
    expect((await failure(openVhd(await write(bothBad, 'vhd')))).structure).toBe('VHD footer');
  });

  it('refuses a bad dynamic header, hostile sizes and BAT entries past the end of the file', async () => {
    const header = Buffer.from(dynVhd);
    header[512 + 100] ^= 1;
    expect((await failure(openVhd(await write(header, 'vhd')))).structure).toBe('VHD dynamic header');

    const blockSize = Buffer.from(dynVhd);
    blockSize.writeUInt32BE(3 * MiB, 512 + 32);
    fixVhdDynamicHeader(blockSize);
    expect((await failure(openVhd(await write(blockSize, 'vhd')))).message).toMatch(/power of two/);

    const huge = Buffer.from(dynVhd);
    for (const at of [0, huge.length - 512]) {
      huge.writeBigUInt64BE(1n << 50n, at + 48);
      fixVhdFooter(huge, at);
    }
    expect((await failure(openVhd(await write(huge, 'vhd')))).message).toMatch(/impossible disk size/);

    const layout = vhdLayout(dynVhd);
    const entries = Buffer.from(dynVhd);
    for (const at of [0, entries.length - 512]) {
      entries.writeBigUInt64BE(BigInt(layout.blockSize) * 100_000n, at + 48);
      fixVhdFooter(entries, at);
    }
    expect((await failure(openVhd(await write(entries, 'vhd')))).message).toMatch(/BAT has \d+ entries/);

    const table = Buffer.from(dynVhd);
    table.writeBigUInt64BE(BigInt(table.length - 16), 512 + 16);
    fixVhdDynamicHeader(table);
    expect((await failure(openVhd(await write(table, 'vhd')))).structure).toBe('VHD BAT');

    const past = Buffer.from(dynVhd);
    past.writeUInt32BE(0x7fffff00, layout.tableOffset);
    const disk = await openVhd(await write(past, 'vhd'));
    try {
      const err = await failure(disk.read(0, 4096));
      expect(err.structure).toBe('VHD BAT');
      expect(err.offset).toBe(layout.tableOffset);
      expect((await disk.read(layout.blockSize, 4096)).length).toBe(4096);
    } finally {
      await disk.close();
    }
  });

  it('refuses a truncated dynamic VHD', async () => {
    const cut = Buffer.concat([dynVhd.subarray(0, dynVhd.length - 3 * MiB), dynVhd.subarray(dynVhd.length - 512)]);
    const disk = await openVhd(await write(cut, 'vhd'));
    try {
      await failure(disk.read(0, disk.size));
    } finally {
      await disk.close();
    }
  });
});

describe('VHDX headers and region tables', () => {
  it('falls back to the other header when the current one has a bad CRC, refuses when both are bad', async () => {
    const layout = vhdxLayout(vhdx);
    const one = Buffer.from(vhdx);
    one[layout.header + 200] ^= 0x5a;
    const file = await write(one, 'vhdx');
    const disk = await openVhdx(file);
    try {
      expect(disk.info.warnings.join()).toMatch(/damaged header.*CRC-32C mismatch/);
      expect(sha(await disk.read(0, disk.size))).toBe(sha(vhdxData));
    } finally {
      await disk.close();
    }
    const both = Buffer.from(one);
    both[layout.other + 200] ^= 0x5a;
    const err = await failure(openVhdx(await write(both, 'vhdx')));
    expect(err.structure).toBe('VHDX headers');
    expect(err.message).toMatch(/no valid header/);
  });

  it('uses the second region table when the first is corrupt, refuses when both are', async () => {
    const one = Buffer.from(vhdx);
    one[192 * KiB + 40] ^= 1;
    const disk = await openVhdx(await write(one, 'vhdx'));
    try {
      expect(disk.info.warnings.join()).toMatch(/region table/);
      expect(sha(await disk.read(0, disk.size))).toBe(sha(vhdxData));
    } finally {
      await disk.close();
    }
    const both = Buffer.from(one);
    both[256 * KiB + 40] ^= 1;
    expect((await failure(openVhdx(await write(both, 'vhdx')))).structure).toBe('VHDX region table');
    const entries = Buffer.from(vhdx);
    for (const at of [192 * KiB, 256 * KiB]) {
      entries.writeUInt32LE(100000, at + 8);
      fixCrc(entries, at, 64 * KiB);
    }
    expect((await failure(openVhdx(await write(entries, 'vhdx')))).message).toMatch(/at most 2047/);
  });

  it('refuses hostile metadata: virtual size, block size, sector size, BAT too small', async () => {
    const layout = vhdxLayout(vhdx);
    const item = (img: Buffer, first4: string) => {
      for (let i = 0; i < img.readUInt16LE(layout.metaOffset + 10); i++) {
        const e = layout.metaOffset + 32 + i * 32;
        if (img.toString('hex', e, e + 4) === first4) return layout.metaOffset + img.readUInt32LE(e + 16);
      }
      throw new Error('item not found');
    };
    const cases: Array<[string, (img: Buffer) => void, RegExp]> = [
      ['size', (img) => img.writeBigUInt64LE(1n << 62n, item(img, '2442a52f')), /impossible virtual size/],
      ['block', (img) => img.writeUInt32LE(3 * MiB, item(img, '3767a1ca')), /power of two/],
      ['sector', (img) => img.writeUInt32LE(1000, item(img, '1dbf4181')), /logical sector size/],
      ['bat', (img) => img.writeBigUInt64LE(40n * 1024n ** 4n, item(img, '2442a52f')), /BAT region/],
    ];
    for (const [, patch, message] of cases) {
      const img = Buffer.from(vhdx);
      patch(img);
      expect((await failure(openVhdx(await write(img, 'vhdx')))).message).toMatch(message);
    }
  });

  it('refuses to read a block whose BAT entry points past the end of the file', async () => {
    const layout = vhdxLayout(vhdx);
    const img = Buffer.from(vhdx);
    let block = 0;
    while (readBat(img, layout, batIndex(layout, block)).state !== 6) block++;
    writeBat(img, layout, batIndex(layout, block), 6, 1024 * MiB);
    const disk = await openVhdx(await write(img, 'vhdx'));
    try {
      const err = await failure(disk.read(block * MiB, 512));
      expect(err.structure).toBe('VHDX BAT');
      expect(err.message).toMatch(/outside the/);
    } finally {
      await disk.close();
    }
  });
});

describe('VHDX log', () => {
  it('replays a dirty log in memory, matching what qemu-img reads after replaying it', async () => {
    const layout = vhdxLayout(vhdx);
    const newData = seededBytes('log', 'sector', 4096);
    let dataBlock = 0;
    while (readBat(vhdx, layout, batIndex(layout, dataBlock)).state !== 6) dataBlock++;
    let zeroedBlock = dataBlock + 1;
    while (readBat(vhdx, layout, batIndex(layout, zeroedBlock)).state !== 6) zeroedBlock++;
    const { image } = addDirtyLog(vhdx, { dataBlock, zeroedBlock, newData });
    const file = await write(image, 'vhdx');

    const expected = Buffer.from(vhdxData);
    newData.copy(expected, dataBlock * MiB + 4096);
    expected.fill(0, dataBlock * MiB + 8192, dataBlock * MiB + 16384);
    expected.fill(0, zeroedBlock * MiB, (zeroedBlock + 1) * MiB);

    const disk = await openVhdx(file);
    try {
      expect(disk.info.warnings.join()).toMatch(/replayed 2 entries/);
      expect(sha(await disk.read(0, disk.size))).toBe(sha(expected));
    } finally {
      await disk.close();
    }
    expect((await fs.readFile(file)).equals(image)).toBe(true); // the file itself is untouched

    // qemu-img refuses to read a dirty log read-only; `check -r all` replays it into a copy.
    const copy = await write(image, 'vhdx');
    await qemuImg('check', '-r', 'all', '-f', 'vhdx', copy).catch(() => '');
    expect(sha(await qemuRaw(copy, 'vhdx'))).toBe(sha(expected));
  });

  it('refuses a log whose sequence is incomplete or whose entries are all corrupt', async () => {
    const layout = vhdxLayout(vhdx);
    let dataBlock = 0;
    while (readBat(vhdx, layout, batIndex(layout, dataBlock)).state !== 6) dataBlock++;
    const base = { dataBlock, zeroedBlock: dataBlock, newData: Buffer.alloc(4096, 7) };
    for (const variant of [{ breakTail: true }, { corruptEntries: true }]) {
      const { image } = addDirtyLog(vhdx, { ...base, ...variant });
      const err = await failure(openVhdx(await write(image, 'vhdx')));
      expect(err).toBeInstanceOf(VhdxLogError);
      expect(err.structure).toBe('VHDX log');
    }
  });
});
