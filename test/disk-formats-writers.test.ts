// libs/disk-formats writers against the real tools: every image must pass `qemu-img check`, read back
// byte-exact through qemu-img, and the VMDKs must open in libvmdk (vmdkinfo; vmdkmount for the data).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { BufferDisk, checkRange, Disk, DiskError, Extent } from '@vmkeep/disk';
import { OutputFormat, ImageWriteError, streamOptimizedStream, writeImage, writeOva } from '@vmkeep/disk-formats';
import { seededBytes, sha256File } from './peers/disk-images';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** A sparse test disk: the listed regions hold data, everything else reads as zeros; records every read. */
class RegionDisk implements Disk {
  readonly reads: Extent[] = [];
  constructor(
    readonly size: number,
    private readonly regions: { offset: number; data: Buffer }[],
    private readonly failAt?: number,
  ) {}
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'region-disk', offset, length);
    if (this.failAt !== undefined && offset + length > this.failAt) throw new DiskError('simulated read failure', 'region-disk', offset);
    this.reads.push({ offset, length });
    const out = Buffer.alloc(length);
    for (const r of this.regions) {
      const from = Math.max(offset, r.offset);
      const to = Math.min(offset + length, r.offset + r.data.length);
      if (from < to) r.data.copy(out, from - offset, from - r.offset, to - r.offset);
    }
    return out;
  }
  async extents(): Promise<Extent[]> {
    return this.regions.map((r) => ({ offset: r.offset, length: r.data.length }));
  }
  async close(): Promise<void> {}
}

/**
 * 40 MiB + 3.5 KiB (not grain aligned): random runs, a zero gap longer than a grain table's 32 MiB span is
 * not needed, but data on both sides of the 32 MiB table boundary, compressible text, an all-zero 3 MiB hole,
 * single bytes inside otherwise zero grains, and data in the last partial grain.
 */
function mixedImage(): Buffer {
  const size = 40 * MiB + 3584;
  const data = Buffer.alloc(size);
  seededBytes('writers', 'head', 3 * MiB + 1234).copy(data, 0);
  Buffer.from('VMKeep writer test line, quite compressible.\n'.repeat(60000)).copy(data, 8 * MiB + 100);
  data[12 * MiB + 77] = 0x5a;
  seededBytes('writers', 'boundary', 2 * MiB).copy(data, 31 * MiB);
  data[37 * MiB + 65535] = 0xa5;
  seededBytes('writers', 'tail', 3000).copy(data, size - 3000);
  return data;
}

const QEMU_FORMAT: Record<OutputFormat, string> = { raw: 'raw', 'vmdk-stream': 'vmdk', 'vmdk-sparse': 'vmdk', 'vmdk-flat': 'vmdk', vhdx: 'vhdx' };
const EXT: Record<OutputFormat, string> = { raw: 'img', 'vmdk-stream': 'vmdk', 'vmdk-sparse': 'vmdk', 'vmdk-flat': 'vmdk', vhdx: 'vhdx' };

let dir: string;
let mixed: Buffer;
let mixedRaw: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-writers-'));
  mixed = mixedImage();
  mixedRaw = path.join(dir, 'mixed.raw');
  await fs.writeFile(mixedRaw, mixed);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function qemuCheck(file: string, format: string): Promise<string> {
  const { stdout } = await run('qemu-img', ['check', '-f', format, file]);
  return stdout;
}

/** qemu-img compare (exit 0 only when identical) plus a convert to raw compared byte by byte. */
async function expectSameAsRaw(image: string, format: string, rawFile: string, expected?: Buffer): Promise<void> {
  const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', format, rawFile, image]);
  expect(stdout).toContain('Images are identical');
  if (expected) {
    const back = path.join(dir, `back-${path.basename(image)}.raw`);
    await run('qemu-img', ['convert', '-f', format, '-O', 'raw', image, back]);
    const data = await fs.readFile(back);
    expect(data.length).toBe(expected.length);
    expect(data.equals(expected)).toBe(true);
    await fs.rm(back);
  }
}

async function vmdkinfo(file: string): Promise<string> {
  const { stdout } = await run('vmdkinfo', [file]);
  return stdout;
}

/** Reads the virtual disk through libvmdk (vmdkmount exposes it as a file over FUSE). */
async function readThroughLibvmdk(file: string): Promise<Buffer> {
  const mnt = await fs.mkdtemp(path.join(dir, 'mnt-'));
  await run('vmdkmount', [file, mnt], { timeout: 20000 });
  try {
    return await fs.readFile(path.join(mnt, 'vmdk1'));
  } finally {
    await run('umount', [mnt]);
    await fs.rmdir(mnt);
  }
}

/** Names in `folder` that look like our temp files. */
async function leftovers(folder: string): Promise<string[]> {
  return (await fs.readdir(folder)).filter((n) => n.includes('.vmkeep-partial-'));
}

describe('writeImage from a mixed random/zero disk', () => {
  const formats: OutputFormat[] = ['raw', 'vmdk-stream', 'vmdk-sparse', 'vmdk-flat', 'vhdx'];

  it.each(formats)('%s passes qemu-img check and reads back byte-exact', async (format) => {
    const out = path.join(dir, `mixed-${format}.${EXT[format]}`);
    const progress: number[] = [];
    const result = await writeImage(new BufferDisk(mixed), out, format, { onProgress: (done, total) => {
      expect(total).toBe(mixed.length);
      progress.push(done);
    } });
    expect(result.files[0]).toBe(out);
    for (const f of result.files) await fs.access(f);
    expect(progress[progress.length - 1]).toBe(mixed.length);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(await leftovers(dir)).toEqual([]);

    if (format !== 'raw') expect(await qemuCheck(out, QEMU_FORMAT[format])).toContain('No errors were found');
    await expectSameAsRaw(out, QEMU_FORMAT[format], mixedRaw, mixed);

    // Zero grains/blocks are not stored: the files hold less than the disk (the data is ~8.3 MiB).
    const stored = (await Promise.all(result.files.map((f) => fs.stat(f)))).reduce((s, st) => s + st.blocks * 512, 0);
    expect(stored).toBeLessThan(16 * MiB);
    expect(result.bytesWritten).toBeLessThan(16 * MiB);
    if (format === 'raw') expect((await fs.stat(out)).size).toBe(mixed.length);
  });

  it('streamOptimized: version 3, flags 0x30001, GD at end, footer and end-of-stream markers', async () => {
    const out = path.join(dir, 'layout-stream.vmdk');
    await writeImage(new BufferDisk(mixed), out, 'vmdk-stream');
    const file = await fs.readFile(out);
    expect(file.toString('latin1', 0, 4)).toBe('KDMV');
    expect(file.readUInt32LE(4)).toBe(3);
    expect(file.readUInt32LE(8)).toBe(0x30001);
    expect(file.readBigUInt64LE(12)).toBe(BigInt(mixed.length / 512));
    expect(file.readBigUInt64LE(56)).toBe(0xffffffffffffffffn);
    expect(file.readUInt16LE(77)).toBe(1);
    const tail = file.subarray(file.length - 1536);
    expect(tail.readBigUInt64LE(0)).toBe(1n); // footer marker: one sector follows
    expect(tail.readUInt32LE(12)).toBe(3);
    const footer = tail.subarray(512, 1024);
    expect(footer.toString('latin1', 0, 4)).toBe('KDMV');
    const gdSector = Number(footer.readBigUInt64LE(56));
    expect(file.readUInt32LE((gdSector - 1) * 512 + 12)).toBe(2); // GD marker right before the GD
    expect(tail.subarray(1024).equals(Buffer.alloc(512))).toBe(true);
    // The first grain follows the embedded descriptor: lba 0, a zlib stream (0x78 ..).
    const overHead = Number(file.readBigUInt64LE(64));
    expect(file.toString('latin1', 512, 512 + 21)).toBe('# Disk DescriptorFile');
    expect(file.readBigUInt64LE(overHead * 512)).toBe(0n);
    expect(file[overHead * 512 + 12]).toBe(0x78);
  });

  it('VMDKs open in libvmdk with the right type and size, and libvmdk reads the same bytes', async () => {
    const cases: [OutputFormat, string][] = [
      ['vmdk-stream', 'Stream optimized'],
      ['vmdk-sparse', 'Monolithic sparse'],
      ['vmdk-flat', 'VMFS flat'],
    ];
    for (const [format, type] of cases) {
      const out = path.join(dir, `libvmdk-${format}.vmdk`);
      await writeImage(new BufferDisk(mixed), out, format, { adapterType: 'ide' });
      const info = await vmdkinfo(out);
      expect(info).toContain(type);
      expect(info).toContain(`(${mixed.length} bytes)`);
      expect(info).toContain('Parent content identifier:\t0xffffffff');
      expect((await readThroughLibvmdk(out)).equals(mixed)).toBe(true);
    }
  });

  it('vmfs pair: descriptor names the flat extent, DDB geometry/adapter/uuid, random CID', async () => {
    const out = path.join(dir, 'pair.vmdk');
    const result = await writeImage(new BufferDisk(mixed), out, 'vmdk-flat', { adapterType: 'lsilogic', virtualHWVersion: 14 });
    expect(result.files).toEqual([out, path.join(dir, 'pair-flat.vmdk')]);
    const text = await fs.readFile(out, 'utf8');
    const sectors = mixed.length / 512;
    expect(text).toContain('createType="vmfs"');
    expect(text).toContain(`RW ${sectors} VMFS "pair-flat.vmdk"`);
    expect(text).toContain('parentCID=ffffffff');
    expect(text).toContain('ddb.adapterType = "lsilogic"');
    expect(text).toContain('ddb.geometry.heads = "255"');
    expect(text).toContain(`ddb.geometry.cylinders = "${Math.floor(sectors / (255 * 63))}"`);
    expect(text).toContain('ddb.virtualHWVersion = "14"');
    expect(text).toMatch(/ddb\.uuid = "([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}"/);
    const cid = /CID=([0-9a-f]{8})\n/.exec(text)?.[1];
    await writeImage(new BufferDisk(mixed), out, 'vmdk-flat');
    const cid2 = /CID=([0-9a-f]{8})\n/.exec(await fs.readFile(out, 'utf8'))?.[1];
    expect(cid).toMatch(/^[0-9a-f]{8}$/);
    expect(cid2).not.toBe(cid);
    // The flat extent is sparse: its zero ranges are holes.
    const flat = await fs.stat(result.files[1]);
    expect(flat.size).toBe(mixed.length);
    expect(flat.blocks * 512).toBeLessThan(12 * MiB);
  });

  it('odd-sized raw output keeps the exact size', async () => {
    const data = Buffer.concat([seededBytes('writers', 'odd', 70000), Buffer.alloc(123457)]);
    const out = path.join(dir, 'odd.img');
    await writeImage(new BufferDisk(data), out, 'raw');
    expect((await fs.readFile(out)).equals(data)).toBe(true);
  });
});

describe('sparse sources: only extents are read', () => {
  // 5 GiB virtual disk with data at a few places; with 1 MiB VHDX blocks the data past 4 GiB sits after a
  // sector-bitmap BAT entry (chunk ratio 4096).
  const size = 5 * GiB + 512 * 3;
  const regions = [
    { offset: 0, data: seededBytes('sparse', 'a', 100 * KiB) },
    { offset: 2 * GiB + 4096, data: seededBytes('sparse', 'b', 1 * MiB + 5) },
    { offset: 4 * GiB + 513 * MiB, data: seededBytes('sparse', 'c', 700 * KiB) },
    { offset: size - 1536, data: seededBytes('sparse', 'd', 1536) },
  ];
  let sparseRaw: string;

  beforeAll(async () => {
    sparseRaw = path.join(dir, 'sparse.raw');
    const handle = await fs.open(sparseRaw, 'w');
    await handle.truncate(size);
    for (const r of regions) await handle.write(r.data, 0, r.data.length, r.offset);
    await handle.close();
  });

  const cases: [OutputFormat, Record<string, number>][] = [
    ['vmdk-stream', {}],
    ['vmdk-sparse', {}],
    ['vhdx', { vhdxBlockSize: 1 * MiB }],
    ['raw', {}],
  ];
  it.each(cases)('%s', async (format, extra) => {
    const disk = new RegionDisk(size, regions);
    const out = path.join(dir, `sparse-${format}.${EXT[format]}`);
    const result = await writeImage(disk, out, format, extra);
    const touched = disk.reads.reduce((s, r) => s + r.length, 0);
    expect(touched).toBeLessThan(8 * MiB);
    for (const r of disk.reads) {
      expect(regions.some((g) => r.offset < g.offset + g.data.length + 4 * MiB && g.offset < r.offset + r.length + 4 * MiB)).toBe(true);
    }
    expect(result.bytesWritten).toBeLessThan(8 * MiB);
    if (format !== 'raw') expect(await qemuCheck(out, QEMU_FORMAT[format])).toContain('No errors were found');
    // qemu's VHDX driver reports no allocation status, so a full compare would read all 5 GiB: compare the
    // windows around each region there (and everywhere, for the others, the whole disk).
    if (format !== 'vhdx') await expectSameAsRaw(out, QEMU_FORMAT[format], sparseRaw);
    for (const r of regions) {
      const start = Math.max(0, Math.floor(r.offset / MiB) * MiB - MiB);
      const end = Math.min(size, Math.ceil((r.offset + r.data.length) / MiB) * MiB + MiB);
      const expected = Buffer.alloc(end - start);
      r.data.copy(expected, r.offset - start);
      const window = path.join(dir, 'window.raw');
      const opts = `driver=raw,offset=${start},size=${end - start},file.driver=${QEMU_FORMAT[format]},file.file.driver=file,file.file.filename=${out}`;
      await run('qemu-img', ['convert', '-O', 'raw', '--image-opts', opts, window]);
      expect((await fs.readFile(window)).equals(expected)).toBe(true);
    }
  });
});

describe('streaming export', () => {
  it('streamOptimizedStream produces a valid image through a pipe', async () => {
    const out = path.join(dir, 'piped.vmdk');
    await pipeline(streamOptimizedStream(new BufferDisk(mixed), { fileName: 'piped.vmdk', compressionLevel: 6 }), (await fs.open(out, 'w')).createWriteStream());
    expect(await qemuCheck(out, 'vmdk')).toContain('No errors were found');
    await expectSameAsRaw(out, 'vmdk', mixedRaw);
  });

  it('destroying the stream stops reading the source', async () => {
    const disk = new RegionDisk(mixed.length, [{ offset: 0, data: mixed }]);
    const stream = streamOptimizedStream(disk);
    let got = 0;
    for await (const chunk of stream) {
      got += (chunk as Buffer).length;
      if (got > 512 * KiB) break;
    }
    expect(stream.destroyed).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    const readBytes = disk.reads.reduce((s, r) => s + r.length, 0);
    expect(readBytes).toBeLessThan(mixed.length / 2);
  });
});

describe('OVA', () => {
  it('tar with the OVF first, streamOptimized disks, a SHA-256 manifest that verifies', async () => {
    const small = Buffer.concat([Buffer.alloc(MiB), seededBytes('ova', 'small', 2 * MiB), Buffer.alloc(512)]);
    const smallRaw = path.join(dir, 'small.raw');
    await fs.writeFile(smallRaw, small);
    const out = path.join(dir, 'Demo VM.ova');
    const result = await writeOva([new BufferDisk(mixed), new BufferDisk(small)], out, { cpus: 2, memoryMiB: 2048, osType: 'ubuntu64Guest' });
    expect(result.members).toEqual(['Demo_VM.ovf', 'Demo_VM-disk1.vmdk', 'Demo_VM-disk2.vmdk', 'Demo_VM.mf']);
    expect(await leftovers(dir)).toEqual([]);

    const { stdout: listing } = await run('tar', ['-tf', out]);
    expect(listing.trim().split('\n')).toEqual(result.members);

    const x = await fs.mkdtemp(path.join(dir, 'ova-'));
    await run('tar', ['-xf', out, '-C', x]);
    const manifest = await fs.readFile(path.join(x, 'Demo_VM.mf'), 'utf8');
    const lines = manifest.trim().split('\n');
    expect(lines).toHaveLength(3);
    const sums = lines.map((l) => {
      const m = /^SHA256\((.+)\)= ([0-9a-f]{64})$/.exec(l);
      expect(m).not.toBeNull();
      return `${m![2]}  ${m![1]}\n`;
    });
    await fs.writeFile(path.join(x, 'sums'), sums.join(''));
    const { stdout: verified } = await run('sha256sum', ['-c', 'sums'], { cwd: x });
    expect(verified.trim().split('\n').every((l) => l.endsWith(': OK'))).toBe(true);
    expect(await sha256File(path.join(x, 'Demo_VM-disk2.vmdk'))).toBe(/SHA256\(Demo_VM-disk2.vmdk\)= (\w+)/.exec(manifest)![1]);

    const ovf = await fs.readFile(path.join(x, 'Demo_VM.ovf'), 'utf8');
    const parsed = await run('python3', ['-c', [
      'import sys, xml.etree.ElementTree as ET',
      'ns={"o":"http://schemas.dmtf.org/ovf/envelope/1","r":"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"}',
      'e=ET.parse(sys.argv[1]).getroot()',
      'A="{http://schemas.dmtf.org/ovf/envelope/1}"',
      'print(",".join(f.get(A+"href")+":"+f.get(A+"size") for f in e.findall("o:References/o:File",ns)))',
      'print(",".join(d.get(A+"capacity")+":"+d.get(A+"fileRef") for d in e.findall("o:DiskSection/o:Disk",ns)))',
      'print(",".join(i.find("r:ResourceType",ns).text for i in e.findall("o:VirtualSystem/o:VirtualHardwareSection/o:Item",ns)))',
    ].join('\n'), path.join(x, 'Demo_VM.ovf')]);
    const [refs, disks, types] = parsed.stdout.trim().split('\n');
    const size1 = (await fs.stat(path.join(x, 'Demo_VM-disk1.vmdk'))).size;
    const size2 = (await fs.stat(path.join(x, 'Demo_VM-disk2.vmdk'))).size;
    expect(refs).toBe(`Demo_VM-disk1.vmdk:${size1},Demo_VM-disk2.vmdk:${size2}`);
    expect(disks).toBe(`${mixed.length}:file1,${small.length}:file2`);
    expect(types).toBe('3,4,6,17,17');
    expect(ovf).toContain('vmw:osType="ubuntu64Guest"');
    expect(ovf).toContain('<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>');

    await expectSameAsRaw(path.join(x, 'Demo_VM-disk1.vmdk'), 'vmdk', mixedRaw, mixed);
    await expectSameAsRaw(path.join(x, 'Demo_VM-disk2.vmdk'), 'vmdk', smallRaw, small);
  });
});

describe('failures leave nothing at OUT', () => {
  const abortAfter = (bytes: number) => {
    const ctl = new AbortController();
    return { signal: ctl.signal, onProgress: (done: number) => (done >= bytes ? ctl.abort() : undefined) };
  };

  it.each(['raw', 'vmdk-stream', 'vmdk-sparse', 'vmdk-flat', 'vhdx'] as OutputFormat[])('abort mid-write of %s', async (format) => {
    const sub = await fs.mkdtemp(path.join(dir, 'abort-'));
    const out = path.join(sub, `a.${EXT[format]}`);
    await expect(writeImage(new BufferDisk(mixed), out, format, abortAfter(8 * MiB))).rejects.toMatchObject({ name: 'AbortError' });
    expect(await fs.readdir(sub)).toEqual([]);
  });

  it('abort of an OVA and a failing source keep an existing OUT untouched', async () => {
    const sub = await fs.mkdtemp(path.join(dir, 'fail-'));
    const ova = path.join(sub, 'x.ova');
    await expect(writeOva(new BufferDisk(mixed), ova, abortAfter(4 * MiB))).rejects.toMatchObject({ name: 'AbortError' });
    expect(await fs.readdir(sub)).toEqual([]);

    const out = path.join(sub, 'keep.vmdk');
    await fs.writeFile(out, 'previous content');
    const failing = new RegionDisk(mixed.length, [{ offset: 0, data: mixed }], 20 * MiB);
    await expect(writeImage(failing, out, 'vmdk-stream')).rejects.toThrow('simulated read failure');
    expect(await fs.readFile(out, 'utf8')).toBe('previous content');
    expect(await fs.readdir(sub)).toEqual(['keep.vmdk']);
  });

  it('refuses bad requests with typed errors before creating anything', async () => {
    const sub = await fs.mkdtemp(path.join(dir, 'bad-'));
    const odd = new BufferDisk(Buffer.alloc(1000));
    const ok = new BufferDisk(Buffer.alloc(MiB));
    const cases: [Promise<unknown>, RegExp][] = [
      [writeImage(odd, path.join(sub, 'a.vmdk'), 'vmdk-stream'), /not a multiple of 512/],
      [writeImage(odd, path.join(sub, 'b.vhdx'), 'vhdx'), /not a multiple of 512/],
      [writeImage(new BufferDisk(Buffer.alloc(0)), path.join(sub, 'c.vmdk'), 'vmdk-sparse'), /empty disk/],
      [writeImage(ok, path.join(sub, 'd.img'), 'qcow2' as OutputFormat), /unknown output format "qcow2"/],
      [writeImage(ok, path.join(sub, 'e.vmdk'), 'vmdk-stream', { compressionLevel: 12 }), /compression level must be an integer from 1 to 9/],
      [writeImage(ok, path.join(sub, 'f.vhdx'), 'vhdx', { vhdxBlockSize: 3 * MiB }), /power of two/],
      [writeImage(ok, path.join(sub, 'g.vmdk'), 'vmdk-flat', { adapterType: 'nvme' as 'ide' }), /adapter type must be one of/],
      [writeImage(ok, path.join(sub, 'h"x.vmdk'), 'vmdk-sparse'), /cannot be named in a VMDK descriptor/],
      [writeImage(ok, path.join(sub, 'missing', 'i.img'), 'raw'), /cannot create the output file \(ENOENT\)/],
      [writeOva([], path.join(sub, 'j.ova')), /at least one disk/],
      [writeOva(ok, path.join(sub, 'k.ova'), { controller: 'ide' }).then(() => writeOva(Array(5).fill(ok), path.join(sub, 'l.ova'), { controller: 'ide' })), /at most 4 disks/],
    ];
    for (const [promise, message] of cases) {
      const err = await promise.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ImageWriteError);
      expect((err as Error).message).toMatch(message);
    }
    expect(await fs.readdir(sub)).toEqual(['k.ova']);
  });
});
