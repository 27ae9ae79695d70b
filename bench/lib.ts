// Helpers shared by the bench/*.ts scripts: generated disk content, timing and the load average.
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';

export const MiB = 1024 * 1024;

/**
 * A generated disk of `sizeMiB` (a multiple of 4). Per 4 MiB: `randomMiB` MiB random (incompressible), zeros up to
 * 3 MiB, then 1 MiB of log-like text with 64 random bytes of noise.
 */
export function generateDisk(sizeMiB: number, randomMiB: 2 | 3): Buffer {
  const data = Buffer.alloc(sizeMiB * MiB);
  const text = Buffer.from('2024-01-01 12:00:00 host kernel: [ 1.234567] eth0: link up, 1000 Mbps, full duplex\n'.repeat(12000));
  for (let off = 0; off < data.length; off += 4 * MiB) {
    randomBytes(randomMiB * MiB).copy(data, off);
    text.copy(data, off + 3 * MiB, 0, MiB);
    randomBytes(64).copy(data, off + 3 * MiB + 1000);
  }
  return data;
}

/** Result, wall seconds and CPU seconds of the whole process (all threads): CPU time is what the load cannot inflate. */
export async function timed<T>(fn: () => Promise<T>): Promise<[T, number, number]> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const result = await fn();
  const used = process.cpuUsage(cpu);
  return [result, Number(process.hrtime.bigint() - start) / 1e9, (used.user + used.system) / 1e6];
}

/** The 1-, 5- and 15-minute load averages, e.g. "1.52 1.20 0.98". */
export const loadAverage = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
