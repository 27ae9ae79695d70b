export * from './constants';
export { NbdError } from './errors';
export type { ExportEntry } from './connection';
export { piecesOf, type Piece } from './extents';
export { NbdServer, newExportToken, parseAllowList, DEFAULT_MAX_REQUEST_BYTES } from './server';
export type { NbdServerOptions, NbdExportOptions } from './server';
