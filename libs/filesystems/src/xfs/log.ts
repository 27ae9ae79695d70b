/**
 * "Needs log recovery" check of an internal XFS log, read-only. Every 512-byte sector of the log starts with the
 * cycle number of the pass that wrote it (record headers carry it after their magic). The head is where the
 * cycle number drops; the record that ends there is the last one written. The log is clean when that record is
 * a lone unmount record; anything else means transactions the kernel would replay.
 */
import type { Disk } from '@vmkeep/disk';
import { FileSystemError } from '../errors';
import type { XfsSuperblock } from './superblock';

const RECORD_MAGIC = 0xfeedbabe;
const UNMOUNT_TRANS = 0x20;
const HEADER_CYCLE_SIZE = 32768;
/** The longest a record (headers + 256 KiB of data) can be, in sectors: how far back the head record is searched. */
const MAX_RECORD_SECTORS = 8 + 512 + 8;

export interface LogState {
  dirty: boolean;
  warnings: string[];
}

export async function checkXfsLog(volume: Disk, sb: XfsSuperblock): Promise<LogState> {
  if (sb.logStart === 0) return { dirty: false, warnings: ['the log is on an external device: whether it needs recovery is unknown'] };
  const agno = Math.floor(sb.logStart / 2 ** sb.agBlockLog);
  const agbno = sb.logStart % 2 ** sb.agBlockLog;
  const start = (agno * sb.agBlocks + agbno) * sb.blockSize;
  const sectors = (sb.logBlocks * sb.blockSize) / 512;
  if (agno >= sb.agCount || sectors < 2 || !Number.isSafeInteger(start) || start + sectors * 512 > sb.dataBlocks * sb.blockSize) {
    throw new FileSystemError('xfs', 'superblock logstart', `log at block ${sb.logStart} (${sb.logBlocks} blocks) lies outside the file system`, 48);
  }
  const sector = (i: number) => volume.read(start + i * 512, 512);
  const cycleOf = (s: Buffer) => (s.readUInt32BE(0) === RECORD_MAGIC ? s.readUInt32BE(4) : s.readUInt32BE(0));
  const first = cycleOf(await sector(0));
  if (first === 0) return { dirty: false, warnings: [] };
  // Binary search for the first sector written in an older pass; if none, the head is at the end of the log.
  let head = sectors;
  if (cycleOf(await sector(sectors - 1)) !== first) {
    let lo = 0;
    let hi = sectors - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (cycleOf(await sector(mid)) === first) lo = mid;
      else hi = mid;
    }
    head = hi;
  }
  const dirty = (why: string): LogState => ({ dirty: true, warnings: [`the log needs recovery: ${why}`] });
  for (let back = 1; back <= Math.min(MAX_RECORD_SECTORS, sectors); back++) {
    const at = (head - back + sectors) % sectors;
    const s = await sector(at);
    if (s.readUInt32BE(0) !== RECORD_MAGIC) continue;
    const len = s.readUInt32BE(12);
    const size = s.readUInt32BE(320);
    const headers = s.readUInt32BE(8) >= 2 && size > HEADER_CYCLE_SIZE ? Math.ceil(size / HEADER_CYCLE_SIZE) : 1;
    if (back !== headers + Math.ceil(len / 512)) return dirty(`the last record (sector ${at}) does not end at the log head (sector ${head})`);
    if (s.readUInt32BE(40) !== 1) return dirty(`the last record (sector ${at}) holds ${s.readUInt32BE(40)} operations, not an unmount record`);
    const op = await sector((at + headers) % sectors);
    if ((op[9] & UNMOUNT_TRANS) === 0) return dirty(`the last record (sector ${at}) is not an unmount record`);
    return { dirty: false, warnings: [] };
  }
  return dirty(`no record header found before the log head (sector ${head})`);
}
