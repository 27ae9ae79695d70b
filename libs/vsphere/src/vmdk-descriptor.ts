/**
 * Minimal VMDK descriptor reading for the datastore reader: enough to find the data file of a flat disk.
 * A full descriptor/sparse parser belongs to libs/disk-formats; this only understands the header keys and
 * extent lines it needs.
 */

export interface DescriptorExtent {
  access: string;
  /** Size in 512-byte sectors. */
  sectors: number;
  type: string;
  /** File name relative to the descriptor's folder. */
  file: string;
  /** Offset in sectors inside `file` (FLAT extents; 0 otherwise). */
  offset: number;
}

export interface VmdkDescriptor {
  createType: string;
  extents: DescriptorExtent[];
}

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

const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)(?:\s+"((?:[^"\\]|\\.)*)"(?:\s+(\d+))?)?\s*$/;

/** Parses a descriptor's createType and extent lines. Throws on a malformed extent line. */
export function parseDescriptor(textContent: string): VmdkDescriptor {
  let createType = '';
  const extents: DescriptorExtent[] = [];
  for (const raw of textContent.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const key = /^createType\s*=\s*"?([^"]*)"?$/.exec(line);
    if (key) {
      createType = key[1];
      continue;
    }
    if (/^(RW|RDONLY|NOACCESS)\s/.test(line)) {
      const m = EXTENT_LINE.exec(line);
      if (!m) throw new Error(`malformed extent line: ${line}`);
      extents.push({
        access: m[1],
        sectors: Number(m[2]),
        type: m[3],
        file: m[4] ?? '',
        offset: m[5] ? Number(m[5]) : 0,
      });
    }
  }
  return { createType, extents };
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
    throw new Error(`extent file name "${extent.file}" must be a plain file name in the descriptor's folder`);
  }
  return { file: extent.file, offsetBytes: extent.offset * 512, sizeBytes: extent.sectors * 512 };
}
