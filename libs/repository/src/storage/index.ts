export type { ObjectInfo, ObjectStorage } from './storage';
export { StorageError, checkKey } from './storage';
export { FsStorage } from './fs-storage';
export type { S3Credentials, S3StorageOptions } from './s3-storage';
export { S3Storage } from './s3-storage';
