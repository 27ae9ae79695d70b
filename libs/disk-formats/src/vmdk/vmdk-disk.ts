import { checkRange, type Extent } from '@vmkeep/disk';
import type { ImageDisk, ImageInfo } from '../types';
import type { VmdkDescriptor } from './descriptor';
import type { VmdkExtent } from './layer';
import { normalizeRanges, subtractRanges, clipRanges } from './ranges';

/**
 * One VMDK layer: its extents concatenated in descriptor order, over an optional parent (itself a VmdkDisk).
 * Ranges a layer does not hold fall through to the parent, or read as zeros without one.
 */
export class VmdkDisk implements ImageDisk {
  readonly size: number;
  private readonly starts: number[] = [];

  constructor(
    readonly info: ImageInfo,
    private readonly layers: VmdkExtent[],
    readonly descriptor: VmdkDescriptor | undefined,
    readonly parent: VmdkDisk | undefined,
  ) {
    let at = 0;
    for (const l of layers) {
      this.starts.push(at);
      at += l.length;
    }
    this.size = at;
  }

  private get name(): string {
    return this.info.files[0] ?? 'vmdk';
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, this.name, offset, length);
    const out = Buffer.alloc(length);
    const end = offset + length;
    for (let i = this.indexOf(offset); i < this.layers.length && this.starts[i] < end; i++) {
      const layer = this.layers[i];
      const from = Math.max(offset, this.starts[i]);
      const to = Math.min(end, this.starts[i] + layer.length);
      if (to <= from) continue;
      let at = from;
      for (const piece of await layer.read(from - this.starts[i], to - from)) {
        if (piece.kind === 'data') {
          piece.data.copy(out, at - offset);
          at += piece.data.length;
          continue;
        }
        if (piece.kind === 'absent' && this.parent && at < this.parent.size) {
          const n = Math.min(piece.length, this.parent.size - at);
          (await this.parent.read(at, n)).copy(out, at - offset);
        }
        at += piece.length;
      }
    }
    return out;
  }

  /** Index of the extent holding `offset` (binary search over the start offsets). */
  private indexOf(offset: number): number {
    let lo = 0;
    let hi = this.layers.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Allocated (data) and explicitly zeroed ranges of this layer alone, in disk offsets. */
  async ownMap(): Promise<{ data: Extent[]; zero: Extent[] }> {
    const data: Extent[] = [];
    const zero: Extent[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      const m = await this.layers[i].map();
      for (const r of m.data) data.push({ offset: r.offset + this.starts[i], length: r.length });
      for (const r of m.zero) zero.push({ offset: r.offset + this.starts[i], length: r.length });
    }
    return { data: normalizeRanges(data), zero: normalizeRanges(zero) };
  }

  async extents(): Promise<Extent[]> {
    const own = await this.ownMap();
    if (!this.parent) return own.data;
    const hidden = normalizeRanges([...own.data, ...own.zero]);
    const inherited = subtractRanges(clipRanges(await this.parent.extents(), this.size), hidden);
    return normalizeRanges([...own.data, ...inherited]);
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([...this.layers.map((l) => l.close()), this.parent?.close()]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
