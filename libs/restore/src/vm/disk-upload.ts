/**
 * One restored disk onto a datastore as ESXi keeps it: a text descriptor (createType "vmfs") and its flat
 * extent "<name>-flat.vmdk", both PUT through the datastore HTTP interface. The flat extent is streamed from the
 * Disk block by block (no temporary copy).
 */
import { Readable } from 'node:stream';
import type { Disk } from '@vmkeep/disk';
import { writerParts } from '@vmkeep/disk-formats';
import type { VimSession } from '@vmkeep/vsphere';
import { VmRestoreError } from './errors';

const BLOCK = 1024 * 1024;

/** The Disk's bytes as a stream; `onBytes` is told how many bytes each block carried. */
export function diskStream(disk: Disk, onBytes: (bytes: number) => void, signal?: AbortSignal): Readable {
  async function* blocks(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < disk.size; offset += BLOCK) {
      signal?.throwIfAborted();
      const data = await disk.read(offset, Math.min(BLOCK, disk.size - offset));
      onBytes(data.length);
      yield data;
    }
  }
  return Readable.from(blocks(), { objectMode: false, highWaterMark: 2 });
}

export interface DiskUpload {
  datacenterPath: string;
  datastore: string;
  /** Descriptor path inside the datastore, e.g. "web01/web01_0.vmdk". */
  descriptorPath: string;
  thin: boolean;
  adapterType: 'ide' | 'lsilogic' | 'buslogic' | 'legacyESX';
}

/** "dir/name.vmdk" → "dir/name-flat.vmdk". */
export function flatPathOf(descriptorPath: string): string {
  return `${descriptorPath.replace(/\.vmdk$/i, '')}-flat.vmdk`;
}

export function descriptorFor(disk: Disk, upload: DiskUpload): Buffer {
  if (disk.size % writerParts.SECTOR !== 0) {
    throw new VmRestoreError(`a ${disk.size}-byte disk is not whole 512-byte sectors and cannot be a VMDK`, 'invalid_disk');
  }
  const flatName = flatPathOf(upload.descriptorPath).split('/').pop()!;
  let text = writerParts.buildDescriptor(
    {
      createType: 'vmfs',
      capacitySectors: disk.size / writerParts.SECTOR,
      extentType: 'VMFS',
      extentFile: flatName,
      adapterType: upload.adapterType,
      virtualHWVersion: 13,
    },
    upload.descriptorPath,
  );
  if (upload.thin) text += 'ddb.thinProvisioned = "1"\n';
  return Buffer.from(text);
}

/** Uploads descriptor then flat extent; `onBytes` counts the flat extent's bytes as they are read. */
export async function uploadDisk(session: VimSession, disk: Disk, upload: DiskUpload, onBytes: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
  const descriptor = descriptorFor(disk, upload);
  await session.uploadFile(upload.datacenterPath, upload.datastore, upload.descriptorPath, () => ({ stream: Readable.from([descriptor]), size: descriptor.length }), signal);
  let sent = 0;
  await session.uploadFile(
    upload.datacenterPath,
    upload.datastore,
    flatPathOf(upload.descriptorPath),
    () => {
      // A renewed session restarts the upload: un-count what the first attempt already reported.
      if (sent) onBytes(-sent);
      sent = 0;
      return {
        stream: diskStream(disk, (n) => {
          sent += n;
          onBytes(n);
        }, signal),
        size: disk.size,
      };
    },
    signal,
  );
}
