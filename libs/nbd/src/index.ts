export * from './constants';
export { NbdError } from './errors';
export type { ExportEntry } from './connection';
export { piecesOf, type Piece } from './extents';
export { NbdServer, nbdUrl, newExportToken, parseAllowList, DEFAULT_MAX_REQUEST_BYTES } from './server';
export type { NbdServerOptions, NbdExportOptions } from './server';
export { BlockCache, DEFAULT_BLOCK_CACHE_BYTES, type BlockCacheOptions } from './block-cache';
export {
  ScratchCache,
  ScratchSpaceError,
  openExportCache,
  DEFAULT_SCRATCH_RESERVE_BYTES,
  type ScratchCacheOptions,
  type ScratchCacheStats,
  type ExportCacheOptions,
  type HydrationState,
} from './scratch-cache';
