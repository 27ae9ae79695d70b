export * from './types';
export * from './errors';
export { connect, VimSession, type VimConnectOptions } from './client';
export { fetchThumbprint, normalizeThumbprint, formatThumbprint } from './tls';
export { openDatastoreDisk, folderUrl, parseContentRange, type DatastoreDiskOptions } from './datastore-disk';
export { parseDescriptor, flatExtent, looksLikeDescriptor, type VmdkDescriptor, type DescriptorExtent } from './vmdk-descriptor';
export { parseDatastorePath, diskSkipReason } from './devices';
export type { WaitOptions } from './tasks';
export { parseDiskChangeInfo, collectChangedAreas, ALL_ALLOCATED_CHANGE_ID, type DiskChangeInfo, type ChangedAreas } from './cbt';
