/**
 * Repository throughput: writes a generated disk (random, zero and compressible regions) into a fresh local
 * repository, writes it again (dedup), and reads it back.
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/repository-throughput.ts [MiB]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BufferDisk } from '@vmkeep/disk';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';

const MiB = 1024 * 1024;

function generate(sizeMiB: number): Buffer {
  const data = Buffer.alloc(sizeMiB * MiB);
  const text = Buffer.from('2024-01-01 12:00:00 host kernel: [ 1.234567] eth0: link up, 1000 Mbps, full duplex\n'.repeat(12000));
  for (let off = 0; off < data.length; off += 4 * MiB) {
    // Per 4 MiB: 2 MiB random (incompressible), 1 MiB zeros, 1 MiB log-like text with a little noise.
    randomBytes(2 * MiB).copy(data, off);
    text.copy(data, off + 3 * MiB, 0, MiB);
    randomBytes(64).copy(data, off + 3 * MiB + 1000);
  }
  return data;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return [result, Number(process.hrtime.bigint() - start) / 1e9];
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 256);
  const dir = mkdtempSync(path.join(tmpdir(), 'vmkeep-bench-'));
  try {
    const data = generate(sizeMiB);
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
