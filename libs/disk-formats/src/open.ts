/**
 * Format detection and dispatch: looks at the bytes (never the file name) and opens the image with the
 * matching reader. Order: VHDX identifier, VMDK binary magics (KDMV, COWD, seSparse), VHD footer (end of
 * file, or its copy at offset 0), tar with an .ovf (OVA), VMDK text descriptor, and raw for everything else.
 */
import { UnsupportedFormatError } from './errors';
import { listTar, isTarHeader, openOvaDisk } from './ova';
import { openRaw } from './raw';
import { ByteSource, FileSource } from './source';
import type { ImageDisk } from './types';
import { isVhdFooter, openVhd } from './vhd';
import { isVhdx, openVhdx } from './vhdx';
import { openVmdk } from './vmdk';

export type ImageFormat = 'vmdk' | 'vhd' | 'vhdx' | 'ova' | 'raw';

export interface OpenImageOptions {
  /** Skip detection and use this reader. */
  format?: ImageFormat;
  /** For an OVA: which disk (diskId or position; default the first). */
  ovaDisk?: string | number;
}

const PROBE = 4096;
const SESPARSE_MAGIC = Buffer.from([0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0]);

/** A VMDK text descriptor: the first line that is not blank or a comment is exactly `version=N`. */
function isDescriptorText(head: Buffer): boolean {
  // Descriptor files may be NUL-padded to a sector; NULs inside the text mean binary data.
  const nul = head.indexOf(0);
  if (nul >= 0 && !head.subarray(nul).every((b) => b === 0)) return false;
  for (const raw of head.toString('latin1', 0, nul < 0 ? head.length : nul).split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    return /^version\s*=\s*[0-9]+$/.test(line);
  }
  return false;
}

export async function detectSource(source: ByteSource): Promise<ImageFormat> {
  const head = await source.read(0, Math.min(PROBE, source.size), 'format probe');
  if (isVhdx(head)) return 'vhdx';
  const magic = head.toString('latin1', 0, 4);
  if (magic === 'KDMV' || magic === 'COWD' || (head.length >= 8 && head.subarray(0, 8).equals(SESPARSE_MAGIC))) return 'vmdk';
  if (source.size >= 512) {
    const tail = await source.read(source.size - 512, 512, 'format probe');
    if (isVhdFooter(tail) || isVhdFooter(head)) return 'vhd';
  }
  if (isTarHeader(head)) {
    const members = await listTar(source);
    if (members.some((m) => m.type === 'file' && m.name.toLowerCase().endsWith('.ovf'))) return 'ova';
  }
  if (isDescriptorText(head)) return 'vmdk';
  return 'raw';
}

export async function detectFormat(file: string): Promise<ImageFormat> {
  const source = await FileSource.open(file);
  try {
    return await detectSource(source);
  } finally {
    await source.close();
  }
}

/** Opens any supported disk image as an ImageDisk. */
export async function openImage(file: string, options: OpenImageOptions = {}): Promise<ImageDisk> {
  const format = options.format ?? (await detectFormat(file));
  switch (format) {
    case 'vhdx':
      return openVhdx(file);
    case 'vhd':
      return openVhd(file);
    case 'vmdk':
      return openVmdk(file);
    case 'ova':
      return openOvaDisk(file, options.ovaDisk ?? 0);
    case 'raw':
      return openRaw(file);
    default:
      throw new UnsupportedFormatError(`unknown format "${String(format)}"`, file, 'format');
  }
}
