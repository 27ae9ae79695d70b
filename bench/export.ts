/**
 * Export to raw from a local repository (issue 6 goal: ≥ 1 GB/s). Backs a generated disk up into a fresh local
 * repository (unencrypted, 1 MiB chunks), then streams the restore point through `exportDisk(disk, 'raw')` — the
 * code behind the API's download and `vmkeep restore export` — once into a file and once into nothing (the
 * pipeline alone), and checks the file byte for byte.
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/export.ts [MiB] [--encrypt]
 * BENCH_DIR chooses the work folder (default under the OS temp folder); it is removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { BufferDisk } from '@vmkeep/disk';
import { KDF_INSECURE_FOR_TESTS, Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { exportDisk } from '@vmkeep/restore';

const MiB = 1024 * 1024;

/** Per 4 MiB: 3 MiB random (incompressible) and 1 MiB log-like text; no zeros, so every byte is really read. */
function generate(sizeMiB: number): Buffer {
  const data = Buffer.alloc(sizeMiB * MiB);
  const text = Buffer.from('2024-01-01 12:00:00 host kernel: [ 1.234567] eth0: link up, 1000 Mbps, full duplex\n'.repeat(12000));
  for (let off = 0; off < data.length; off += 4 * MiB) {
    randomBytes(3 * MiB).copy(data, off);
    text.copy(data, off + 3 * MiB, 0, MiB);
    randomBytes(64).copy(data, off + 3 * MiB + 1000);
  }
  return data;
}

/** Wall seconds and CPU seconds of the whole process (all threads): CPU time is what the load cannot inflate. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number, number]> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const result = await fn();
  const used = process.cpuUsage(cpu);
  return [result, Number(process.hrtime.bigint() - start) / 1e9, (used.user + used.system) / 1e6];
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 2048);
  const encrypt = process.argv.includes('--encrypt');
  const dir = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'vmkeep-bench-export-'));
  try {
    const data = generate(sizeMiB);
    const repo = await Repository.init(
      path.join(dir, 'repo'),
      { chunkSize: MiB, encrypt, kdf: KDF_INSECURE_FOR_TESTS } as never,
      encrypt ? { passphrase: 'bench' } : {},
    );
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-0', new BufferDisk(data));
    const point = (await writer.commit({ vm: 'bench' })).id;

    const run = async (sink: (chunks: AsyncIterable<Buffer>) => Promise<void>) => {
      const disk = await repo.openDisk(point, 'disk-0');
      try {
        const exported = await exportDisk(disk, 'raw');
        return await timed(() => sink(exported.chunks));
      } finally {
        await disk.close();
      }
    };
    const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
    const loadBefore = load();
    const [, tNull, cNull] = await run(async (chunks) => {
      for await (const chunk of chunks) void chunk;
    });
    const out = path.join(dir, 'export.raw');
    const [, tFile, cFile] = await run((chunks) => pipeline(Readable.from(chunks), createWriteStream(out)));
    const same = readFileSync(out).equals(data);
    const gbps = (t: number) => +(data.length / 1e9 / t).toFixed(2);
    console.log(
      JSON.stringify(
        {
          sizeMiB,
          encrypted: encrypt,
          cpus: (await import('node:os')).cpus().length,
          loadavgBefore: loadBefore,
          loadavgAfter: load(),
          toNothing: { seconds: +tNull.toFixed(2), GBps: gbps(tNull), cpuSeconds: +cNull.toFixed(2), GBperCpuSecond: gbps(cNull) },
          toFile: { seconds: +tFile.toFixed(2), GBps: gbps(tFile), cpuSeconds: +cFile.toFixed(2), GBperCpuSecond: gbps(cFile), byteExact: same },
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
