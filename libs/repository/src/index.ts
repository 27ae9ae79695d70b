export * from './types';
export * from './constants';
export * from './errors';
export type { BlobSealing, ChunkIdScheme, EncodedPayload } from './codec';
export { computeChunkId, compressChunk, encodeBlob, encodeChunk, decodeBlob } from './codec';
export type { KdfStrength, ScryptParams } from './crypto';
export { KDF_INSECURE_FOR_TESTS, KDF_STANDARD } from './crypto';
export type { ArchiveChange, ArchiveStatus } from './archive';
export type { BadChunkRecord } from './bad-chunks';
export type { GcOptions, GcReport } from './gc';
export type { LockHolder, LockOptions, StaleLock } from './locks';
export {
  DEFAULT_LOCK_STALE_MS,
  EXCLUSIVE_LOCK_FILE,
  ExclusiveLock,
  HeldLock,
  LOCK_REFRESH_MS,
  describeStaleLock,
  withExclusiveLock,
} from './locks';
export type { PointDiskSummary, PointSummary, RepositoryDescription } from './describe';
export { summarizePoint, vmNameOf } from './describe';
export type { RepositoryLocation } from './location';
export { parseRepositoryLocation } from './location';
export { DEFAULT_GC_GRACE_MS, DEFAULT_STALE_WRITER_MS } from './gc';
export { DEFAULT_GC_WRITER_WAIT_MS } from './gc-storage';
export { StorageChunkStore, chunkKey } from './storage-chunk-store';
export type { KeptPoint, PrunablePoint, PrunePlan, RemovedPoint, RetentionPolicy } from './retention';
export { periodKey, planPrune, validateRetentionPolicy } from './retention';
export type { BadChunkReport, BadIndexReport, ChunkRef, VerifyOptions, VerifyReport } from './verify';
export type { WriterMarker } from './writers';
export type { ChunkCodec } from './chunk-workers';
export { ChunkWorkerPool, inlineChunkCodec, sharedChunkWorkers, closeSharedChunkWorkers } from './chunk-workers';
export type { WorkerScript } from './worker-script';
export { workerScript } from './worker-script';
export type { ChunkStore } from './chunk-store';
export { FsChunkStore } from './chunk-store';
export type { IndexSealing } from './fixed-index';
export { FixedIndex, FixedIndexWriter, chunkCount, parseFixedIndex, readFixedIndex } from './fixed-index';
export { isTempName } from './atomic';
export { isDiskKey, isPointId } from './names';
export { PointDisk } from './point-disk';
export type { EncryptionConfig, RepositoryConfig, InitOptions } from './repo-config';
export type { PointFolder, PruneOptions, PruneResult, RepositoryTarget, OpenDiskOptions, RuntimeOptions, WriteDiskOptions } from './repository';
export { Repository, PointWriter } from './repository';
export type { ObjectInfo, ObjectStorage, S3Credentials, S3StorageOptions } from './storage';
export { FsStorage, S3Storage, StorageError } from './storage';
export type { CopyOptions, CopyProgress, CopyReport } from './copy';
export { copyPoints } from './copy';
export { SubkeySealer } from './subkeys';
