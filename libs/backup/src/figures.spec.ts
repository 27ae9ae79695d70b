import { diskFigures, type DiskCopyResult } from './figures';

const base: DiskCopyResult = {
  key: 'disk-2000',
  label: 'Hard disk 1',
  capacityBytes: 8 * 1048576,
  mode: 'full',
  fullReason: 'no earlier restore point',
  changedBytes: 4 * 1048576,
  durationMs: 500,
  stats: { size: 8 * 1048576, chunks: 8, zeroChunks: 4, dedupChunks: 1, newChunks: 3, newBytes: 3000, bytesRead: 4 * 1048576 },
};

describe('diskFigures', () => {
  it('derives dedup ratio over non-zero chunks and the read speed', () => {
    expect(diskFigures(base)).toEqual({
      key: 'disk-2000',
      label: 'Hard disk 1',
      capacityBytes: 8 * 1048576,
      mode: 'full',
      fullReason: 'no earlier restore point',
      bytesRead: 4 * 1048576,
      changedBytes: 4 * 1048576,
      newBytes: 3000,
      newChunks: 3,
      chunks: 8,
      zeroChunks: 4,
      dedupChunks: 1,
      dedupRatio: 0.25,
      durationMs: 500,
      speed: 8 * 1048576,
    });
  });

  it('gives ratio 1 and no reason for an unchanged incremental, speed 0 for an instant copy', () => {
    const f = diskFigures({
      ...base,
      mode: 'incremental',
      fullReason: undefined,
      changedBytes: 0,
      durationMs: 0,
      stats: { ...base.stats, newChunks: 0, newBytes: 0, dedupChunks: 4, parentChunks: 4, bytesRead: 0 },
    });
    expect(f).toMatchObject({ mode: 'incremental', dedupRatio: 1, speed: 0, newBytes: 0, bytesRead: 0 });
    expect(f).not.toHaveProperty('fullReason');
    expect(diskFigures({ ...base, stats: { ...base.stats, chunks: 4, zeroChunks: 4, newChunks: 0 } }).dedupRatio).toBe(1);
  });
});
