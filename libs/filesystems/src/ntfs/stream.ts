/** Reading attribute values: resident buffers, mapped (sparse-aware) runs, and LZNT1-compressed units. */
import { checkRange, Disk, Extent } from '@vmkeep/disk';
import { FileSystemError } from '../errors';
import { BufferFile, MappedFile, MAX_READ, Run } from '../file';
import type { FileHandle } from '../types';
import { lznt1Decompress } from './lznt1';
import { ATTR_FLAG, Attribute } from './record';
import type { ClusterRun } from './runs';

/** An attribute with all its pieces (from an attribute list) merged: one run list covering VCN 0 onwards. */
export interface Stream {
  first: Attribute;
  runs: ClusterRun[];
}

/** Merges the pieces of one non-resident attribute (sorted by start VCN); pieces must follow each other. */
export function mergePieces(pieces: Attribute[]): Stream {
  const sorted = [...pieces].sort((a, b) => a.startVcn - b.startVcn);
  const first = sorted[0];
  const runs: ClusterRun[] = [];
  let vcn = 0;
  for (const piece of sorted) {
    if (piece.value !== undefined) throw new FileSystemError('ntfs', 'attribute list', 'a resident attribute is split into pieces', piece.offset);
    if (piece.startVcn !== vcn) throw new FileSystemError('ntfs', 'attribute', `piece starts at VCN ${piece.startVcn}, expected ${vcn}`, piece.offset);
    for (const r of piece.runs) runs.push(r);
    vcn = piece.startVcn + piece.runs.reduce((n, r) => n + r.count, 0);
  }
  return { first, runs };
}

function checkSizes(s: Stream, clusterSize: number): void {
  const { first } = s;
  const mappedBytes = s.runs.reduce((n, r) => n + r.count, 0) * clusterSize;
  if (first.dataSize > first.allocatedSize || first.initializedSize > first.dataSize || first.allocatedSize > mappedBytes) {
    throw new FileSystemError(
      'ntfs', 'attribute',
      `sizes are inconsistent (data ${first.dataSize}, initialized ${first.initializedSize}, allocated ${first.allocatedSize}, mapped ${mappedBytes})`,
      first.offset,
    );
  }
}

/** Byte runs of an uncompressed stream, without sparse runs and cut at the initialized size. */
function byteRuns(s: Stream, clusterSize: number): Run[] {
  const out: Run[] = [];
  const end = s.first.initializedSize;
  for (const r of s.runs) {
    const fileOffset = r.vcn * clusterSize;
    if (fileOffset >= end) break;
    if (r.lcn === null) continue;
    out.push({ fileOffset, length: Math.min(r.count * clusterSize, end - fileOffset), diskOffset: r.lcn * clusterSize });
  }
  return out;
}

/** A compressed stream: units of 2^unit clusters, each stored raw (all clusters), sparse (none) or LZNT1 (some). */
export class CompressedFile implements FileHandle {
  private readonly unitSize: number;
  private cached?: { unit: number; data: Buffer };

  constructor(
    private readonly disk: Disk,
    private readonly stream: Stream,
    private readonly clusterSize: number,
    readonly size: number,
  ) {
    this.unitSize = clusterSize << stream.first.compressionUnit;
  }

  /** Allocated clusters of unit `u` as disk byte runs, in VCN order. */
  private unitRuns(u: number): { diskOffset: number; length: number }[] {
    const per = this.unitSize / this.clusterSize;
    const from = u * per;
    const to = from + per;
    const out: { diskOffset: number; length: number }[] = [];
    const runs = this.stream.runs;
    let lo = 0;
    for (let hi = runs.length; lo < hi; ) {
      const mid = (lo + hi) >> 1;
      if (runs[mid].vcn + runs[mid].count <= from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < runs.length; i++) {
      const r = runs[i];
      if (r.vcn >= to) break;
      if (r.lcn === null) continue;
      const a = Math.max(from, r.vcn);
      const b = Math.min(to, r.vcn + r.count);
      out.push({ diskOffset: (r.lcn + a - r.vcn) * this.clusterSize, length: (b - a) * this.clusterSize });
    }
    return out;
  }

  private async unit(u: number): Promise<Buffer> {
    if (this.cached?.unit === u) return this.cached.data;
    const runs = this.unitRuns(u);
    const stored = runs.reduce((n, r) => n + r.length, 0);
    const data = Buffer.alloc(this.unitSize);
    if (stored === this.unitSize) {
      let at = 0;
      for (const r of runs) {
        (await this.disk.read(r.diskOffset, r.length)).copy(data, at);
        at += r.length;
      }
    } else if (stored > 0) {
      const src = Buffer.concat(await Promise.all(runs.map((r) => this.disk.read(r.diskOffset, r.length))));
      lznt1Decompress(src, data, runs[0].diskOffset);
    }
    this.cached = { unit: u, data };
    return data;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'ntfs', offset, length);
    if (length > MAX_READ) throw new FileSystemError('ntfs', 'file read', `read of ${length} bytes exceeds the ${MAX_READ}-byte limit`, offset);
    const out = Buffer.alloc(length);
    const end = Math.min(offset + length, this.stream.first.initializedSize);
    for (let pos = offset; pos < end; ) {
      const u = Math.floor(pos / this.unitSize);
      const unitStart = u * this.unitSize;
      const take = Math.min(end, unitStart + this.unitSize) - pos;
      if (this.unitRuns(u).length) (await this.unit(u)).copy(out, pos - offset, pos - unitStart, pos - unitStart + take);
      pos += take;
    }
    return out;
  }

  async extents(): Promise<Extent[]> {
    const out: Extent[] = [];
    const units = Math.ceil(this.size / this.unitSize);
    for (let u = 0; u < units; u++) {
      if (!this.unitRuns(u).length) continue;
      const offset = u * this.unitSize;
      const length = Math.min(this.unitSize, this.size - offset);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === offset) last.length += length;
      else out.push({ offset, length });
    }
    return out;
  }
}

/** A FileHandle over a stream's value: resident bytes, mapped runs, or compressed units. */
export function openStream(disk: Disk, s: Stream, clusterSize: number): FileHandle {
  const { first } = s;
  if (first.value !== undefined) return new BufferFile(first.value, 'ntfs');
  checkSizes(s, clusterSize);
  if (first.flags & ATTR_FLAG.compressed) {
    if (first.compressionUnit === 0 || first.compressionUnit > 4 || clusterSize > 4096) {
      throw new FileSystemError('ntfs', 'attribute', `compression unit 2^${first.compressionUnit} with ${clusterSize}-byte clusters is invalid`, first.offset);
    }
    return new CompressedFile(disk, s, clusterSize, first.dataSize);
  }
  return new MappedFile(disk, 'ntfs', first.dataSize, byteRuns(s, clusterSize));
}

/** Reads a whole (metadata) stream, refusing values over `limit` bytes. */
export async function readWhole(disk: Disk, s: Stream, clusterSize: number, limit: number, structure: string): Promise<Buffer> {
  if (s.first.dataSize > limit) throw new FileSystemError('ntfs', structure, `${s.first.dataSize} bytes exceed the ${limit}-byte limit`, s.first.offset);
  const h = openStream(disk, s, clusterSize);
  return h.read(0, h.size);
}
