/**
 * OVA export: a ustar archive holding the OVF descriptor first, then one streamOptimized VMDK per disk, then
 * the manifest (.mf) with the SHA-256 of every other member. Disks are compressed into scratch files next to
 * the output first, because the OVF that precedes them records their sizes; the archive is then assembled
 * and renamed into place. Nothing is left behind on error or abort.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as path from 'node:path';
import type { Disk } from '@vmkeep/disk';
import { ImageWriteError } from './errors';
import type { WriteOptions } from './options';
import { atomically, OutputFile } from './output';
import { buildOvf, checkDiskCount, ddbAdapterFor, OVA_CONTROLLERS, OvaController, OvfDisk } from './ovf';
import { tarEnd, tarFileHeader, tarPadding } from './tar';
import { checkOptions } from './validate';
import { streamOptimizedChunks } from './vmdk-stream';

export interface OvaOptions extends Omit<WriteOptions, 'adapterType' | 'vhdxBlockSize'> {
  /** VM name in the OVF and base of the member names (default: the output's name without ".ova"). */
  vmName?: string;
  cpus?: number;
  memoryMiB?: number;
  /** VMware guest id (default "otherGuest64"). */
  osType?: string;
  /** Virtual hardware version, vmx-N (default 10: ESXi 5.5 and later). */
  hardwareVersion?: number;
  /** Disk controller type (default "lsilogic"). */
  controller?: OvaController;
}

export interface OvaResult {
  files: string[];
  bytesWritten: number;
  /** Archive members in order. */
  members: string[];
}

/** A member-safe base name: letters, digits, ".", "_" and "-" only, no leading dot, ≤ 80 bytes. */
export function memberBase(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '').slice(0, 80);
  return safe || 'vm';
}

interface Member {
  name: string;
  size: number;
  sha256: string;
}

function checkOva(disks: Disk[], opts: OvaOptions, out: string): Required<Pick<OvaOptions, 'cpus' | 'memoryMiB' | 'osType' | 'hardwareVersion' | 'controller'>> {
  if (disks.length === 0) throw new ImageWriteError('an OVA needs at least one disk', out);
  const int = (v: number | undefined, min: number, max: number, what: string, dflt: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new ImageWriteError(`${what} must be an integer from ${min} to ${max}, got ${v}`, out);
    return v ?? dflt;
  };
  if (opts.controller !== undefined && !OVA_CONTROLLERS.includes(opts.controller)) {
    throw new ImageWriteError(`controller must be one of ${OVA_CONTROLLERS.join(', ')}, got "${opts.controller}"`, out);
  }
  checkDiskCount(opts.controller ?? 'lsilogic', disks.length, out);
  if (opts.osType !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(opts.osType)) throw new ImageWriteError(`invalid guest OS id "${opts.osType}"`, out);
  return {
    cpus: int(opts.cpus, 1, 768, 'cpus', 1),
    memoryMiB: int(opts.memoryMiB, 4, 24 * 1024 * 1024, 'memoryMiB', 1024),
    hardwareVersion: int(opts.hardwareVersion, 4, 99, 'hardwareVersion', 10),
    osType: opts.osType ?? 'otherGuest64',
    controller: opts.controller ?? 'lsilogic',
  };
}

/** Appends a tar member whose bytes come from `chunks`, checking its declared size. */
async function appendMember(tar: OutputFile, name: string, size: number, chunks: AsyncIterable<Buffer>, signal?: AbortSignal): Promise<void> {
  await tar.append(tarFileHeader(name, size));
  let copied = 0;
  for await (const chunk of chunks) {
    signal?.throwIfAborted();
    copied += chunk.length;
    await tar.append(chunk);
  }
  if (copied !== size) throw new ImageWriteError(`member ${name} changed size while packing (${copied} ≠ ${size})`, tar.target);
  await tar.append(Buffer.alloc(tarPadding(size)));
}

async function* once(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

/** Writes an OVA of `disks` (in controller order) to `out`. */
export async function writeOva(disks: Disk | Disk[], out: string, opts: OvaOptions = {}): Promise<OvaResult> {
  const list = Array.isArray(disks) ? disks : [disks];
  const hw = checkOva(list, opts, out);
  const vmName = opts.vmName ?? path.basename(out).replace(/\.ova$/i, '');
  const base = memberBase(vmName);
  const adapterType = ddbAdapterFor(hw.controller);
  checkOptions({ ...opts, adapterType }, out);
  const total = list.reduce((sum, d) => sum + d.size, 0);

  return atomically(async (files) => {
    const members: Member[] = [];
    const scratch: string[] = [];
    let before = 0;
    for (const [i, disk] of list.entries()) {
      const name = `${base}-disk${i + 1}.vmdk`;
      const { path: temp, file } = await files.scratch(out);
      const hash = createHash('sha256');
      const onProgress = opts.onProgress && ((done: number) => opts.onProgress?.(before + done, total));
      for await (const chunk of streamOptimizedChunks(disk, { ...opts, adapterType, fileName: name, onProgress }, out)) {
        hash.update(chunk);
        await file.append(chunk);
      }
      await file.finish(false);
      members.push({ name, size: file.bytesWritten, sha256: hash.digest('hex') });
      scratch.push(temp);
      before += disk.size;
    }
    const ovfDisks: OvfDisk[] = members.map((m, i) => ({ file: m.name, fileSize: m.size, capacity: list[i].size }));
    const ovf = Buffer.from(buildOvf({ vmName, ...hw, disks: ovfDisks }));
    const ovfName = `${base}.ovf`;
    const manifest = Buffer.from(
      [{ name: ovfName, sha256: createHash('sha256').update(ovf).digest('hex') }, ...members].map((m) => `SHA256(${m.name})= ${m.sha256}\n`).join(''),
    );

    const tar = await files.open(out);
    await appendMember(tar, ovfName, ovf.length, once(ovf));
    for (const [i, m] of members.entries()) {
      await appendMember(tar, m.name, m.size, createReadStream(scratch[i], { highWaterMark: 1024 * 1024 }), opts.signal);
    }
    const mfName = `${base}.mf`;
    await appendMember(tar, mfName, manifest.length, once(manifest));
    await tar.append(tarEnd());
    await tar.finish();
    return { files: [out], bytesWritten: tar.bytesWritten, members: [ovfName, ...members.map((m) => m.name), mfName] };
  });
}
