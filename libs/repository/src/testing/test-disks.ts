/** Disks and folders for the repository's specs. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BufferDisk, Disk, Extent, checkRange } from '@vmkeep/disk';

/** A Disk over a buffer that records every read and reports the extents it is given. */
export class CountingDisk implements Disk {
  readonly reads: Extent[] = [];
  constructor(
    readonly data: Buffer,
    private readonly declared: Extent[] = [{ offset: 0, length: data.length }],
    private readonly readDelayMs = 0,
  ) {}
  get size(): number {
    return this.data.length;
  }
  get bytesRead(): number {
    return this.reads.reduce((n, r) => n + r.length, 0);
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'counting', offset, length);
    this.reads.push({ offset, length });
    if (this.readDelayMs) await new Promise((r) => setTimeout(r, this.readDelayMs));
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async extents(): Promise<Extent[]> {
    return this.declared.map((e) => ({ ...e }));
  }
  async close(): Promise<void> {}
}

/** A buffer made of regions: 'r' random, 'z' zeros, 't' compressible text; each `unit` bytes long. */
export function patterned(pattern: string, unit: number, tail = 0): Buffer {
  const parts = [...pattern].map((c) => {
    if (c === 'z') return Buffer.alloc(unit);
    if (c === 'r') return randomBytes(unit);
    return Buffer.from(`line ${Math.random()} of some compressible text\n`.repeat(Math.ceil(unit / 40))).subarray(0, unit);
  });
  parts.push(randomBytes(tail));
  return Buffer.concat(parts);
}

export async function readAll(disk: Disk): Promise<Buffer> {
  return disk.read(0, disk.size);
}

export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), `vmkeep-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export { BufferDisk };
