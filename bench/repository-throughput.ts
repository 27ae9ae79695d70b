/**
 * Repository throughput: writes a generated disk (random, zero and compressible regions) into a fresh local
 * repository, writes it again (dedup), and reads it back.
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/repository-throughput.ts [MiB]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { generateDisk, MiB, timed } from './lib';

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 256);
  const dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-bench-'));
  try {
    const data = generateDisk(sizeMiB, 2);
    const repo = await Repository.init(path.join(dir, 'repo'));
    const backup = async () => {
      const w = repo.beginPoint();
      const stats = await w.writeDisk('disk0', new BufferDisk(data));
      return { stats, manifest: await w.commit({}) };
    };
    const [first, t1] = await timed(backup);
    const [second, t2] = await timed(backup);
    const disk = await repo.openDisk(first.manifest.id, 'disk0');
    const [same, t3] = await timed(async () => {
      for (let off = 0; off < disk.size; off += 4 * MiB) {
        const part = await disk.read(off, Math.min(4 * MiB, disk.size - off));
        if (!part.equals(data.subarray(off, off + part.length))) return false;
      }
      return true;
    });
    const mbps = (t: number) => Math.round(data.length / 1e6 / t);
    console.log(
      JSON.stringify(
        {
          sizeMiB,
          firstWrite: { seconds: +t1.toFixed(2), MBps: mbps(t1), ...first.stats },
          secondWrite: { seconds: +t2.toFixed(2), MBps: mbps(t2), ...second.stats },
          restoreRead: { seconds: +t3.toFixed(2), MBps: mbps(t3), byteExact: same },
        },
        null,
        2,
      ),
    );
  } finally {
    await closeSharedChunkWorkers();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
