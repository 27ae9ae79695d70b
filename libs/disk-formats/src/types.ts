import type { Disk, Extent } from '@vmkeep/disk';

/** What `vmkeep disk info` shows. */
export interface ImageInfo {
  /** "vmdk", "vhd", "vhdx", "raw", ... */
  format: string;
  /** e.g. "monolithicSparse", "streamOptimized", "vmfs", "seSparse", "dynamic", "differencing", "fixed". */
  subformat: string;
  virtualSize: number;
  /** Bytes of the image files that hold data (allocated grains/blocks), where the format tells. */
  allocatedBytes?: number;
  /** Files that make up this layer (descriptor, extents), relative to the opened file's folder where possible. */
  files: string[];
  /** Parent chain, nearest first (differencing/delta images). */
  parents: ImageInfo[];
  /** Format metadata (DDB entries, CID, adapter type, UUIDs, logical sector size, ...). */
  metadata: Record<string, string | number | boolean>;
  /** Problems found that do not stop reading (e.g. "VHDX log is not empty: replayed"). */
  warnings: string[];
}

/** A disk image opened for reading: a Disk plus what it is. extents() lists allocated ranges. */
export interface ImageDisk extends Disk {
  readonly info: ImageInfo;
}

export type { Disk, Extent };
