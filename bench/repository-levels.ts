/**
 * zstd level trade-off on one disk image, one core, no repository around it: every non-zero, distinct chunk of
 * the image is compressed with the repository's own `compressChunk` (which keeps a chunk raw when zstd saves less
 * than 1/32 of it) at each level, including negative ("fast") levels that zstd supports but a repository
 * config does not accept today (levels 1–19). Prints CPU seconds, MB of chunk data per CPU-second and the bytes
 * a repository would store (payloads; blob headers, ids and encryption add the same few bytes per chunk at every
 * level). CPU time is what the machine's load cannot inflate; the backup runs on two worker threads.
 *
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/repository-levels.ts IMAGE [LEVELS] [CHUNK]
 *
 * IMAGE: a raw disk image (e.g. the one `KEEP=1 bash bench/repository-vs-peers.sh 2` leaves in its work folder).
 * LEVELS: comma-separated zstd levels (default -5,-3,-1,1,3). CHUNK: chunk size in MiB (default 1, as the bench).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { COMPRESSION_NONE, compressChunk } from '@vmkeep/repository';
import { loadAverage, MiB } from './lib';

async function main(): Promise<void> {
  const [image, levelsArg = '-5,-3,-1,1,3', chunkArg = '1'] = process.argv.slice(2);
  if (!image) throw new Error('usage: repository-levels.ts IMAGE [LEVELS] [CHUNK_MIB]');
  const levels = levelsArg.split(',').map((l) => {
    const n = Number(l);
    if (!Number.isInteger(n) || n === 0 || n > 19 || n < -50) throw new Error(`bad zstd level "${l}"`);
    return n;
  });
  const chunkSize = Number(chunkArg) * MiB;
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new Error(`bad chunk size "${chunkArg}"`);

  // The chunks a backup would compress: not all-zero, and each distinct content once (dedup). The image is read
  // again for each level (page cache) so memory stays small; only the compression calls are timed.
  const zeros = Buffer.alloc(chunkSize);
  const forEachChunk = async (fn: (data: Buffer) => void): Promise<{ input: number; distinct: number; zero: number }> => {
    const handle = await fs.open(image, 'r');
    const seen = new Set<string>();
    const chunk = Buffer.alloc(chunkSize);
    let input = 0;
    let zero = 0;
    try {
      for (let offset = 0; ; offset += chunkSize) {
        const { bytesRead } = await handle.read(chunk, 0, chunkSize, offset);
        if (bytesRead === 0) break;
        const data = chunk.subarray(0, bytesRead);
        if (data.equals(zeros.subarray(0, bytesRead))) {
          zero++;
          continue;
        }
        const digest = createHash('sha256').update(data).digest('base64');
        if (seen.has(digest)) continue;
        seen.add(digest);
        input += bytesRead;
        fn(data);
      }
    } finally {
      await handle.close();
    }
    return { input, distinct: seen.size, zero };
  };

  console.log(`load before: ${loadAverage()}`);
  const rows: { level: number; cpu: number; stored: number; raw: number }[] = [];
  let input = 0;
  for (const level of levels) {
    let cpu = 0;
    let stored = 0;
    let raw = 0;
    const counts = await forEachChunk((data) => {
      const start = process.cpuUsage();
      const encoded = compressChunk(data, level);
      const used = process.cpuUsage(start);
      cpu += (used.user + used.system) / 1e6;
      stored += encoded.payload.length;
      if (encoded.compression === COMPRESSION_NONE) raw++;
    });
    if (!input) {
      input = counts.input;
      console.log(`${image}: ${counts.distinct} distinct data chunks (${(input / MiB).toFixed(0)} MiB), ${counts.zero} zero chunks`);
      console.log('');
      console.log('| zstd level | CPU s (1 thread) | MB per CPU-second | stored | stored ÷ level 3 | chunks kept raw |');
      console.log('|---|---|---|---|---|---|');
    }
    rows.push({ level, cpu, stored, raw });
  }
  const base = rows.find((r) => r.level === 3)?.stored;
  for (const r of rows) {
    console.log(
      `| ${r.level} | ${r.cpu.toFixed(2)} | ${(input / 1e6 / r.cpu).toFixed(0)} | ${(r.stored / MiB).toFixed(0)} MiB | ` +
        `${base ? (r.stored / base).toFixed(3) : '—'} | ${r.raw} |`,
    );
  }
  console.log('');
  console.log(`load after: ${loadAverage()}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
