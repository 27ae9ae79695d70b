export * from './errors';
export * from './types';
export { listVolumes, VolumeDisk } from './volumes';
export { openFileSystem, detectFileSystem } from './open';
export type { DetectedType } from './open';
export { openExt, ExtFileSystem } from './ext/ext';
export { openFat, FatFileSystem } from './fat/fat';
export { MAX_READ, splitPath } from './file';
export { crc32 } from './bytes';
