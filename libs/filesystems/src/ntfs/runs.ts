/** NTFS run lists (mapping pairs): virtual cluster ranges of a non-resident attribute and where they lie. */
import { FileSystemError } from '../errors';

export interface ClusterRun {
  vcn: number;
  count: number;
  /** First logical cluster on the volume, or null for a sparse (unallocated) run. */
  lcn: number | null;
}

export const MAX_RUNS = 1 << 20;

/** Signed little-endian integer of `n` bytes (n ≤ 8) as a number; null when it does not fit. */
function readInt(buf: Buffer, at: number, n: number, signed: boolean): number | null {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[at + i]);
  if (signed && n > 0 && buf[at + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(v);
}

/**
 * Decodes the run list at `buf[start..end)` beginning at virtual cluster `startVcn`. Every run must lie inside the
 * volume's `clusters`; `offset` (the run list's byte offset on the volume) goes into errors.
 */
export function decodeRuns(buf: Buffer, start: number, end: number, startVcn: number, clusters: number, offset: number): ClusterRun[] {
  const fail = (message: string, at: number) => new FileSystemError('ntfs', 'run list', message, offset + at - start);
  const runs: ClusterRun[] = [];
  let at = start;
  let vcn = startVcn;
  let lcn = 0;
  while (at < end && buf[at] !== 0) {
    const lenSize = buf[at] & 0x0f;
    const offSize = buf[at] >> 4;
    if (lenSize === 0 || lenSize > 8 || offSize > 8) throw fail(`bad run header 0x${buf[at].toString(16)}`, at);
    if (at + 1 + lenSize + offSize > end) throw fail('run runs past the end of the attribute', at);
    const count = readInt(buf, at + 1, lenSize, false);
    if (count === null || count <= 0) throw fail(`run length ${count} is invalid`, at);
    if (offSize === 0) {
      runs.push({ vcn, count, lcn: null });
    } else {
      const delta = readInt(buf, at + 1 + lenSize, offSize, true);
      if (delta === null) throw fail('run offset is out of range', at);
      lcn += delta;
      if (lcn < 0 || lcn + count > clusters) throw fail(`run of ${count} clusters at cluster ${lcn} lies outside the ${clusters}-cluster volume`, at);
      runs.push({ vcn, count, lcn });
    }
    vcn += count;
    if (!Number.isSafeInteger(vcn)) throw fail('run list is too long', at);
    if (runs.length > MAX_RUNS) throw fail(`more than ${MAX_RUNS} runs`, at);
    at += 1 + lenSize + offSize;
  }
  return runs;
}
