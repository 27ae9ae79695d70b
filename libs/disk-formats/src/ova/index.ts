/**
 * OVA packages: a tar holding an OVF descriptor, disks (streamOptimized VMDKs in practice) and optionally a
 * manifest. Disks are opened in place through a window over their tar member; nothing is unpacked.
 */
import * as path from 'node:path';
import { DiskFormatError, MissingFileError, UnsupportedFormatError } from '../errors';
import { ByteSource, FileSource } from '../source';
import type { ImageDisk } from '../types';
import { openVmdkSource } from '../vmdk';
import { MAX_OVF_SIZE, OvfDescriptor, OvfDisk, parseOvf } from './ovf';
import { isTarHeader, listTar, MemberSource, TarMember } from './tar';

export * from './ovf';
export { isTarHeader, listTar, MemberSource } from './tar';
export type { TarMember } from './tar';

export interface OvaDisk extends OvfDisk {
  /** The tar member holding the disk. */
  member: TarMember;
}

export interface OvaPackage {
  file: string;
  members: TarMember[];
  /** Name of the OVF descriptor member. */
  ovfName: string;
  ovf: OvfDescriptor;
  disks: OvaDisk[];
}

const VMDK_FORMAT = /vmdk\.html/i;

/** Lists an OVA: its members, its OVF and the disks it describes. */
export async function readOva(file: string): Promise<OvaPackage> {
  const source = await FileSource.open(file);
  try {
    return await readOvaSource(source, file);
  } finally {
    await source.close();
  }
}

export async function readOvaSource(source: ByteSource, file: string): Promise<OvaPackage> {
  const first = source.size >= 512 ? await source.read(0, 512, 'tar header') : Buffer.alloc(0);
  if (!isTarHeader(first)) throw new DiskFormatError('not a tar archive (no ustar header)', source.name, 'tar header', 0);
  const members = await listTar(source);
  const ovfMember = members.find((m) => m.type === 'file' && m.name.toLowerCase().endsWith('.ovf'));
  if (!ovfMember) throw new DiskFormatError('the archive holds no .ovf descriptor', source.name, 'OVA');
  if (ovfMember.size > MAX_OVF_SIZE) throw new DiskFormatError(`${ovfMember.size}-byte OVF descriptor`, source.name, 'OVF', ovfMember.offset);
  const text = (await source.read(ovfMember.offset, ovfMember.size, 'OVF')).toString('utf8');
  const ovf = parseOvf(text, `${source.name}/${ovfMember.name}`);
  const disks: OvaDisk[] = [];
  for (const d of ovf.disks) {
    if (!d.file) continue; // a blank disk to be created on import: nothing to read
    const href = d.file.href.replace(/^\.\//, '');
    const member = members.find((m) => m.type === 'file' && m.name === href);
    if (!member) throw new MissingFileError(`disk ${d.diskId} file "${d.file.href}" is not in the archive`, source.name, 'OVF References');
    if (d.file.size !== undefined && d.file.size !== member.size) {
      throw new DiskFormatError(`disk ${d.diskId}: OVF says ${d.file.size} bytes, the member has ${member.size}`, source.name, 'OVF References', member.offset);
    }
    disks.push({ ...d, member });
  }
  return { file, members, ovfName: ovfMember.name, ovf, disks };
}

/**
 * Opens one disk of an OVA (by diskId, or by position; default the first) as an ImageDisk reading the tar
 * member in place. The disk holds its own handle on the archive, released by close().
 */
export async function openOvaDisk(file: string, which: string | number = 0): Promise<ImageDisk> {
  const pkg = await readOva(file);
  const disk = typeof which === 'number' ? pkg.disks[which] : pkg.disks.find((d) => d.diskId === which);
  if (!disk) throw new MissingFileError(`no disk ${JSON.stringify(which)} (the OVA has ${pkg.disks.length})`, file, 'OVF DiskSection');
  if (disk.file?.compression) {
    throw new UnsupportedFormatError(`disk ${disk.diskId} is ${disk.file.compression}-compressed inside the OVA`, file, 'OVF References');
  }
  if (disk.format && !VMDK_FORMAT.test(disk.format)) {
    throw new UnsupportedFormatError(`disk ${disk.diskId} has format ${disk.format}`, file, 'OVF DiskSection');
  }
  const archive = await FileSource.open(file);
  const member = new MemberSource(archive, disk.member, true);
  let image: ImageDisk;
  try {
    image = await openVmdkSource(member);
  } catch (err) {
    await member.close();
    throw err;
  }
  image.info.files = [path.basename(file), disk.member.name];
  image.info.metadata.ovaDiskId = disk.diskId;
  if (disk.format) image.info.metadata.ovfFormat = disk.format;
  if (image.size !== disk.capacity) {
    image.info.warnings.push(`OVF capacity ${disk.capacity} differs from the disk's size ${image.size}`);
  }
  return image;
}
