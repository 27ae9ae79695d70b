/**
 * The datastore reader's view of a VMDK descriptor: whether a file's head is a descriptor or sparse data, and
 * which single flat file to read. Descriptors are parsed by `parseDescriptor` of @vmkeep/disk-formats.
 */
import type { VmdkDescriptor } from '@vmkeep/disk-formats';

/** Whether the first bytes of a file look like a text descriptor (not a sparse VMDK or raw data). */
export function looksLikeDescriptor(head: Buffer): boolean {
  const start = head.subarray(0, 4096).toString('latin1');
  if (start.includes('\0')) return false;
  return /^\s*(#\s*Disk DescriptorFile|version\s*=)/m.test(start) && /createType\s*=/.test(start);
}

/** Whether the bytes start with a sparse extent header ("KDMV", hosted sparse) or "COWD" (ESXi sparse). */
export function isSparseHeader(head: Buffer): boolean {
  const magic = head.subarray(0, 4).toString('latin1');
  return magic === 'KDMV' || magic === 'COWD';
}

/**
 * The single data file of a flat disk (one FLAT or VMFS extent) and where the disk starts in it.
 * Throws with a clear reason for any other layout (sparse, deltas, several extents, RDM).
 */
export function flatExtent(descriptor: VmdkDescriptor): { file: string; offsetBytes: number; sizeBytes: number } {
  if (descriptor.extents.length !== 1) {
    throw new Error(`${descriptor.extents.length} extents (createType ${descriptor.createType || '?'}); only a single flat extent is supported`);
  }
  const [extent] = descriptor.extents;
  if (extent.type !== 'FLAT' && extent.type !== 'VMFS') {
    throw new Error(`extent type ${extent.type} (createType ${descriptor.createType || '?'}) is not supported; only FLAT and VMFS`);
  }
  if (!extent.file || extent.file.includes('/')) {
    throw new Error(`extent file name "${extent.file ?? ''}" must be a plain file name in the descriptor's folder`);
  }
  return { file: extent.file, offsetBytes: extent.offset * 512, sizeBytes: extent.sectors * 512 };
}
