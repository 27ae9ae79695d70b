/**
 * The whole VM as an OVA, streamed: a ustar archive with the OVF descriptor first, one streamOptimized VMDK
 * per disk, then the manifest (.mf) with the SHA-256 of every other member (OVF allows the manifest at the
 * end, which is what lets the hashes be computed while streaming). Every size is known before the first byte
 * (see vmdk-sized.ts), so the archive's length is too, and nothing is staged on disk or in memory.
 */
import { createHash } from 'node:crypto';
import type { Disk } from '@vmkeep/disk';
import { writerParts as P } from '@vmkeep/disk-formats';
import { ExportError } from './formats';
import { sizedStreamOptimized, type SizedVmdk } from './vmdk-sized';

/** What the OVF says about the VM; unknown values get defaults a hypervisor accepts. */
export interface OvaVm {
  name: string;
  cpus?: number;
  memoryMiB?: number;
  /** VMware guest id, e.g. "ubuntu64Guest"; anything that is not a plain id becomes "otherGuest64". */
  guestId?: string | null;
}

export interface OvaExport {
  length: number;
  chunks: AsyncIterable<Buffer>;
  /** Archive members in order. */
  members: string[];
}

const CONTROLLER = 'lsilogic';

function manifestLine(name: string, sha256: string): string {
  return `SHA256(${name})= ${sha256}\n`;
}

/** Bytes of a member in the archive: header block(s), data, padding to 512. */
function memberBytes(name: string, size: number): number {
  return P.tarFileHeader(name, size, 0).length + size + P.tarPadding(size);
}

/** Builds the OVA stream of `disks` (in controller order); the disks stay open (the caller closes them). */
export async function ovaExport(vm: OvaVm, disks: Disk[]): Promise<OvaExport> {
  if (disks.length === 0) throw new ExportError('an OVA needs at least one disk; the restore point has none');
  const int = (v: number | undefined, min: number, max: number, dflt: number): number => (v !== undefined && Number.isInteger(v) && v >= min && v <= max ? v : dflt);
  const base = P.memberBase(vm.name);
  const images: { name: string; image: SizedVmdk; capacity: number }[] = [];
  for (const [i, disk] of disks.entries()) {
    const name = `${base}-disk${i + 1}.vmdk`;
    images.push({ name, image: await sizedStreamOptimized(disk, { fileName: name, adapterType: P.ddbAdapterFor(CONTROLLER) }), capacity: disk.size });
  }
  let ovf: Buffer;
  try {
    ovf = Buffer.from(
      P.buildOvf({
        vmName: vm.name,
        cpus: int(vm.cpus, 1, 768, 1),
        memoryMiB: int(vm.memoryMiB, 4, 24 * 1024 * 1024, 1024),
        osType: vm.guestId && /^[A-Za-z0-9_-]{1,64}$/.test(vm.guestId) ? vm.guestId : 'otherGuest64',
        hardwareVersion: 10,
        controller: CONTROLLER,
        disks: images.map((d) => ({ file: d.name, fileSize: d.image.length, capacity: d.capacity })),
      }),
    );
  } catch (err) {
    throw new ExportError((err as Error).message);
  }
  const ovfName = `${base}.ovf`;
  const mfName = `${base}.mf`;
  const hashHex = 64;
  const mfSize = [ovfName, ...images.map((d) => d.name)].reduce((n, name) => n + Buffer.byteLength(manifestLine(name, '')) + hashHex, 0);
  const length =
    memberBytes(ovfName, ovf.length) + images.reduce((n, d) => n + memberBytes(d.name, d.image.length), 0) + memberBytes(mfName, mfSize) + P.tarEnd().length;

  async function* chunks(): AsyncGenerator<Buffer> {
    const mtime = Math.floor(Date.now() / 1000);
    const lines = [manifestLine(ovfName, createHash('sha256').update(ovf).digest('hex'))];
    yield P.tarFileHeader(ovfName, ovf.length, mtime);
    yield ovf;
    yield Buffer.alloc(P.tarPadding(ovf.length));
    for (const { name, image } of images) {
      yield P.tarFileHeader(name, image.length, mtime);
      const hash = createHash('sha256');
      let sent = 0;
      for await (const chunk of image.chunks) {
        hash.update(chunk);
        sent += chunk.length;
        if (sent > image.length) break;
        yield chunk;
      }
      // Never let a member overrun or fall short of its header: that would shift every later member.
      if (sent !== image.length) throw new Error(`OVA member ${name}: produced ${sent} bytes, its header says ${image.length}`);
      yield Buffer.alloc(P.tarPadding(image.length));
      lines.push(manifestLine(name, hash.digest('hex')));
    }
    const manifest = Buffer.from(lines.join(''));
    if (manifest.length !== mfSize) throw new Error(`OVA manifest: ${manifest.length} bytes, planned ${mfSize}`);
    yield P.tarFileHeader(mfName, manifest.length, mtime);
    yield manifest;
    yield Buffer.alloc(P.tarPadding(manifest.length));
    yield P.tarEnd();
  }
  return { length, chunks: chunks(), members: [ovfName, ...images.map((d) => d.name), mfName] };
}
