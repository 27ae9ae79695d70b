export * from './types';
export * from './errors';
export { connect, VimSession, type VimConnectOptions, type PlacementTargets, type VmConfigSpec } from './client';
export { fetchThumbprint, normalizeThumbprint, formatThumbprint } from './tls';
export { openDatastoreDisk, folderUrl, parseContentRange, type DatastoreDiskOptions } from './datastore-disk';
export { flatExtent, looksLikeDescriptor } from './vmdk-descriptor';
export { parseDatastorePath, diskSkipReason } from './devices';
export type { WaitOptions } from './tasks';
export { parseDiskChangeInfo, collectChangedAreas, ALL_ALLOCATED_CHANGE_ID, type DiskChangeInfo, type ChangedAreas } from './cbt';
export type { PutBody } from './http';
export {
  parseVmConfig,
  controllerDevice,
  diskDevice,
  nicDevice,
  ADDABLE_CONTROLLERS,
  VM_CONFIG_PATHS,
  type VmConfig,
  type VmControllerConfig,
  type VmDiskConfig,
  type VmNicConfig,
  type DeviceChange,
  type DiskDeviceSpec,
} from './vm-config';
export {
  GuestFiles,
  GuestToolsError,
  GuestAuthenticationError,
  GuestFileExistsError,
  transferUrl,
  parseListFiles,
  type GuestCredentials,
  type GuestFileInfo,
  type GuestState,
  type GuestUpload,
  type GuestUploadAttributes,
} from './guest-ops';
export { readVmTags, type VmTag, type TaggingOptions } from './tags';
export { parseCustomAttributes } from './custom-fields';
