/**
 * Export and restore to raw from a local repository (issue 6 / issue 4 goals: ≥ 1 GB/s). Backs a generated disk
 * up into a fresh local repository (1 MiB chunks; `--encrypt` for an encrypted one), then streams the restore
 * point through `exportDisk(disk, 'raw')` once into a file and once into nothing (the pipeline alone), both
 * consumers handing each buffer back (`ExportStream.release`) once it is written, writes it with
 * `writeImage(disk, out, 'raw')` — the code behind `vmkeep repo restore-image` (sparse file, positioned writes,
 * fsync at the end) — and checks both files byte for byte. Every figure has its CPU seconds (all threads).
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/export.ts [MiB] [--encrypt]
 * BENCH_DIR chooses the work folder (default under the OS temp folder); it is removed afterwards.
 */
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { finished } from 'node:stream/promises';
import { BufferDisk } from '@vmkeep/disk';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { writeImage } from '@vmkeep/disk-formats';
import { exportDisk } from '@vmkeep/restore';
import { generateDisk, loadAverage, MiB, timed } from './lib';

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 2048);
  const encrypt = process.argv.includes('--encrypt');
  const dir = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'vmkeep-bench-export-'));
  try {
    const data = generateDisk(sizeMiB, 3);
    const repo = await Repository.init(
      path.join(dir, 'repo'),
      { chunkSize: MiB, encrypt, kdf: 'insecure-fast-for-tests' },
      encrypt ? { passphrase: 'bench' } : {},
    );
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-0', new BufferDisk(data));
    const point = (await writer.commit({ vm: 'bench' })).id;

    const withDisk = async <T>(use: (disk: Awaited<ReturnType<typeof repo.openDisk>>) => Promise<T>): Promise<T> => {
      const disk = await repo.openDisk(point, 'disk-0');
      try {
        return await use(disk);
      } finally {
        await disk.close();
      }
    };
    type Export = Awaited<ReturnType<typeof exportDisk>>;
    const run = (sink: (exported: Export) => Promise<void>) =>
      withDisk(async (disk) => {
        const exported = await exportDisk(disk, 'raw');
        return timed(() => sink(exported));
      });
    const loadBefore = loadAverage();
    const [, tNull, cNull] = await run(async (exported) => {
      for await (const chunk of exported.chunks) exported.release?.(chunk);
    });
    const out = path.join(dir, 'export.raw');
    // What a download does: write each buffer, hand it back from the write's callback, respect back-pressure.
    const [, tFile, cFile] = await run(async (exported) => {
      const file = createWriteStream(out);
      for await (const chunk of exported.chunks) {
        if (!file.write(chunk, () => exported.release?.(chunk))) await once(file, 'drain');
      }
      file.end();
      await finished(file);
    });
    const same = readFileSync(out).equals(data);
    rmSync(out);
    const restored = path.join(dir, 'restore.raw');
    const [, tRestore, cRestore] = await withDisk((disk) => timed(() => writeImage(disk, restored, 'raw')));
    const restoredSame = readFileSync(restored).equals(data);
    const gbps = (t: number) => +(data.length / 1e9 / t).toFixed(2);
    console.log(
      JSON.stringify(
        {
          sizeMiB,
          encrypted: encrypt,
          cpus: (await import('node:os')).cpus().length,
          loadavgBefore: loadBefore,
          loadavgAfter: loadAverage(),
          toNothing: { seconds: +tNull.toFixed(2), GBps: gbps(tNull), cpuSeconds: +cNull.toFixed(2), GBperCpuSecond: gbps(cNull) },
          toFile: { seconds: +tFile.toFixed(2), GBps: gbps(tFile), cpuSeconds: +cFile.toFixed(2), GBperCpuSecond: gbps(cFile), byteExact: same },
          restoreImageRaw: { seconds: +tRestore.toFixed(2), GBps: gbps(tRestore), cpuSeconds: +cRestore.toFixed(2), GBperCpuSecond: gbps(cRestore), byteExact: restoredSame },
          goalGBps: 1,
        },
        null,
        2,
      ),
    );
    await repo.close();
  } finally {
    await closeSharedChunkWorkers();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
