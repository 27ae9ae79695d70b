/** Options and results shared by every image writer. */

/** Output formats of writeImage. */
export type OutputFormat = 'raw' | 'vmdk-stream' | 'vmdk-sparse' | 'vmdk-flat' | 'vhdx';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['raw', 'vmdk-stream', 'vmdk-sparse', 'vmdk-flat', 'vhdx'];

/** Values of the VMDK `ddb.adapterType` entry. */
export type VmdkAdapterType = 'ide' | 'buslogic' | 'lsilogic' | 'legacyESX';

/** Called as the source is consumed: bytes of the virtual disk done so far, and the disk size. */
export type ProgressCallback = (done: number, total: number) => void;

export interface WriteOptions {
  onProgress?: ProgressCallback;
  /** Aborting stops the write; nothing is left at the output path. */
  signal?: AbortSignal;
  /** VMDK DDB adapter type (default "lsilogic"); also decides the BIOS geometry. */
  adapterType?: VmdkAdapterType;
  /** VMDK DDB virtualHWVersion (default 4, accepted by every VMware product). */
  virtualHWVersion?: number;
  /** Deflate level of streamOptimized grains, 1 (fastest) to 9 (smallest); default 1. */
  compressionLevel?: number;
  /** Grains being compressed at once (default: 4 × available cores). */
  concurrency?: number;
  /** VHDX payload block size in bytes: a power of two from 1 MiB to 256 MiB (default 32 MiB). */
  vhdxBlockSize?: number;
}

export interface WriteResult {
  /** Files created, the one to open first (descriptor, image) first. */
  files: string[];
  /** Bytes written to those files (holes of sparse files not counted). */
  bytesWritten: number;
}
