export { ImageWriteError } from './errors';
export { OUTPUT_FORMATS } from './options';
export type { OutputFormat, ProgressCallback, VmdkAdapterType, WriteOptions, WriteResult } from './options';
export { writeImage } from './write-image';
export { streamOptimizedStream } from './vmdk-stream';
export type { StreamOptimizedOptions } from './vmdk-stream';
export { writeOva } from './ova';
export type { OvaOptions, OvaResult } from './ova';
export type { OvaController } from './ovf';
