/**
 * The ESXi pair a datastore upload needs: a text descriptor with createType "vmfs" naming one VMFS extent,
 * and the flat extent "<name>-flat.vmdk" holding the raw data (written sparse).
 */
import * as path from 'node:path';
import type { Disk } from '@vmkeep/disk';
import type { WriteOptions, WriteResult } from './options';
import { atomically } from './output';
import { copySparse } from './raw';
import { checkOptions, checkSectorDisk } from './validate';
import { buildDescriptor, SECTOR } from './vmdk-meta';

/** VMFS-5/6 limit of one virtual disk: 62 TiB. */
const MAX_VMFS_DISK = 62 * 2 ** 40;

/** "<dir>/name.vmdk" → "<dir>/name-flat.vmdk" (any other name gets "-flat.vmdk" appended). */
export function flatExtentPath(descriptorPath: string): string {
  const base = descriptorPath.toLowerCase().endsWith('.vmdk') ? descriptorPath.slice(0, -5) : descriptorPath;
  return `${base}-flat.vmdk`;
}

export async function writeVmfsFlat(source: Disk, out: string, opts: WriteOptions = {}): Promise<WriteResult> {
  const o = checkOptions(opts, out);
  checkSectorDisk(source, MAX_VMFS_DISK, 'VMDK vmfs', out);
  const flatPath = flatExtentPath(out);
  const descriptor = Buffer.from(
    buildDescriptor(
      {
        createType: 'vmfs',
        capacitySectors: source.size / SECTOR,
        extentType: 'VMFS',
        extentFile: path.basename(flatPath),
        adapterType: o.adapterType,
        virtualHWVersion: o.virtualHWVersion,
      },
      out,
    ),
  );
  return atomically(async (files) => {
    const desc = await files.open(out);
    const flat = await files.open(flatPath);
    await copySparse(source, flat, opts);
    await flat.finish();
    await desc.append(descriptor);
    await desc.finish();
    return { files: [out, flatPath], bytesWritten: desc.bytesWritten + flat.bytesWritten };
  });
}
