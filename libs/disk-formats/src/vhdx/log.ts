/**
 * VHDX log replay, in memory. A non-empty log (LogGuid set) holds metadata writes that may not have reached
 * their place in the file; until they are applied the BAT and metadata cannot be trusted. We never write the
 * user's file: the active sequence of log entries is replayed into an overlay that every later read goes
 * through. When the log is damaged in a way we cannot resolve, VhdxLogError refuses the image.
 */
import { DiskFormatError } from '../errors';
import type { ByteSource } from '../source';
import { crc32cWithZeroedField } from './crc32c';
import { readGuid } from './guid';
import type { VhdxHeader } from './structures';

const SECTOR = 4096;
/** Logs are 1 MiB by default; anything beyond this is refused rather than held in memory. */
export const MAX_LOG_LENGTH = 64 * 1024 * 1024;

/** The log cannot be replayed: reading the image would show stale data. */
export class VhdxLogError extends DiskFormatError {
  constructor(message: string, file: string, offset?: number) {
    super(message, file, 'VHDX log', offset);
    this.name = 'VhdxLogError';
  }
}

interface Write {
  kind: 'data' | 'zero';
  fileOffset: number;
  length: number;
  data?: Buffer;
}

interface Entry {
  position: number;
  length: number;
  tail: number;
  sequence: bigint;
  flushedFileOffset: number;
  lastFileOffset: number;
  writes: Write[];
}

export interface LogReplay {
  source: ByteSource;
  entries: number;
  sequence: bigint;
}

/** Parses the entry at `position` of the circular log, or returns null when none is valid there. */
function parseEntry(log: Buffer, position: number, logGuid: string): Entry | null {
  const at = (pos: number, len: number) => {
    const start = pos % log.length;
    if (start + len <= log.length) return log.subarray(start, start + len);
    return Buffer.concat([log.subarray(start), log.subarray(0, len - (log.length - start))]);
  };
  const head = at(position, 64);
  if (head.toString('latin1', 0, 4) !== 'loge') return null;
  const length = head.readUInt32LE(8);
  if (length === 0 || length % SECTOR !== 0 || length > log.length) return null;
  const whole = Buffer.from(at(position, length));
  if (whole.readUInt32LE(4) !== crc32cWithZeroedField(whole, 4)) return null;
  if (readGuid(whole, 32) !== logGuid) return null;
  const sequence = whole.readBigUInt64LE(16);
  const count = whole.readUInt32LE(24);
  const descriptorSectors = Math.ceil((64 + count * 32) / SECTOR);
  const u64 = (b: Buffer, o: number) => {
    const v = b.readBigUInt64LE(o);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
  };
  const entry: Entry = {
    position,
    length,
    tail: whole.readUInt32LE(12),
    sequence,
    flushedFileOffset: u64(whole, 48),
    lastFileOffset: u64(whole, 56),
    writes: [],
  };
  if (sequence === 0n || entry.flushedFileOffset < 0 || entry.lastFileOffset < 0 || descriptorSectors * SECTOR > length) return null;
  let dataSector = descriptorSectors;
  for (let i = 0; i < count; i++) {
    const d = 64 + i * 32;
    const sig = whole.toString('latin1', d, d + 4);
    const fileOffset = u64(whole, d + 16);
    if (whole.readBigUInt64LE(d + 24) !== sequence || fileOffset < 0 || fileOffset % SECTOR !== 0) return null;
    if (sig === 'zero') {
      const zeroLength = u64(whole, d + 8);
      if (zeroLength <= 0 || zeroLength % SECTOR !== 0) return null;
      entry.writes.push({ kind: 'zero', fileOffset, length: zeroLength });
    } else if (sig === 'desc') {
      const s = dataSector++ * SECTOR;
      if (s + SECTOR > length) return null;
      const sector = whole.subarray(s, s + SECTOR);
      const seq = (BigInt(sector.readUInt32LE(4)) << 32n) | BigInt(sector.readUInt32LE(4092));
      if (sector.toString('latin1', 0, 4) !== 'data' || seq !== sequence) return null;
      const data = Buffer.alloc(SECTOR);
      whole.copy(data, 0, d + 8, d + 16); // leading bytes
      sector.copy(data, 8, 8, 4092);
      whole.copy(data, 4092, d + 4, d + 8); // trailing bytes
      entry.writes.push({ kind: 'data', fileOffset, length: SECTOR, data });
    } else {
      return null;
    }
  }
  return entry;
}

/**
 * Finds the active sequence: the chain of valid, consecutive entries (sequence numbers +1 each) with the highest
 * head sequence number that runs from the entry its head names as tail up to that head.
 */
function activeSequence(log: Buffer, logGuid: string, file: string, logOffset: number): Entry[] {
  const valid = new Map<number, Entry>();
  for (let pos = 0; pos < log.length; pos += SECTOR) {
    const e = parseEntry(log, pos, logGuid);
    if (e) valid.set(pos, e);
  }
  if (valid.size === 0) {
    // MS-VHDX 2.3.3: a set LogGuid with no valid sequence means a corrupt file, which must not be opened.
    throw new VhdxLogError('LogGuid is set but the log holds no valid entry', file, logOffset);
  }
  let best: Entry[] | null = null;
  for (const start of valid.values()) {
    const chain = [start];
    let cur = start;
    for (;;) {
      const next = valid.get((cur.position + cur.length) % log.length);
      if (!next || next.sequence !== cur.sequence + 1n || chain.length > valid.size) break;
      chain.push(next);
      cur = next;
    }
    const head = chain[chain.length - 1];
    if (start.position !== head.tail) continue;
    if (!best || head.sequence > best[best.length - 1].sequence) best = chain;
  }
  if (!best) {
    throw new VhdxLogError('the log holds entries but no complete sequence (tail to head): cannot replay it', file, logOffset);
  }
  return best;
}

/** A ByteSource with replayed log writes laid over the file. */
class OverlaySource implements ByteSource {
  constructor(
    private readonly base: ByteSource,
    private readonly writes: Write[],
    readonly size: number,
  ) {}

  get name(): string {
    return this.base.name;
  }

  async read(offset: number, length: number, structure: string): Promise<Buffer> {
    if (offset + length > this.size || offset < 0 || length < 0) {
      return this.base.read(offset, length, structure); // lets the base produce its typed error
    }
    const baseLength = Math.max(0, Math.min(length, this.base.size - offset));
    const out = Buffer.alloc(length);
    if (baseLength > 0) (await this.base.read(offset, baseLength, structure)).copy(out, 0);
    for (const w of this.writes) {
      const start = Math.max(offset, w.fileOffset);
      const end = Math.min(offset + length, w.fileOffset + w.length);
      if (end <= start) continue;
      if (w.kind === 'zero') out.fill(0, start - offset, end - offset);
      else w.data!.copy(out, start - offset, start - w.fileOffset, end - w.fileOffset);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.base.close();
  }
}

/** Replays the log named by `header` (LogGuid set) over `source`. */
export async function replayLog(source: ByteSource, header: VhdxHeader): Promise<LogReplay> {
  if (header.logLength === 0) throw new VhdxLogError('LogGuid is set but the log has no space', source.name, header.offset + 68);
  if (header.logLength > MAX_LOG_LENGTH) {
    throw new VhdxLogError(`a ${header.logLength}-byte log is too big to replay in memory`, source.name, header.offset + 68);
  }
  if (header.logVersion !== 0) throw new VhdxLogError(`unsupported log version ${header.logVersion}`, source.name, header.offset + 64);
  const log = await source.read(header.logOffset, header.logLength, 'VHDX log');
  const entries = activeSequence(log, header.logGuid, source.name, header.logOffset);
  const head = entries[entries.length - 1];
  if (source.size < head.flushedFileOffset) {
    throw new VhdxLogError(
      `the file is ${source.size} bytes but the log says ${head.flushedFileOffset} bytes were flushed: it is truncated`,
      source.name, header.logOffset + head.position,
    );
  }
  // Later entries override earlier ones: the overlay applies writes in log order.
  const writes = entries.flatMap((e) => e.writes);
  let size = Math.max(source.size, head.lastFileOffset);
  for (const w of writes) size = Math.max(size, w.fileOffset + w.length);
  return { source: new OverlaySource(source, writes, size), entries: entries.length, sequence: head.sequence };
}
