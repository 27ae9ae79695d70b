/** Progress of one disk being written into the repository. */
export interface WriteProgress {
  /** Bytes of the disk processed so far (read or skipped as unallocated). */
  bytesDone: number;
  bytesTotal: number;
}

export interface DiskWriteStats {
  size: number;
  chunks: number;
  zeroChunks: number;
  /** Chunks that were already in the repository. */
  dedupChunks: number;
  newChunks: number;
  /** Stored (compressed) bytes of the new chunks. */
  newBytes: number;
  /** Bytes actually read from the source disk. */
  bytesRead: number;
  /** Chunks taken unchanged from the parent point's index without reading (incremental writes; also in dedupChunks). */
  parentChunks?: number;
  /** Changed chunks built from the parent's chunk with only their changed areas read (incremental writes). */
  patchedChunks?: number;
}

export interface ManifestDisk {
  key: string;
  size: number;
  chunkSize: number;
  chunks: number;
  /** Free-form metadata from the caller (device key, label, backing file name, ...). */
  meta: Record<string, unknown>;
}

export interface Manifest {
  format: 1;
  id: string;
  createdAt: string;
  /** Free-form metadata from the caller (VM name, moref, host, ...). */
  meta: Record<string, unknown>;
  disks: ManifestDisk[];
}
