/**
 * VHD/VHDX fixtures for the disk-format tests: images written by qemu-img, their reference bytes and
 * allocation map as qemu-img reads them, and hand-built variants qemu cannot write (differencing disks,
 * a VHDX with a log to replay) or that are broken on purpose. Everything is derived from first principles
 * (the published layouts), independently of the readers under test.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
export const KiB = 1024;
export const MiB = 1024 * KiB;

export interface Extent {
  offset: number;
  length: number;
}

export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('qemu-img', args, { maxBuffer: 64 * MiB });
  return stdout;
}

/** The virtual disk as qemu-img reads it (`convert -O raw`). */
export async function qemuRaw(image: string, format: 'vpc' | 'vhdx' | 'vmdk' | 'raw'): Promise<Buffer> {
  const out = `${image}.qemu.raw`;
  await qemuImg('convert', '-f', format, '-O', 'raw', image, out);
  try {
    return await fs.readFile(out);
  } finally {
    await fs.rm(out, { force: true });
  }
}

/** Ranges qemu-img reports as data, merged. */
export async function qemuDataExtents(image: string, format: 'vpc' | 'vhdx'): Promise<Extent[]> {
  const map = JSON.parse(await qemuImg('map', '-f', format, '--output=json', image)) as Array<{ start: number; length: number; data: boolean }>;
  const out: Extent[] = [];
  for (const m of map) {
    if (!m.data) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === m.start) last.length += m.length;
    else out.push({ offset: m.start, length: m.length });
  }
  return out;
}

export function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

// ---- VHD (big-endian) ----

function vhdChecksum(buf: Buffer, field: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < field || i >= field + 4) sum += buf[i];
  return ~sum >>> 0;
}

/** Rewrites the checksum of the 512-byte footer at `at` (and returns the footer). */
export function fixVhdFooter(file: Buffer, at: number): void {
  const footer = file.subarray(at, at + 512);
  footer.writeUInt32BE(vhdChecksum(footer, 64), 64);
}

export function fixVhdDynamicHeader(file: Buffer): void {
  const header = file.subarray(512, 512 + 1024);
  header.writeUInt32BE(vhdChecksum(header, 36), 36);
}

export interface VhdLayout {
  blockSize: number;
  tableOffset: number;
  blocks: number;
  bitmapBytes: number;
}

export function vhdLayout(file: Buffer): VhdLayout {
  const dataOffset = Number(file.readBigUInt64BE(16));
  const blockSize = file.readUInt32BE(dataOffset + 32);
  const size = Number(file.readBigUInt64BE(file.length - 512 + 48));
  return {
    blockSize,
    tableOffset: Number(file.readBigUInt64BE(dataOffset + 16)),
    blocks: Math.ceil(size / blockSize),
    bitmapBytes: Math.ceil(blockSize / 512 / 8 / 512) * 512,
  };
}

/**
 * Turns a dynamic VHD made by qemu into a differencing child of `parent` (named `parentName` in the same
 * folder): type 4, parent unique id and name, a W2ru relative locator; then, in the first `partialBlocks`
 * allocated blocks, only sectors whose number has bit 1 clear stay in the child (MSB-first bitmap), and
 * the block `absentBlock` is unallocated (read from the parent). Returns the expected virtual disk.
 */
export function makeVhdDifferencing(
  child: Buffer,
  childData: Buffer,
  parent: Buffer,
  parentData: Buffer,
  parentName: string,
  opts: { partialBlocks: number; absentBlock: number },
): { image: Buffer; expected: Buffer } {
  const footer = Buffer.from(child.subarray(child.length - 512));
  const body = Buffer.from(child.subarray(0, child.length - 512));
  const layout = vhdLayout(child);
  // Locator data: one sector appended after the last block, before the footer.
  const locatorAt = body.length;
  const locator = Buffer.alloc(512);
  const rel = Buffer.from(`.\\${parentName}`, 'utf16le');
  rel.copy(locator);
  const image = Buffer.concat([body, locator, footer]);
  const parentId = parent.subarray(parent.length - 512 + 68, parent.length - 512 + 84);
  for (const at of [0, image.length - 512]) {
    image.writeUInt32BE(4, at + 60);
    fixVhdFooter(image, at);
  }
  const h = 512;
  parentId.copy(image, h + 40);
  image.fill(0, h + 64, h + 576);
  const name = Buffer.from(parentName, 'utf16le').swap16();
  name.copy(image, h + 64);
  image.write('W2ru', h + 576, 'latin1');
  image.writeUInt32BE(512, h + 576 + 4);
  image.writeUInt32BE(rel.length, h + 576 + 8);
  image.writeBigUInt64BE(BigInt(locatorAt), h + 576 + 16);
  fixVhdDynamicHeader(image);

  const expected = Buffer.from(parentData);
  let partial = 0;
  for (let b = 0; b < layout.blocks; b++) {
    const entryAt = layout.tableOffset + b * 4;
    const sector = image.readUInt32BE(entryAt);
    const start = b * layout.blockSize;
    const end = Math.min(start + layout.blockSize, expected.length);
    if (sector === 0xffffffff) continue;
    if (b === opts.absentBlock) {
      image.writeUInt32BE(0xffffffff, entryAt);
      continue;
    }
    const bitmap = image.subarray(sector * 512, sector * 512 + layout.bitmapBytes);
    if (partial < opts.partialBlocks) {
      partial++;
      for (let s = 0; s < layout.blockSize / 512; s++) {
        const mine = (s & 2) === 0;
        bitmap[s >> 3] = mine ? bitmap[s >> 3] | (0x80 >> (s & 7)) : bitmap[s >> 3] & ~(0x80 >> (s & 7));
        if (mine) childData.copy(expected, start + s * 512, start + s * 512, Math.min(start + s * 512 + 512, end));
      }
    } else {
      bitmap.fill(0xff);
      childData.copy(expected, start, start, end);
    }
  }
  return { image, expected };
}

// ---- VHDX (little-endian, CRC-32C) ----

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Sets the CRC-32C of a structure whose checksum is at +4 and covers `length` bytes. */
export function fixCrc(file: Buffer, at: number, length: number): void {
  const s = file.subarray(at, at + length);
  s.writeUInt32LE(0, 4);
  s.writeUInt32LE(crc32c(s), 4);
}

/** GUID bytes (mixed-endian) to the usual text form. */
export function guidText(b: Buffer): string {
  const h = (x: Buffer) => x.toString('hex');
  const rev = (x: Buffer) => Buffer.from(x).reverse();
  return `${h(rev(b.subarray(0, 4)))}-${h(rev(b.subarray(4, 6)))}-${h(rev(b.subarray(6, 8)))}-${h(b.subarray(8, 10))}-${h(b.subarray(10, 16))}`;
}

export interface VhdxLayout {
  /** Offset of the current (higher sequence) header. */
  header: number;
  other: number;
  batOffset: number;
  metaOffset: number;
  blockSize: number;
  chunkRatio: number;
  virtualSize: number;
}

const GUID_BAT = '2dc27766-f623-4200-9d64-115e9bfd4a08';
const GUID_META = '8b7ca206-4790-4b9a-b8fe-575f050f886e';
const GUID_FILE_PARAMS = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
const GUID_SIZE = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
const GUID_PARENT_LOCATOR = Buffer.from('2d5fd3a80bb34d45abf7d3d84834ab0c', 'hex');
const PARENT_LOCATOR_TYPE = Buffer.from('b7ef4ab09ed1814ab78925b8e9445913', 'hex');

export function vhdxLayout(file: Buffer): VhdxLayout {
  const seq = (at: number) => file.readBigUInt64LE(at + 8);
  const [header, other] = seq(64 * KiB) > seq(128 * KiB) ? [64 * KiB, 128 * KiB] : [128 * KiB, 64 * KiB];
  const rt = 192 * KiB;
  let batOffset = 0;
  let metaOffset = 0;
  for (let i = 0; i < file.readUInt32LE(rt + 8); i++) {
    const e = rt + 16 + i * 32;
    const g = guidText(file.subarray(e, e + 16));
    if (g === GUID_BAT) batOffset = Number(file.readBigUInt64LE(e + 16));
    if (g === GUID_META) metaOffset = Number(file.readBigUInt64LE(e + 16));
  }
  const item = (guid: string) => {
    for (let i = 0; i < file.readUInt16LE(metaOffset + 10); i++) {
      const e = metaOffset + 32 + i * 32;
      if (guidText(file.subarray(e, e + 16)) === guid) return metaOffset + file.readUInt32LE(e + 16);
    }
    throw new Error(`metadata item ${guid} missing`);
  };
  const blockSize = file.readUInt32LE(item(GUID_FILE_PARAMS));
  return {
    header,
    other,
    batOffset,
    metaOffset,
    blockSize,
    chunkRatio: (2 ** 23 * 512) / blockSize,
    virtualSize: Number(file.readBigUInt64LE(item(GUID_SIZE))),
  };
}

export function batIndex(layout: VhdxLayout, block: number): number {
  return block + Math.floor(block / layout.chunkRatio);
}

export function readBat(file: Buffer, layout: VhdxLayout, index: number): { state: number; offset: number } {
  const v = file.readBigUInt64LE(layout.batOffset + index * 8);
  return { state: Number(v & 7n), offset: Number((v >> 20n) << 20n) };
}

export function writeBat(file: Buffer, layout: VhdxLayout, index: number, state: number, offset: number): void {
  file.writeBigUInt64LE(BigInt(offset) | BigInt(state), layout.batOffset + index * 8);
}

/**
 * Turns a dynamic VHDX made by qemu (1 MiB blocks, 512-byte sectors) into a differencing child of `parent`:
 * HasParent, a parent locator (parent_linkage = parent's DataWriteGuid, relative_path), a sector bitmap block.
 * Block `partialBlock` becomes PARTIALLY_PRESENT (sectors with bit 2 clear stay in the child, LSB-first
 * bitmap), `zeroBlock` becomes ZERO, `absentBlock` NOT_PRESENT. Returns the expected virtual disk.
 */
export function makeVhdxDifferencing(
  child: Buffer,
  childData: Buffer,
  parent: Buffer,
  parentData: Buffer,
  parentName: string,
  opts: { partialBlock: number; zeroBlock: number; absentBlock: number; linkage?: string },
): { image: Buffer; expected: Buffer } {
  const bitmapAt = Math.ceil(child.length / MiB) * MiB;
  const image = Buffer.alloc(bitmapAt + MiB);
  child.copy(image);
  const layout = vhdxLayout(image);
  const parentLayout = vhdxLayout(parent);
  const parentGuid = guidText(parent.subarray(parentLayout.header + 32, parentLayout.header + 48));

  // Metadata: HasParent flag and a parent locator item at +256 KiB of the metadata region.
  const m = layout.metaOffset;
  const count = image.readUInt16LE(m + 10);
  for (let i = 0; i < count; i++) {
    const e = m + 32 + i * 32;
    if (guidText(image.subarray(e, e + 16)) === GUID_FILE_PARAMS) {
      const fp = m + image.readUInt32LE(e + 16);
      image.writeUInt32LE(image.readUInt32LE(fp + 4) | 2, fp + 4);
    }
  }
  const entries: [string, string][] = [
    ['parent_linkage', `{${opts.linkage ?? parentGuid}}`],
    ['relative_path', `.\\${parentName}`],
  ];
  const kv = Buffer.alloc(4096);
  PARENT_LOCATOR_TYPE.copy(kv, 0);
  kv.writeUInt16LE(entries.length, 18);
  let strAt = 20 + entries.length * 12;
  entries.forEach(([k, v], i) => {
    const kb = Buffer.from(k, 'utf16le');
    const vb = Buffer.from(v, 'utf16le');
    kv.writeUInt32LE(strAt, 20 + i * 12);
    kb.copy(kv, strAt);
    strAt += kb.length;
    kv.writeUInt32LE(strAt, 20 + i * 12 + 4);
    vb.copy(kv, strAt);
    strAt += vb.length;
    kv.writeUInt16LE(kb.length, 20 + i * 12 + 8);
    kv.writeUInt16LE(vb.length, 20 + i * 12 + 10);
  });
  const locAt = 256 * KiB;
  kv.copy(image, m + locAt, 0, strAt);
  const e = m + 32 + count * 32;
  GUID_PARENT_LOCATOR.copy(image, e);
  image.writeUInt32LE(locAt, e + 16);
  image.writeUInt32LE(strAt, e + 20);
  image.writeUInt32LE(4, e + 24);
  image.writeUInt16LE(count + 1, m + 10);

  // Sector bitmap of chunk 0, then the block states.
  writeBat(image, layout, layout.chunkRatio, 6, bitmapAt);
  const expected = Buffer.alloc(layout.virtualSize);
  const blocks = Math.ceil(layout.virtualSize / layout.blockSize);
  const sectorsPerBlock = layout.blockSize / 512;
  for (let b = 0; b < blocks; b++) {
    const idx = batIndex(layout, b);
    const start = b * layout.blockSize;
    const end = Math.min(start + layout.blockSize, layout.virtualSize);
    const { state, offset } = readBat(image, layout, idx);
    if (b === opts.zeroBlock) {
      writeBat(image, layout, idx, 2, 0);
    } else if (b === opts.absentBlock || state !== 6) {
      writeBat(image, layout, idx, 0, 0);
      parentData.copy(expected, start, start, end);
    } else if (b === opts.partialBlock) {
      writeBat(image, layout, idx, 7, offset);
      for (let s = 0; s < sectorsPerBlock; s++) {
        const bit = b * sectorsPerBlock + s;
        const mine = (s & 4) === 0;
        if (mine) image[bitmapAt + (bit >> 3)] |= 1 << (bit & 7);
        const src = mine ? childData : parentData;
        src.copy(expected, start + s * 512, start + s * 512, Math.min(start + s * 512 + 512, end));
      }
    } else {
      childData.copy(expected, start, start, end);
    }
  }
  return { image, expected };
}

/**
 * Leaves a dirty log in a clean VHDX (like a host that lost power mid-update): entry 1 rewrites one 4 KiB
 * sector of payload block `dataBlock` with `newData` and zeroes the next 8 KiB; entry 2 rewrites the BAT
 * sector so that `zeroedBlock` reads as ZERO. Both entries are valid; the file itself is untouched.
 * `breakTail` makes the head entry name a tail that holds no entry (an incomplete sequence).
 */
export function addDirtyLog(
  file: Buffer,
  opts: { dataBlock: number; zeroedBlock: number; newData: Buffer; breakTail?: boolean; corruptEntries?: boolean },
): { image: Buffer; dataAt: number } {
  const image = Buffer.from(file);
  const layout = vhdxLayout(image);
  const h = layout.header;
  const logLength = image.readUInt32LE(h + 68);
  const logOffset = Number(image.readBigUInt64LE(h + 72));
  const logGuid = randomBytes(16);
  logGuid.copy(image, h + 48);
  fixCrc(image, h, 4 * KiB);

  const { offset: blockAt } = readBat(image, layout, batIndex(layout, opts.dataBlock));
  const dataAt = blockAt + 4 * KiB;
  const batSectorAt = layout.batOffset + Math.floor((batIndex(layout, opts.zeroedBlock) * 8) / 4096) * 4096;
  const batSector = Buffer.from(image.subarray(batSectorAt, batSectorAt + 4096));
  batSector.writeBigUInt64LE(2n, (batIndex(layout, opts.zeroedBlock) * 8) % 4096);
  const seq = 0x1122334455n;
  const fileSize = BigInt(image.length);

  const entry = (sequence: bigint, position: number, tail: number, writes: Array<{ data?: Buffer; zero?: number; at: number }>) => {
    const dataWrites = writes.filter((w) => w.data);
    const length = 4096 + dataWrites.length * 4096;
    const e = Buffer.alloc(length);
    e.write('loge', 0, 'latin1');
    e.writeUInt32LE(length, 8);
    e.writeUInt32LE(tail, 12);
    e.writeBigUInt64LE(sequence, 16);
    e.writeUInt32LE(writes.length, 24);
    logGuid.copy(e, 32);
    e.writeBigUInt64LE(fileSize, 48);
    e.writeBigUInt64LE(fileSize, 56);
    let sector = 1;
    writes.forEach((w, i) => {
      const d = 64 + i * 32;
      if (w.data) {
        e.write('desc', d, 'latin1');
        w.data.copy(e, d + 4, 4092, 4096);
        w.data.copy(e, d + 8, 0, 8);
        const s = sector++ * 4096;
        e.write('data', s, 'latin1');
        e.writeUInt32LE(Number(sequence >> 32n), s + 4);
        w.data.copy(e, s + 8, 8, 4092);
        e.writeUInt32LE(Number(sequence & 0xffffffffn), s + 4092);
      } else {
        e.write('zero', d, 'latin1');
        e.writeBigUInt64LE(BigInt(w.zero!), d + 8);
      }
      e.writeBigUInt64LE(BigInt(w.at), d + 16);
      e.writeBigUInt64LE(sequence, d + 24);
    });
    e.writeUInt32LE(crc32c(e), 4);
    if (opts.corruptEntries) e[100] ^= 0xff;
    e.copy(image, logOffset + position);
    return length;
  };
  image.fill(0, logOffset, logOffset + logLength);
  const first = entry(seq, 0, 0, [
    { data: opts.newData, at: dataAt },
    { zero: 8192, at: dataAt + 4096 },
  ]);
  entry(seq + 1n, first, opts.breakTail ? first + 8192 : 0, [{ data: batSector, at: batSectorAt }]);
  return { image, dataAt };
}
