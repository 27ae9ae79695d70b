import type { JobDiskFigures } from '@vmkeep/persistence';
import type { DiskWriteStats } from '@vmkeep/repository';

/** What one disk's copy reported, as `diskFigures` needs it. */
export interface DiskCopyResult {
  key: string;
  label: string;
  capacityBytes: number;
  mode: 'full' | 'incremental';
  fullReason?: string;
  changedBytes: number;
  stats: DiskWriteStats;
  durationMs: number;
}

/**
 * The job-history figures of one disk: bytes read / changed / newly stored, the share of non-zero chunks that
 * were already stored (1 when nothing new had to be stored, also for an all-zero disk), duration and read speed.
 */
export function diskFigures(r: DiskCopyResult): JobDiskFigures {
  const s = r.stats;
  const dataChunks = s.chunks - s.zeroChunks;
  const dedupRatio = dataChunks > 0 ? Math.round(((dataChunks - s.newChunks) / dataChunks) * 10000) / 10000 : 1;
  const durationMs = Math.max(0, Math.round(r.durationMs));
  return {
    key: r.key,
    label: r.label,
    capacityBytes: r.capacityBytes,
    mode: r.mode,
    ...(r.fullReason ? { fullReason: r.fullReason } : {}),
    bytesRead: s.bytesRead,
    changedBytes: r.changedBytes,
    newBytes: s.newBytes,
    newChunks: s.newChunks,
    chunks: s.chunks,
    zeroChunks: s.zeroChunks,
    dedupChunks: s.dedupChunks,
    dedupRatio: Math.min(1, Math.max(0, dedupRatio)),
    durationMs,
    speed: durationMs > 0 ? Math.round((s.bytesRead * 1000) / durationMs) : 0,
  };
}
