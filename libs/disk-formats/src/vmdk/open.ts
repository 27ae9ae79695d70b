import * as path from 'node:path';
import { DiskFormatError, MissingFileError, UnsupportedFormatError } from '../errors';
import { FileSource, resolveReferencedFile, type ByteSource } from '../source';
import type { ImageInfo } from '../types';
import { CowdExtent, COWD_MAGIC } from './cowd';
import { descriptorMetadata, parseDescriptor, type DescriptorExtent, type VmdkDescriptor } from './descriptor';
import { FlatExtent, ZeroExtent } from './flat';
import { HostedSparseExtent } from './hosted-sparse';
import type { VmdkExtent } from './layer';
import { MAX_CHAIN_DEPTH, MAX_DESCRIPTOR_BYTES, SECTOR } from './limits';
import { totalLength } from './ranges';
import { SESPARSE_MAGIC, SeSparseExtent } from './sesparse';
import { FLAG_COMPRESSED, KDMV_MAGIC, type SparseHeader } from './sparse-header';
import { VmdkDisk } from './vmdk-disk';

/**
 * Opens the files a VMDK refers to (extents, parents). `referrer` is the ByteSource whose content named
 * `name`. Implementations must refuse names that leave the referrer's folder.
 */
export interface VmdkFileResolver {
  open(referrer: ByteSource, name: string, structure: string): Promise<ByteSource>;
}

/** Resolves names next to the referring file on the local file system, through resolveReferencedFile. */
export const localFileResolver: VmdkFileResolver = {
  async open(referrer, name, structure) {
    const target = resolveReferencedFile(referrer.name, name, structure);
    const display = path.join(path.dirname(referrer.name), path.relative(path.dirname(path.resolve(referrer.name)), target));
    return FileSource.open(target, display);
  },
};

/** A resolver for sources that must stand alone (e.g. a tar member): every reference is refused. */
export const noFileResolver: VmdkFileResolver = {
  async open(referrer, name, structure) {
    throw new MissingFileError(`"${name}" cannot be opened: this image must be self-contained`, referrer.name, structure);
  },
};

/** Opens a VMDK file (descriptor, monolithic sparse or streamOptimized) and its parents as one ImageDisk. */
export async function openVmdk(file: string): Promise<VmdkDisk> {
  return openVmdkSource(await FileSource.open(file), localFileResolver);
}

/**
 * Opens a VMDK from a ByteSource. Referenced files (extents, parents) go through `resolver`; the default
 * refuses them, so only self-contained images (monolithicSparse, streamOptimized) open. Takes ownership of `src`.
 */
export async function openVmdkSource(src: ByteSource, resolver: VmdkFileResolver = noFileResolver): Promise<VmdkDisk> {
  return openLayer(src, resolver, [path.resolve(src.name)]);
}

async function closeQuietly(items: { close(): Promise<void> }[]): Promise<void> {
  await Promise.allSettled(items.map((i) => i.close()));
}

interface Layer {
  descriptor?: VmdkDescriptor;
  extents: VmdkExtent[];
  files: string[];
  subformat: string;
  metadata: Record<string, string | number | boolean>;
  warnings: string[];
}

async function openLayer(src: ByteSource, resolver: VmdkFileResolver, chain: string[]): Promise<VmdkDisk> {
  let layer: Layer;
  try {
    layer = await readLayer(src, resolver);
  } catch (err) {
    await src.close().catch(() => undefined);
    throw err;
  }
  let parent: VmdkDisk | undefined;
  try {
    parent = await openParent(src, layer, resolver, chain);
    const disk = new VmdkDisk(
      {
        format: 'vmdk',
        subformat: layer.subformat,
        virtualSize: 0,
        files: layer.files,
        parents: parent ? [{ ...parent.info, parents: [] }, ...parent.info.parents] : [],
        metadata: layer.metadata,
        warnings: layer.warnings,
      },
      layer.extents,
      layer.descriptor,
      parent,
    );
    const info: ImageInfo = disk.info;
    info.virtualSize = disk.size;
    info.allocatedBytes = totalLength((await disk.ownMap()).data);
    return disk;
  } catch (err) {
    await closeQuietly(parent ? [...layer.extents, parent] : layer.extents);
    throw err;
  }
}

/** Reads what a file is: a text descriptor with its extents, or a sparse file (with its embedded descriptor). */
async function readLayer(src: ByteSource, resolver: VmdkFileResolver): Promise<Layer> {
  if (src.size < 4) throw new DiskFormatError('file is too short to be a VMDK', src.name, 'file', 0);
  const magic = (await src.read(0, 4, 'magic')).readUInt32LE(0);
  if (magic === KDMV_MAGIC) return readSparseLayer(src);
  if (magic === COWD_MAGIC || magic === SESPARSE_MAGIC) {
    throw new UnsupportedFormatError('this is a snapshot delta extent: open its descriptor (.vmdk) instead', src.name, 'file', 0);
  }
  if (src.size > MAX_DESCRIPTOR_BYTES) {
    throw new DiskFormatError(`not a VMDK: no sparse magic and too large (${src.size} bytes) for a descriptor`, src.name, 'descriptor', 0);
  }
  const descriptor = parseDescriptor(await src.read(0, src.size, 'descriptor'), src.name);
  await src.close();
  const extents: VmdkExtent[] = [];
  try {
    for (const e of descriptor.extents) extents.push(await openExtent(src, e, resolver));
  } catch (err) {
    await closeQuietly(extents);
    throw err;
  }
  const files = [src.name, ...extents.flatMap((e) => e.files)];
  return { descriptor, extents, files, subformat: descriptor.createType, ...layerMeta(descriptor, extents) };
}

async function openExtent(descriptorSrc: ByteSource, e: DescriptorExtent, resolver: VmdkFileResolver): Promise<VmdkExtent> {
  const length = e.sectors * SECTOR;
  if (e.type === 'ZERO') return new ZeroExtent(length);
  const src = await resolver.open(descriptorSrc, e.file ?? '', `descriptor line ${e.line}`);
  try {
    switch (e.type) {
      case 'FLAT':
      case 'VMFS':
        return new FlatExtent(src, length, e.offset * SECTOR);
      case 'SPARSE':
        return await HostedSparseExtent.open(src, length);
      case 'VMFSSPARSE':
        return await CowdExtent.open(src, length);
      case 'SESPARSE':
        return await SeSparseExtent.open(src, length);
      default:
        throw new UnsupportedFormatError(`${e.type} extent`, descriptorSrc.name, `descriptor line ${e.line}`);
    }
  } catch (err) {
    await src.close().catch(() => undefined);
    throw err;
  }
}

/** A KDMV file opened directly: monolithicSparse / streamOptimized, or one piece of a split disk. */
async function readSparseLayer(src: ByteSource): Promise<Layer> {
  const header = await HostedSparseExtent.readHeader(src);
  let descriptor: VmdkDescriptor | undefined;
  if (header.descriptorOffset) {
    const text = await src.read(header.descriptorOffset * SECTOR, header.descriptorSectors * SECTOR, 'embedded descriptor');
    descriptor = parseDescriptor(text, src.name);
    if (descriptor.extents.length !== 1 || descriptor.extents[0].type !== 'SPARSE') {
      throw new UnsupportedFormatError('embedded descriptor must describe exactly one SPARSE extent (this file)', src.name, 'embedded descriptor');
    }
  }
  const extent = await HostedSparseExtent.open(src, descriptor ? descriptor.extents[0].sectors * SECTOR : undefined);
  const subformat = descriptor?.createType ?? (header.flags & FLAG_COMPRESSED ? 'streamOptimized' : 'monolithicSparse');
  const meta = descriptor ? layerMeta(descriptor, [extent]) : { metadata: sparseMetadata(extent.header), warnings: [...extent.warnings] };
  if (!descriptor) meta.warnings.push('no embedded descriptor: a split extent opened on its own, or a bare sparse file');
  return { descriptor, extents: [extent], files: [src.name], subformat, ...meta };
}

function sparseMetadata(h: SparseHeader): Record<string, string | number | boolean> {
  return {
    sparseVersion: h.version,
    grainSize: h.grainSectors * SECTOR,
    compressed: (h.flags & FLAG_COMPRESSED) !== 0,
    sparseFlags: `0x${h.flags.toString(16)}`,
  };
}

function layerMeta(d: VmdkDescriptor, extents: VmdkExtent[]): { metadata: Layer['metadata']; warnings: string[] } {
  const metadata = descriptorMetadata(d);
  const warnings: string[] = [];
  const sparse = extents.find((e): e is HostedSparseExtent => e instanceof HostedSparseExtent);
  if (sparse) Object.assign(metadata, sparseMetadata(sparse.header));
  for (const e of extents) if (e instanceof HostedSparseExtent) warnings.push(...e.warnings);
  if (d.header.changeTrackPath) warnings.push('changed block tracking file is ignored (read as version 1)');
  return { metadata, warnings };
}

async function openParent(src: ByteSource, layer: Layer, resolver: VmdkFileResolver, chain: string[]): Promise<VmdkDisk | undefined> {
  const d = layer.descriptor;
  if (!d?.parentFileNameHint || !d.parentCid) return undefined;
  if (chain.length >= MAX_CHAIN_DEPTH) {
    throw new DiskFormatError(`parent chain is deeper than ${MAX_CHAIN_DEPTH}`, src.name, 'parentFileNameHint');
  }
  const parentSrc = await resolver.open(src, d.parentFileNameHint, 'parentFileNameHint');
  const key = path.resolve(parentSrc.name);
  if (chain.includes(key)) {
    await parentSrc.close();
    throw new DiskFormatError(`parent chain loops back to ${parentSrc.name}`, src.name, 'parentFileNameHint');
  }
  const parent = await openLayer(parentSrc, resolver, [...chain, key]);
  const parentCid = parent.descriptor?.cid;
  if (parentCid !== d.parentCid) {
    await parent.close().catch(() => undefined);
    throw new DiskFormatError(
      `parentCID ${d.parentCid} does not match the CID ${parentCid ?? '(none)'} of ${parentSrc.name}: the parent was modified`,
      src.name, 'descriptor parentCID',
    );
  }
  return parent;
}
